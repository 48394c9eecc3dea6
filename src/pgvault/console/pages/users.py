"""Users (administrators) and My account (everyone).

GET /users (the list and the "Add a user" form), POST /users/new, GET /users/{id} (a user: change the role,
disable or enable, reset the password), POST /users/{id}/role|disable|enable|password, GET/POST
/users/{id}/delete (the confirmation, then the delete); GET /account (your password and your sessions),
POST /account/password, POST /account/sessions/{id}/end, POST /account/logout-everywhere.

Every action calls the API's own route function (``api.users.create_user``, ``update_user``,
``disable_user``, ``enable_user``, ``reset_password``, ``delete_user``, ``change_password``,
``revoke_session``, ``logout_everywhere``) with the body the API takes, so the password policy, the last
administrator and "not yourself" are the API's rules, refused in its words. A password is typed twice
(the console compares them before asking the API) and never shown again, not even after an error.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from ...api import users as api_users
from ...api.deps import run_read
from ...api.errors import describe_validation
from ...catalog.models import User
from ...context import Context
from ...domain.access import Capability, Role, requires
from ...errors import NotAuthenticated, PgvaultError
from ...schemas.users import ChangePasswordRequest, CreateUsersRequest, ResetPasswordRequest, UpdateUserRequest
from ...services import auth, users
from ..render import page
from ..session import COOKIE, FormDep, Viewer, ViewerDep

router = APIRouter(include_in_schema=False)
ROLES = [r.value for r in sorted(Role, key=lambda r: r.role_id)]
FORM = ""  # the key of an error that concerns no one field
DONE = {"created": "The user was added.", "role": "The role was changed.", "disabled":
        "The user was disabled: their sessions ended and their API keys stop working.",
        "enabled": "The user was enabled.", "password": "The password was reset: the user's sessions ended.",
        "deleted": "The user was deleted, with their sessions and API keys.",
        "changed": "Your password was changed: your other sessions ended.", "ended": "The session was ended."}


@dataclass(frozen=True)
class UserView:
    id: int
    username: str
    role: str
    enabled: bool
    email: str
    full_name: str
    created_at: dt.datetime
    password_changed_at: dt.datetime | None


@dataclass(frozen=True)
class SessionView:
    id: int
    created_at: dt.datetime
    expires_at: dt.datetime
    current: bool


@dataclass
class Form:
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def error(self, key: str, message: str) -> None:
        self.errors[key] = f"{self.errors[key]}; {message}" if key in self.errors else message


def _view(u: User) -> UserView:
    return UserView(u.id, u.username, str(u.role.value if isinstance(u.role, Role) else u.role), u.enabled, u.email,
                    u.full_name, u.created_at, u.password_changed_at)


def _read_users(ctx: Context) -> list[UserView]:
    with ctx.catalog.transaction(write=False) as s:
        return [_view(u) for u in users.list_users(s)]


def _read_user(ctx: Context, user_id: int) -> UserView:
    with ctx.catalog.transaction(write=False) as s:
        return _view(users.user_by_id(s, user_id))  # NotFound: the console's 404 page


def _read_account(ctx: Context, viewer: Viewer) -> tuple[UserView, list[SessionView]]:
    mine = auth._token_hash(viewer.token)
    with ctx.catalog.transaction(write=False) as s:
        me = _view(users.user_by_id(s, viewer.user.id))
        return me, [SessionView(r.id, r.created_at, r.expires_at, r.token_hash == mine)
                    for r in users.list_sessions(s, viewer.user.id)]


def _text(form: FormData, key: str, limit: int = 1024) -> str:
    value = form.get(key)
    return value[:limit] if isinstance(value, str) else ""


def _b64(password: str) -> str:
    return base64.b64encode(password.encode()).decode()


def _passwords(form: FormData, f: Form, first: str, second: str) -> str | None:
    """The new password typed twice, or None (an error next to the field) when the two differ or it is empty."""
    a, b = _text(form, first), _text(form, second)
    if not a:
        f.error(first, "type the new password")
    elif a != b:
        f.error(second, "the two passwords differ: type the same one twice")
    return a if a and a == b else None


def _place(message: str, password_field: str, *, user_field: str = FORM) -> str:
    """The field an API refusal concerns, as far as its words tell."""
    low = message.lower()
    if low.startswith("currentpassword"):
        return "currentPassword"
    if "password" in low:
        return password_field
    if low.startswith(("user name", "a user named")):
        return user_field
    if low.startswith("role"):
        return "role"
    return FORM


def _validation(exc: ValidationError, f: Form, fields: dict[str, str]) -> None:
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        key = next((fields[x] for x in reversed(loc) if x in fields), FORM)
        f.error(key, describe_validation([dict(err)]))


# -- users ----------------------------------------------------------------------------------------------

def _users_page(request: Request, viewer: Viewer, user_list: list[UserView], f: Form, *, status_code: int = 200,
                done: str = "") -> Response:
    return page(request, "users.html", viewer, section="/users", users=user_list, form=f, roles=ROLES, FORM=FORM,
                flash=DONE.get(done), flash_kind="ok", status_code=status_code)


@router.get("/users")
@requires(Capability.MANAGE_USERS)
async def user_list(request: Request, viewer: ViewerDep, done: str = "") -> Response:
    ctx: Context = request.app.state.context
    listed = await run_read(ctx, _read_users, ctx, short=False)
    return _users_page(request, viewer, listed, Form({"userName": "", "role": Role.VIEWER.value}), done=done)


@router.post("/users/new")
@requires(Capability.MANAGE_USERS)
async def add_user(request: Request, viewer: ViewerDep, form: FormDep) -> Response:
    ctx: Context = request.app.state.context
    f = Form({"userName": _text(form, "userName", 255).strip(), "role": _text(form, "role", 64)})
    if not f.values["userName"]:
        f.error("userName", "type a user name")
    password = _passwords(form, f, "password", "password2")
    answer = None
    status = 400
    if not f.errors and password is not None:
        try:
            body = CreateUsersRequest.model_validate({"users": [{
                "userEntity": {"userName": f.values["userName"]}, "password": _b64(password),
                "role": f.values["role"]}]})
        except ValidationError as exc:
            _validation(exc, f, {"userName": "userName", "password": "password", "role": "role"})
        else:
            try:
                answer = await run_in_threadpool(api_users.create_user, ctx, viewer.user, body)
            except PgvaultError as exc:
                f.error(_place(exc.message, "password", user_field="userName"), exc.message)
                status = exc.http_status
    if answer is None:
        listed = await run_read(ctx, _read_users, ctx, short=False)
        return _users_page(request, viewer, listed, f, status_code=status)
    return RedirectResponse(f"/users/{answer['response'][0]['entity']['userId']}?done=created", status_code=303)


def _user_page(request: Request, viewer: Viewer, user: UserView, f: Form | None = None, *, status_code: int = 200,
               done: str = "") -> Response:
    return page(request, "user.html", viewer, section="/users", user=user, form=f or Form(), roles=ROLES,
                FORM=FORM, flash=DONE.get(done), flash_kind="ok", status_code=status_code)


@router.get("/users/{user_id}")
@requires(Capability.MANAGE_USERS)
async def show_user(request: Request, viewer: ViewerDep, user_id: int, done: str = "") -> Response:
    ctx: Context = request.app.state.context
    return _user_page(request, viewer, await run_read(ctx, _read_user, ctx, user_id, short=False), done=done)


async def _act(request: Request, viewer: Viewer, user_id: int, call: Any, done: str, key: str,
               f: Form | None = None) -> Response:
    """Run the API's function ``call()``; on a refusal, the user's page with its words next to ``key``."""
    ctx: Context = request.app.state.context
    f = f or Form()
    if not f.errors:
        try:
            await run_in_threadpool(call)
        except PgvaultError as exc:
            f.error("role" if _place(exc.message, key) == "role" else key, exc.message)
            user = await run_read(ctx, _read_user, ctx, user_id, short=False)
            return _user_page(request, viewer, user, f, status_code=exc.http_status)
        return RedirectResponse(f"/users/{user_id}?done={done}", status_code=303)
    user = await run_read(ctx, _read_user, ctx, user_id, short=False)
    return _user_page(request, viewer, user, f, status_code=400)


@router.post("/users/{user_id}/role")
@requires(Capability.MANAGE_USERS)
async def change_role(request: Request, viewer: ViewerDep, form: FormDep, user_id: int) -> Response:
    ctx: Context = request.app.state.context
    f = Form()
    try:
        body = UpdateUserRequest.model_validate({"role": _text(form, "role", 64)})
    except ValidationError as exc:  # (a StrictStr from a form: not reached)
        _validation(exc, f, {"role": "role"})
        body = UpdateUserRequest()
    return await _act(request, viewer, user_id, lambda: api_users.update_user(ctx, viewer.user, user_id, body),
                      "role", "role", f)


@router.post("/users/{user_id}/disable")
@requires(Capability.MANAGE_USERS)
async def disable_user(request: Request, viewer: ViewerDep, _: FormDep, user_id: int) -> Response:
    ctx: Context = request.app.state.context
    return await _act(request, viewer, user_id, lambda: api_users.disable_user(ctx, viewer.user, user_id),
                      "disabled", "enabled")


@router.post("/users/{user_id}/enable")
@requires(Capability.MANAGE_USERS)
async def enable_user(request: Request, viewer: ViewerDep, _: FormDep, user_id: int) -> Response:
    ctx: Context = request.app.state.context
    return await _act(request, viewer, user_id, lambda: api_users.enable_user(ctx, viewer.user, user_id),
                      "enabled", "enabled")


@router.post("/users/{user_id}/password")
@requires(Capability.MANAGE_USERS)
async def reset_password(request: Request, viewer: ViewerDep, form: FormDep, user_id: int) -> Response:
    ctx: Context = request.app.state.context
    f = Form()
    password = _passwords(form, f, "newPassword", "newPassword2")
    body = ResetPasswordRequest(newPassword=_b64(password or ""))
    answer = await _act(request, viewer, user_id, lambda: api_users.reset_password(ctx, viewer.user, user_id, body),
                        "password", "newPassword", f)
    if answer.status_code == 303 and user_id == viewer.user.id:  # (your own: every session of yours ended)
        return _logged_out()
    return answer


@router.get("/users/{user_id}/delete")
@requires(Capability.MANAGE_USERS)
async def confirm_delete(request: Request, viewer: ViewerDep, user_id: int) -> Response:
    ctx: Context = request.app.state.context
    user = await run_read(ctx, _read_user, ctx, user_id, short=False)
    return page(request, "user_delete.html", viewer, section="/users", user=user, error=None)


@router.post("/users/{user_id}/delete")
@requires(Capability.MANAGE_USERS)
async def delete_user(request: Request, viewer: ViewerDep, _: FormDep, user_id: int) -> Response:
    ctx: Context = request.app.state.context
    try:
        await run_in_threadpool(api_users.delete_user, ctx, viewer.user, user_id)
    except PgvaultError as exc:  # yourself, the last administrator (a missing user: the 404 page)
        if exc.http_status == 404:
            raise
        user = await run_read(ctx, _read_user, ctx, user_id, short=False)
        return page(request, "user_delete.html", viewer, section="/users", user=user, error=exc.message,
                    status_code=exc.http_status)
    return RedirectResponse("/users?done=deleted", status_code=303)


# -- my account -----------------------------------------------------------------------------------------

def _logged_out() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def _account_page(request: Request, viewer: Viewer, f: Form | None = None, *, status_code: int = 200,
                        done: str = "") -> Response:
    ctx: Context = request.app.state.context
    me, sessions = await run_read(ctx, _read_account, ctx, viewer)
    return page(request, "account.html", viewer, section="/account", me=me, sessions=sessions, form=f or Form(),
                FORM=FORM, flash=DONE.get(done), flash_kind="ok", status_code=status_code)


@router.get("/account")
@requires(Capability.OWN_SESSION)
async def account(request: Request, viewer: ViewerDep, done: str = "") -> Response:
    return await _account_page(request, viewer, done=done)


@router.post("/account/password")
@requires(Capability.OWN_SESSION)
async def change_password(request: Request, viewer: ViewerDep, form: FormDep) -> Response:
    ctx: Context = request.app.state.context
    f = Form()
    current = _text(form, "currentPassword")
    if not current:
        f.error("currentPassword", "type your current password")
    new = _passwords(form, f, "newPassword", "newPassword2")
    if f.errors or new is None:
        return await _account_page(request, viewer, f, status_code=400)
    body = ChangePasswordRequest(currentPassword=_b64(current), newPassword=_b64(new))
    try:
        await run_in_threadpool(api_users.change_password, ctx, viewer.user, viewer.token, body)
    except PgvaultError as exc:
        f.error(_place(exc.message, "newPassword"), exc.message)
        return await _account_page(request, viewer, f, status_code=exc.http_status)
    return RedirectResponse("/account?done=changed", status_code=303)


@router.post("/account/sessions/{session_id}/end")
@requires(Capability.OWN_SESSION)
async def end_session(request: Request, viewer: ViewerDep, _: FormDep, session_id: int) -> Response:
    ctx: Context = request.app.state.context
    sessions = (await run_read(ctx, _read_account, ctx, viewer))[1]
    this = any(s.id == session_id and s.current for s in sessions)
    await run_in_threadpool(api_users.revoke_session, ctx, viewer.user, session_id)  # (NotFound: the 404 page)
    return _logged_out() if this else RedirectResponse("/account?done=ended", status_code=303)


@router.post("/account/logout-everywhere")
@requires(Capability.OWN_SESSION)
async def logout_everywhere(request: Request, viewer: ViewerDep, form: FormDep) -> Response:
    ctx: Context = request.app.state.context
    if form.get("everywhere") != "yes":  # the button says so: a bare post (a stray script) ends nothing
        f = Form(errors={"everywhere": "press the “Log out everywhere” button to end every session"})
        return await _account_page(request, viewer, f, status_code=400)
    with contextlib.suppress(NotAuthenticated):
        await run_in_threadpool(api_users.logout_everywhere, ctx, viewer.user, None)
    return _logged_out()
