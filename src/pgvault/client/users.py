"""`pgvault users ...` and `pgvault apikeys ...`: users, roles and API keys over the REST API (the offline
`users reset-password --offline`, which needs the catalog itself, is added by cli.py). Passwords come from
a prompt or stdin, never from the command line."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Any

import typer

from . import ApiError, Client
from .commands import JsonOpt, _b64, _when, emit_json, failing, table

users_app = typer.Typer(help="Users and their roles (Administrator, Operator, Restore operator, Viewer).\n\n"
                             "Example: pgvault users add alice --role Operator", no_args_is_help=True)
apikeys_app = typer.Typer(help="API keys for scripts: shown once, usable as PGVAULT_TOKEN or the Authtoken "
                               "header.\n\nExample: pgvault apikeys create nightly-report --role Viewer",
                          no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="the user name")]


def new_password(prompt: str) -> str:
    """A new password: from stdin when it is not a terminal (one line), else typed twice without echo."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass(prompt)
    if getpass.getpass("again: ") != first:
        typer.echo("pgvault: the two passwords differ", err=True)
        raise typer.Exit(1)
    return first


def find_user(api: Client, name: str) -> dict[str, Any]:
    for user in api.get("/User")["users"]:
        if user["userEntity"]["userName"].lower() == name.lower():
            return user  # type: ignore[no-any-return]
    raise ApiError(f"no user named {name!r} (`pgvault users list` lists them)")


def _row(u: dict[str, Any]) -> list[Any]:
    return [u["userEntity"]["userId"], u["userEntity"]["userName"], u["role"]["roleName"],
            "yes" if u["enableUser"] else "no", _when(u["createdTime"]), _when(u["passwordChangedTime"])]


_HEADERS = ["ID", "USER", "ROLE", "ENABLED", "CREATED", "PASSWORD CHANGED"]


@users_app.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    """Every user, with their role."""
    with failing():
        users = Client.from_config().get("/User")["users"]
    if as_json:
        emit_json(users)
    else:
        table(_HEADERS, [_row(u) for u in users])


@users_app.command("add")
def users_add(name: NameArg,
              role: Annotated[str, typer.Option(help="Administrator, Operator, Restore operator or Viewer")] = "Viewer",
              email: Annotated[str, typer.Option(help="their email address")] = "",
              full_name: Annotated[str, typer.Option("--full-name", help="their full name")] = "") -> None:
    """Create a user; the password is read from a prompt (twice), or from stdin when it is not a terminal.

    Example: pgvault users add alice --role Operator < alice-password.txt"""
    password = new_password(f"password for {name}: ")
    with failing():
        answer = Client.from_config().post("/User", {"users": [{
            "userEntity": {"userName": name}, "password": _b64(password), "role": role, "email": email,
            "fullName": full_name}]})
    entity = answer["response"][0]["entity"]
    typer.echo(f"created user {entity['userName']} (id {entity['userId']}, {role})")


@users_app.command("show")
def users_show(name: NameArg, as_json: JsonOpt = False) -> None:
    """One user."""
    with failing():
        api = Client.from_config()
        user = api.get(f"/User/{find_user(api, name)['userEntity']['userId']}")["users"][0]
    if as_json:
        emit_json(user)
        return
    for label, value in zip(_HEADERS, _row(user), strict=True):
        typer.echo(f"{label.lower():17} {value}")
    typer.echo(f"{'email':17} {user['email'] or '-'}")
    typer.echo(f"{'full name':17} {user['fullName'] or '-'}")


def _action(name: str, action: str, done: str) -> None:
    with failing():
        api = Client.from_config()
        api.post(f"/User/{find_user(api, name)['userEntity']['userId']}/action/{action}")
    typer.echo(f"{done} user {name}")


@users_app.command("disable")
def users_disable(name: NameArg) -> None:
    """Disable a user: their sessions end, their API keys stop working, they cannot log in."""
    _action(name, "disable", "disabled")


@users_app.command("enable")
def users_enable(name: NameArg) -> None:
    """Enable a disabled user again."""
    _action(name, "enable", "enabled")


@users_app.command("delete")
def users_delete(name: NameArg) -> None:
    """Delete a user with their sessions and API keys (their jobs keep the name)."""
    with failing():
        api = Client.from_config()
        api.delete(f"/User/{find_user(api, name)['userEntity']['userId']}")
    typer.echo(f"deleted user {name}")


@users_app.command("set-role")
def users_set_role(name: NameArg, role: Annotated[str, typer.Argument(help="the new role")]) -> None:
    """Give a user another role (their API keys act with the weaker of theirs and the new one)."""
    with failing():
        api = Client.from_config()
        user = api.request("PUT", f"/User/{find_user(api, name)['userEntity']['userId']}", {"role": role})
    typer.echo(f"user {name} is now {user['users'][0]['role']['roleName']}")


@users_app.command("passwd")
def users_passwd() -> None:
    """Change your own password: the current one, then the new one (prompts; or two lines on stdin).
    Your other sessions end.

    Example: pgvault users passwd"""
    if sys.stdin.isatty():
        current = getpass.getpass("current password: ")
    else:
        line = sys.stdin.readline()
        current = line[:-1] if line.endswith("\n") else line
    new = new_password("new password: ")
    with failing():
        Client.from_config().post("/ChangePassword", {"currentPassword": _b64(current), "newPassword": _b64(new)})
    typer.echo("password changed")


def reset_password_online(name: str, password: str) -> None:
    with failing():
        api = Client.from_config()
        user_id = find_user(api, name)["userEntity"]["userId"]
        api.post(f"/User/{user_id}/action/resetPassword", {"newPassword": _b64(password)})


# --- API keys ---------------------------------------------------------------------------------------

@apikeys_app.command("create")
def apikeys_create(name: Annotated[str, typer.Argument(help="what the key is for")],
                   role: Annotated[str | None, typer.Option(help="no stronger than yours (default: yours)")] = None,
                   as_json: JsonOpt = False) -> None:
    """Make an API key and print it, once: keep it where the script reads it (PGVAULT_TOKEN).

    Example: pgvault apikeys create nightly-report --role Viewer"""
    body: dict[str, Any] = {"name": name}
    if role is not None:
        body["role"] = role
    with failing():
        key = Client.from_config().post("/ApiKey", body)
    if as_json:
        emit_json(key)
        return
    typer.echo(f"API key {key['id']} ({key['name']}, {key['role']}); shown this once:", err=True)
    typer.echo(key["key"])


@apikeys_app.command("list")
def apikeys_list(as_json: JsonOpt = False) -> None:
    """The API keys (never the keys themselves)."""
    with failing():
        keys = Client.from_config().get("/ApiKey")["apiKeys"]
    if as_json:
        emit_json(keys)
        return
    table(["ID", "NAME", "ROLE", "USER", "CREATED", "LAST USED", "REVOKED"],
          [[k["id"], k["name"], k["role"], k["userName"], _when(k["createdTime"]), _when(k["lastUsedTime"]),
            _when(k["revokedTime"])] for k in keys])


@apikeys_app.command("revoke")
def apikeys_revoke(key_id: Annotated[int, typer.Argument(help="the id `pgvault apikeys list` shows")]) -> None:
    """Revoke an API key: it stops working at once."""
    with failing():
        Client.from_config().delete(f"/ApiKey/{key_id}")
    typer.echo(f"revoked API key {key_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(apikeys_app, name="apikeys")
