"""Users, roles, API keys and sessions: ``/User``, ``/V4/User``, ``/Role``, ``/V4/Role`` in Command Center's
shapes (what cvpysdk 11.44 reads), and pgvault's own ``/ChangePassword``, ``/ApiKey``, ``/Session``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Security

from ..catalog.models import ApiKey, AuthToken, User
from ..domain.access import CAPABILITIES, Capability, Role, require, requires
from ..errors import BadRequest, NotAuthenticated, NotFound
from ..schemas.common import GenericResponse, decode_base64_text
from ..schemas.users import (
    ApiKeyCreated,
    ApiKeyList,
    ChangePasswordRequest,
    CreateApiKeyRequest,
    CreateUsersRequest,
    CreateUsersResponse,
    DeleteUserResponse,
    LogoutEverywhereResponse,
    ResetPasswordRequest,
    RoleList,
    SessionList,
    UpdateUserRequest,
    UserList,
    UserSecurity,
    V4RoleList,
    V4User,
    V4UserList,
)
from ..services import auth, users
from ..services.auth import AuthUser
from ..services.bootstrap import forget_bootstrap_password
from . import BASE
from .deps import ContextDep, UserDep, authtoken_header
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["users"])
_DONE = {"errorCode": 0, "errorMessage": ""}


def _secs(when: dt.datetime | None) -> int | None:
    return None if when is None else int(when.timestamp())


def _role(text: str | None, default: Role) -> Role:
    if text is None:
        return default
    try:
        return Role.parse(text)
    except ValueError as exc:
        raise BadRequest(f"role: {exc}") from None


def _password(field: str, value: str) -> str:
    try:
        return decode_base64_text(value)
    except ValueError as exc:
        raise BadRequest(f"{field} {exc}") from None


def user_body(user: User) -> dict[str, Any]:
    role = Role(user.role)
    return {"userEntity": {"userName": user.username, "userId": user.id}, "enableUser": user.enabled,
            "email": user.email, "fullName": user.full_name, "role": {"roleId": role.role_id, "roleName": role.value},
            "createdTime": _secs(user.created_at), "updatedTime": _secs(user.updated_at),
            "passwordChangedTime": _secs(user.password_changed_at)}


def _changed(ctx: ContextDep, user_id: int, username: str | None = None) -> None:
    """After the commit: this process checks the user's tokens and keys again; the bootstrap password file
    goes once the admin's password changed."""
    ctx.tokens.forget_user(user_id)
    if username == "admin":
        forget_bootstrap_password(ctx.settings.home_dir)


# -- users ---------------------------------------------------------------------------------------------

@router.get("/User", summary="List users", responses=answers(UserList, "every user, in id order"))
@requires(Capability.MANAGE_USERS)
def list_users(ctx: ContextDep, _: UserDep) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return {"users": [user_body(u) for u in users.list_users(s)]}


@router.get("/V4/User", summary="List users (cvpysdk's commcell.users)",
            responses=answers(V4UserList, "every user, in id order"))
@requires(Capability.MANAGE_USERS)
def list_users_v4(ctx: ContextDep, _: UserDep, additionalProperties: bool = False) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return {"users": [v4_body(u) for u in users.list_users(s)]}


def v4_body(u: User) -> dict[str, Any]:
    return {"id": u.id, "name": u.username, "fullName": u.full_name, "email": u.email, "enabled": u.enabled,
            "role": Role(u.role).value}


@router.get("/V4/User/{user_id}", summary="One user (cvpysdk's users.get)", responses=answers(V4User, "the user"))
@requires(Capability.MANAGE_USERS)
def get_user_v4(ctx: ContextDep, _: UserDep, user_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return v4_body(users.user_by_id(s, user_id))


@router.get("/User/{user_id}/Security", summary="A user's per-entity associations: none (roles apply to all)",
            responses=answers(UserSecurity, "none"))
@requires(Capability.MANAGE_USERS)
def get_user_security(ctx: ContextDep, _: UserDep, user_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        users.user_by_id(s, user_id)
    return {}


@router.post("/User", summary="Create a user (cvpysdk's users.add body; pgvault's role, Viewer by default)",
             responses=answers(CreateUsersResponse, "created", conflict=True))
@requires(Capability.MANAGE_USERS)
def create_user(ctx: ContextDep, _: UserDep, body: Annotated[CreateUsersRequest, Body()]) -> dict:
    new = body.users[0]
    username = users.check_username(new.userEntity.userName)
    role = _role(new.role, Role.VIEWER)
    if new.password is None:
        raise BadRequest("users[0].password is required (base64): pgvault does not send passwords by email")
    password = _password("users[0].password", new.password)
    users.check_policy(username, password)
    digest = auth.hash_password(password)  # scrypt, outside any transaction
    with ctx.catalog.transaction(write=True) as s:
        user = users.add_user(s, username, digest, role, email=new.email or "", full_name=new.fullName or "")
        entity = {"userName": user.username, "userId": user.id}
    return {"response": [{"errorCode": 0, "errorString": "", "entity": entity}]}


@router.get("/User/{user_id}", summary="One user", responses=answers(UserList, "the user (a list of one)"))
@requires(Capability.MANAGE_USERS)
def get_user(ctx: ContextDep, _: UserDep, user_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return {"users": [user_body(users.user_by_id(s, user_id))]}


@router.put("/User/{user_id}", summary="Change a user's role, email or full name",
            responses=answers(UserList, "the user as changed (a list of one)", conflict=True))
@requires(Capability.MANAGE_USERS)
def update_user(ctx: ContextDep, actor: UserDep, user_id: int, body: Annotated[UpdateUserRequest, Body()]) -> dict:
    role = _role(body.role, Role.VIEWER) if body.role is not None else None
    with ctx.catalog.transaction(write=True) as s:
        user = users.update_user(s, actor, user_id, role=role, email=body.email, full_name=body.fullName)
        answer = {"users": [user_body(user)]}
    _changed(ctx, user_id)
    return answer


@router.delete("/User/{user_id}", summary="Delete a user, their sessions and API keys (their jobs keep the name)",
               responses=answers(DeleteUserResponse, "deleted", conflict=True))
@requires(Capability.MANAGE_USERS)
def delete_user(ctx: ContextDep, actor: UserDep, user_id: int) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        users.delete_user(s, actor, user_id)
    _changed(ctx, user_id)
    return {"response": [{"errorCode": 0, "errorString": ""}]}


def _set_enabled(ctx: ContextDep, actor: AuthUser, user_id: int, enabled: bool) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        users.set_enabled(s, actor, user_id, enabled)
    _changed(ctx, user_id)
    return _DONE


@router.post("/User/{user_id}/action/disable",
             summary="Disable a user: their sessions end, their API keys stop working, they cannot log in",
             responses=answers(GenericResponse, "disabled", conflict=True))
@requires(Capability.MANAGE_USERS)
def disable_user(ctx: ContextDep, actor: UserDep, user_id: int) -> dict:
    return _set_enabled(ctx, actor, user_id, False)


@router.post("/User/{user_id}/action/enable", summary="Enable a disabled user again",
             responses=answers(GenericResponse, "enabled"))
@requires(Capability.MANAGE_USERS)
def enable_user(ctx: ContextDep, actor: UserDep, user_id: int) -> dict:
    return _set_enabled(ctx, actor, user_id, True)


@router.post("/User/{user_id}/action/resetPassword",
             summary="Set another user's password (an administrator's reset); their sessions end",
             responses=answers(GenericResponse, "the password is set"))
@requires(Capability.MANAGE_USERS)
def reset_password(ctx: ContextDep, _: UserDep, user_id: int, body: Annotated[ResetPasswordRequest, Body()]) -> dict:
    password = _password("newPassword", body.newPassword)
    with ctx.catalog.transaction(write=False) as s:
        username = users.user_by_id(s, user_id).username
    users.check_policy(username, password)
    digest = auth.hash_password(password)
    with ctx.catalog.transaction(write=True) as s:
        users.set_password(s, users.user_by_id(s, user_id), digest)
    _changed(ctx, user_id, username)
    return _DONE


@router.post("/ChangePassword", summary="Change your own password (the current one proves it is you); "
             "your other sessions end", responses=answers(GenericResponse, "the password is changed"))
@requires(Capability.OWN_SESSION)
def change_password(ctx: ContextDep, me: UserDep, token: Annotated[str | None, Security(authtoken_header)],
                    body: Annotated[ChangePasswordRequest, Body()]) -> dict:
    if me.key_id is not None:
        raise BadRequest("an API key cannot change its user's password: log in as the user")
    current = _password("currentPassword", body.currentPassword)
    new = _password("newPassword", body.newPassword)
    users.check_policy(me.username, new)
    with ctx.catalog.transaction(write=False) as s:
        row = auth.password_row(s, me.username)
    try:
        auth.check_password(row, current)
    except NotAuthenticated:
        raise BadRequest("currentPassword is not your current password") from None
    if current == new:
        raise BadRequest("the new password is the current one")
    digest = auth.hash_password(new)
    with ctx.catalog.transaction(write=True) as s:
        users.set_password(s, users.user_by_id(s, me.id), digest, keep_hash=auth._token_hash(str(token).strip()))
    _changed(ctx, me.id, me.username)
    return _DONE


# -- roles ---------------------------------------------------------------------------------------------

def role_body(role: Role) -> dict[str, Any]:
    return {"role": {"roleId": role.role_id, "roleName": role.value, "flags": {"disabled": False}},
            "description": f"pgvault's {role.value} role (docs/api.md, \"Roles and capabilities\")",
            "categoryPermission": {"categoriesPermissionList": [
                {"permissionName": c.value} for c in Capability if c in CAPABILITIES[role]]}}


_ROLES = sorted(Role, key=lambda r: r.role_id)


@router.get("/Role", summary="The roles and their capabilities", responses=answers(RoleList, "every role"))
@requires(Capability.VIEW)
def list_roles(_: UserDep) -> dict:
    return {"roleProperties": [role_body(r) for r in _ROLES]}


@router.get("/Role/{role_id}", summary="One role and its capabilities",
            responses=answers(RoleList, "the role (a list of one)"))
@requires(Capability.VIEW)
def get_role(_: UserDep, role_id: int) -> dict:
    role = Role.by_id(role_id)
    if role is None:
        raise NotFound(f"no role with id {role_id}")
    return {"roleProperties": [role_body(role)]}


@router.get("/V4/Role", summary="The roles (cvpysdk's commcell.roles)", responses=answers(V4RoleList, "every role"))
@requires(Capability.VIEW)
def list_roles_v4(_: UserDep) -> dict:
    return {"roles": [{"id": r.role_id, "name": r.value,
                       "capabilities": [c.value for c in Capability if c in CAPABILITIES[r]]} for r in _ROLES]}


# -- API keys ------------------------------------------------------------------------------------------

def key_body(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "role": Role(key.role).value, "userName": key.user.username,
            "userId": key.user_id, "createdTime": _secs(key.created_at), "lastUsedTime": _secs(key.last_used_at),
            "revokedTime": _secs(key.revoked_at)}


@router.get("/ApiKey", summary="List API keys (never the keys themselves)",
            responses=answers(ApiKeyList, "every API key, revoked ones included, in id order"))
@requires(Capability.MANAGE_API_KEYS)
def list_api_keys(ctx: ContextDep, _: UserDep, userId: int | None = None) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return {"apiKeys": [key_body(k) for k in users.list_keys(s, userId)]}


@router.post("/ApiKey", summary="Create an API key for a script: shown once, for a role no stronger than yours",
             responses=answers(ApiKeyCreated, "the key, for the Authtoken header: shown this once"))
@requires(Capability.MANAGE_API_KEYS)
def create_api_key(ctx: ContextDep, me: UserDep, body: Annotated[CreateApiKeyRequest, Body()]) -> dict:
    role = _role(body.role, me.role)
    with ctx.catalog.transaction(write=True) as s:
        key, secret = users.create_key(s, me, body.name, role)
        return {**key_body(key), "key": secret}


@router.delete("/ApiKey/{key_id}", summary="Revoke an API key: it stops working at once",
               responses=answers(GenericResponse, "revoked"))
@requires(Capability.MANAGE_API_KEYS)
def revoke_api_key(ctx: ContextDep, me: UserDep, key_id: int) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        users.revoke_key(s, me, key_id)
    ctx.tokens.forget_key(key_id)
    return _DONE


# -- sessions ------------------------------------------------------------------------------------------

def _whose(me: AuthUser, user_id: int | None) -> int:
    if user_id is None or user_id == me.id:
        return me.id
    require(me, Capability.MANAGE_USERS)  # someone else's sessions
    return user_id


def session_body(row: AuthToken, current_hash: str | None) -> dict[str, Any]:
    return {"id": row.id, "userName": row.user.username, "userId": row.user_id, "createdTime": _secs(row.created_at),
            "expiresTime": _secs(row.expires_at), "current": row.token_hash == current_hash}


@router.get("/Session", summary="Live sessions (login tokens): yours, or a user's (?userId=, administrators)",
            responses=answers(SessionList, "the live sessions, newest first"))
@requires(Capability.OWN_SESSION)
def list_sessions(ctx: ContextDep, me: UserDep, token: Annotated[str | None, Security(authtoken_header)],
                  userId: Annotated[int | None, Query()] = None) -> dict:
    whose = _whose(me, userId)
    current = auth._token_hash(token.strip()) if token else None
    with ctx.catalog.transaction(write=False) as s:
        users.user_by_id(s, whose)
        return {"sessions": [session_body(r, current) for r in users.list_sessions(s, whose)]}


@router.delete("/Session/{session_id}", summary="End one session (yours; anyone's for administrators)",
               responses=answers(GenericResponse, "ended: its token stops working"))
@requires(Capability.OWN_SESSION)
def revoke_session(ctx: ContextDep, me: UserDep, session_id: int) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        row = users.revoke_session(s, me, session_id)
        owner = row.user_id
    ctx.tokens.forget_user(owner)
    return _DONE


@router.post("/Session/action/logoutEverywhere",
             summary="End every session of yours (this one too), or of a user (?userId=, administrators)",
             responses=answers(LogoutEverywhereResponse, "the sessions ended"))
@requires(Capability.OWN_SESSION)
def logout_everywhere(ctx: ContextDep, me: UserDep, userId: Annotated[int | None, Query()] = None) -> dict:
    whose = _whose(me, userId)
    with ctx.catalog.transaction(write=True) as s:
        users.user_by_id(s, whose)
        ended = users.revoke_sessions(s, whose)
    ctx.tokens.forget_user(whose)
    return {**_DONE, "sessionsEnded": ended}

