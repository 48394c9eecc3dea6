"""The ``pgvault`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="pgvault: data protection for PostgreSQL fleets.", no_args_is_help=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"pgvault {version('pgvault')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print pgvault's version and exit")] = False,
) -> None:
    """pgvault's commands: `serve` runs the service; `login`, `instances`, `backup`, `jobs`, `restore`,
    `verify` ... are its client (PGVAULT_URL and PGVAULT_TOKEN override what `pgvault login` stored)."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on (default: PGVAULT_HOST, 127.0.0.1)")]
    = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (default: PGVAULT_PORT, 8400)")] = None,
) -> None:
    """Run the API and the worker pool on the embedded defaults (PGVAULT_* variables override them).

    Example: pgvault serve --host 0.0.0.0 --port 8400"""
    import uvicorn

    from .app import create_app
    from .settings import Settings

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = Settings(**overrides)  # type: ignore[arg-type]
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                access_log=False)


@app.command("bin")
def bin_dir() -> None:
    """Print the folder of the PostgreSQL client tools pgvault uses (pg_restore, psql, createdb ...): the
    archives pgvault writes need a pg_restore at least as new as the pg_dump that wrote them."""
    from .pgtools.binaries import toolset
    from .settings import Settings

    typer.echo(str(toolset(Settings().pg_bin).bin_dir))


from .client.commands import register as _register_client  # noqa: E402

_register_client(app)
from .client.users import new_password, reset_password_online, users_app  # noqa: E402
from .client.users import register as _register_users  # noqa: E402

_register_users(app)


@users_app.command("reset-password")
def users_reset_password(
    name: Annotated[str, typer.Argument(help="the user name")],
    offline: Annotated[bool, typer.Option("--offline", help="write the catalog of PGVAULT_HOME (or "
                                          "PGVAULT_CATALOG_URL) directly: for a lost admin password")] = False,
) -> None:
    """Set a user's password (an administrator's reset; their sessions end). The new password is read from a
    prompt (twice), or from stdin when it is not a terminal; never from the command line.

    With --offline, no service and no login are needed: the catalog is written directly, the user is
    enabled again, and a removed `PGVAULT_HOME/admin-password` goes with it.

    Example: pgvault users reset-password admin --offline < new-password.txt"""
    password = new_password(f"new password for {name}: ")
    if not offline:
        reset_password_online(name, password)
        typer.echo(f"password of {name} reset; their sessions ended")
        return
    from .catalog.db import Catalog
    from .errors import PgvaultError
    from .services import auth, users
    from .services.bootstrap import forget_bootstrap_password
    from .settings import Settings

    settings = Settings()
    catalog = Catalog(settings.effective_catalog_url)
    try:
        catalog.migrate()
        with catalog.transaction(write=False) as s:
            username = users.user_by_name(s, name).username
        users.check_policy(username, password)
        digest = auth.hash_password(password)
        with catalog.transaction(write=True) as s:
            user = users.user_by_name(s, name)
            users.set_password(s, user, digest)
            user.enabled = True
    except PgvaultError as exc:
        typer.echo(f"pgvault: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        catalog.dispose()
    if username == "admin":
        forget_bootstrap_password(settings.home_dir)
    typer.echo(f"password of {username} reset in the catalog; their sessions ended (a running service "
               f"sees it within PGVAULT_TOKEN_CACHE_SECONDS)")

keys_app = typer.Typer(help="The master keys: rotate, re-wrap, list, retire (README: \"Keep the master key safe\").",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _keys_failed(exc: Exception) -> typer.Exit:
    from .errors import PgvaultError

    typer.echo(f"pgvault keys: {exc.message if isinstance(exc, PgvaultError) else exc}", err=True)
    return typer.Exit(1)


def _print_rewrap(report: object) -> int:
    """The outcome of a re-wrap; exit code 2 when copies beside backups could not all be rewritten."""
    from .services.keys import RewrapReport

    assert isinstance(report, RewrapReport)
    moved = ", ".join(f"{n} {label}" for label, n in report.rewrapped.items())
    typer.echo(f"catalog re-wrapped under {report.active}: {moved}")
    sync = report.storage
    typer.echo(f"datakey.json beside backups: {sync.rewritten} rewritten, {sync.current} already current")
    if sync.problems:
        for problem in sync.problems:
            typer.echo(f"  not rewritten: {problem}", err=True)
        typer.echo("some copies beside backups still hold an older wrapping; run `pgvault keys rewrap` once their "
                   "storage is reachable (`pgvault keys retire` refuses until then)", err=True)
        return 2
    return 0


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new active master key (PGVAULT_HOME/master.key), keep the old one in PGVAULT_HOME/keys/, and
    re-wrap every sealed value under the new key. Backups are not rewritten. A running service on this
    PGVAULT_HOME picks the new key up by itself."""
    from .services import keys
    from .settings import Settings

    try:
        report = keys.rotate(Settings())
    except Exception as exc:
        raise _keys_failed(exc) from None
    typer.echo(f"new active master key {report.active}; {report.previous} kept in keys/{report.previous}.key")
    raise typer.Exit(_print_rewrap(report))


@keys_app.command("rewrap")
def keys_rewrap() -> None:
    """Re-wrap under the active key whatever an older key still seals (finishes an interrupted rotation, and
    is the rotation when PGVAULT_MASTER_KEY provides the key)."""
    from .services import keys
    from .settings import Settings

    try:
        report = keys.rewrap(Settings())
    except Exception as exc:
        raise _keys_failed(exc) from None
    raise typer.Exit(_print_rewrap(report))


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False) -> None:
    """The master keys, which is active, and how many catalog values each still seals (exit code 1 when
    the catalog holds values under a key the keyring lacks)."""
    import json

    from .services import keys
    from .settings import Settings

    try:
        rows = keys.list_keys(Settings())
    except Exception as exc:
        raise _keys_failed(exc) from None
    if as_json:
        typer.echo(json.dumps([{"keyId": r.key_id, "state": r.state, "source": r.source, "seals": r.seals,
                                "total": r.total} for r in rows], indent=2))
        return
    typer.echo(f"{'KEY ID':<17} {'STATE':<8} {'SEALS':>6}  SOURCE")
    for r in rows:
        detail = ", ".join(f"{n} {label}" for label, n in r.seals.items())
        typer.echo(f"{r.key_id:<17} {r.state:<8} {r.total:>6}  {r.source}" + (f"  ({detail})" if detail else ""))
    if any(r.state == "missing" for r in rows):
        raise typer.Exit(1)


@keys_app.command("retire")
def keys_retire(key_id: Annotated[str, typer.Argument(help="the key id `pgvault keys list` shows")]) -> None:
    """Delete an old master key's file, only when nothing (catalog or datakey.json beside a backup) uses it."""
    from .services import keys
    from .settings import Settings

    try:
        deleted = keys.retire(Settings(), key_id)
    except Exception as exc:
        raise _keys_failed(exc) from None
    for path in deleted:
        typer.echo(f"deleted {path}")


@app.command()
def decrypt(
    path: Annotated[Path, typer.Argument(help="an encrypted file of a local backup folder (*.enc)")],
    data_key: Annotated[Path | None, typer.Option("--data-key", help="its datakey.json (default: found above it)")]
    = None,
) -> None:
    """Write an encrypted backup file's plaintext to stdout without the catalog, with the master keys of
    PGVAULT_HOME (or PGVAULT_MASTER_KEY): `pgvault decrypt F.dump.zst.enc | zstd -dc | pg_restore ...`."""
    import sys

    from .backup.encryption import DecryptionError, decrypt_local_file
    from .crypto import Keyring, MasterKeyError
    from .settings import Settings

    settings = Settings()
    try:
        keyring = Keyring.open_home(settings.home_dir, settings.master_key.get_secret_value()
                                    if settings.master_key else None, create=False)
        decrypt_local_file(path, keyring, sys.stdout.buffer, data_key)
        sys.stdout.buffer.flush()
    except (DecryptionError, MasterKeyError, OSError) as exc:
        typer.echo(f"pgvault decrypt: {path}: {exc}", err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
