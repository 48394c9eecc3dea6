"""The everyday commands (`pgvault login`, `instances`, `backup`, `jobs`, `restore` ...): a client of the
REST API, in the manner of gh or kubectl. Each prints a table, or one JSON document with --json."""

from __future__ import annotations

import base64
import getpass
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from . import DEFAULT_URL, ApiError, Client, load_config, remove_config, save_config

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document")]
FollowOpt = Annotated[bool, typer.Option("--follow", "-f", help="show progress until the job ends")]
ENDED = ("Completed", "Completed w/ one or more errors", "Failed", "Killed")


@contextmanager
def failing() -> Iterator[None]:
    """A refusal or an unreachable service: one line on stderr, exit status 1."""
    try:
        yield
    except ApiError as exc:
        typer.echo(f"pgvault: {exc}", err=True)
        raise typer.Exit(1) from None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def read_secret(prompt: str, from_stdin: bool) -> str:
    """From stdin (scripts: a line) or a prompt without echo; never from the command line."""
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    return getpass.getpass(prompt)


def _when(ts: int | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for line in [headers, *cells]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def emit_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2))


# --- login -----------------------------------------------------------------------------------------

def login(
    url: Annotated[str | None, typer.Option(help="the service (default: PGVAULT_URL, the last login's, "
                                             f"{DEFAULT_URL})")] = None,
    user: Annotated[str, typer.Option(help="the user name")] = "admin",
) -> None:
    """Log in and keep the URL and token in ~/.config/pgvault/config.json (mode 0600). The password is
    read from a prompt, or from stdin when it is not a terminal.

    Example: pgvault login --url http://127.0.0.1:8400 < .pgvault/admin-password"""
    base = url or os.environ.get("PGVAULT_URL") or load_config().get("url") or DEFAULT_URL
    password = read_secret(f"password for {user}: ", False)
    with failing():
        answer = Client(base, None).post("/Login", {"username": user, "password": _b64(password)})
        path = save_config(base, answer["token"], user)
    typer.echo(f"logged in to {base} as {user} (token in {path})")


def logout() -> None:
    """End the session (POST /Logout) and forget the stored token.

    Example: pgvault logout"""
    stored = load_config()
    if stored.get("token"):
        try:
            Client(stored.get("url") or DEFAULT_URL, stored["token"]).post("/Logout")
        except ApiError as exc:
            typer.echo(f"pgvault: {exc} (the stored token is removed anyway)", err=True)
    remove_config()
    typer.echo("logged out")


# --- instances -------------------------------------------------------------------------------------

instances_app = typer.Typer(help="The registered PostgreSQL instances.\n\nExample: pgvault instances --json",
                            invoke_without_command=True)


def _instance_row(p: dict[str, Any]) -> list[Any]:
    i, pg = p["instance"], p["postGreSQLInstance"]
    return [i["instanceId"], i["instanceName"], i["clientName"], pg["port"], p.get("serverVersion") or p["version"],
            p["planEntity"]["planName"], _when(p.get("nextBackupTime"))]


@instances_app.callback()
def instances_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the instances (with a subcommand: add, show, remove)."""
    if ctx.invoked_subcommand is not None:
        return
    with failing():
        rows = Client.from_config().instances()
    if as_json:
        emit_json(rows)
        return
    table(["ID", "NAME", "CLOUD ACCOUNT", "HOST:PORT", "VERSION", "PLAN", "NEXT BACKUP (UTC)"],
          [_instance_row(p) for p in rows])


@instances_app.command("add")
def instances_add(
    name: Annotated[str, typer.Argument(help="the instance's name")],
    host: Annotated[str, typer.Option("--host", help="HOST:PORT of the server")],
    user: Annotated[str, typer.Option("--user", help="a login that may connect to every database")],
    maintenance_db: Annotated[str, typer.Option("--maintenance-db")] = "postgres",
    ssl: Annotated[bool, typer.Option("--ssl", help="require SSL")] = False,
    ssl_ca: Annotated[str | None, typer.Option("--ssl-ca", help="CA file on the pgvault host (verifies)")] = None,
    plan: Annotated[str, typer.Option("--plan")] = "default",
    cloud_account: Annotated[str, typer.Option("--cloud-account")] = "default",
    version: Annotated[str, typer.Option("--version", help="the server's PostgreSQL version")] = "16",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Register an instance (Command Center's POST /Instance body) and start its first backup.

    Example: printf %s "$PW" | pgvault instances add prod-1 --host db.internal:5432 --user backup_admin
    --password-stdin"""
    password = read_secret(f"password for {user}@{host}: ", password_stdin)
    ssl_opt: dict[str, Any] = {"sslEnabled": ssl or ssl_ca is not None}
    if ssl_ca:
        ssl_opt["sslCa"] = ssl_ca
    body = {"instanceProperties": {
        "instance": {"instanceName": name, "applicationId": 125, "clientName": cloud_account},
        "version": version,
        "postGreSQLInstance": {"MaintainenceDB": maintenance_db, "port": host,
                               "SAUser": {"userName": user, "password": _b64(password)},
                               "cloudDBEngineType": "POSTGRESQL", "sslOpt": ssl_opt},
        "planEntity": {"planName": plan}, "dbEngine": "PostgreSQL"}}
    with failing():
        answer = Client.from_config().post("/Instance", body)
    if as_json:
        emit_json(answer)
        return
    entity = answer["response"]["entity"]
    job = answer["processinginstructioninfo"]["attributes"][1]["value"]
    typer.echo(f"instance {entity['instanceName']} registered (id {entity['instanceId']}); "
               f"first backup: job {job} (pgvault job {job} --follow)")
    if answer["response"].get("warningMessage"):
        typer.echo(f"warning: {answer['response']['warningMessage']}", err=True)


@instances_app.command("show")
def instances_show(instance: Annotated[str, typer.Argument(help="NAME or ID")], as_json: JsonOpt = False) -> None:
    """One instance.

    Example: pgvault instances show prod-1"""
    with failing():
        p = Client.from_config().instance(instance)
    if as_json:
        emit_json(p)
        return
    i, pg = p["instance"], p["postGreSQLInstance"]
    for key, value in [("id", i["instanceId"]), ("name", i["instanceName"]), ("cloud account", i["clientName"]),
                       ("host:port", pg["port"]), ("user", pg["SAUser"]["userName"]),
                       ("maintenance db", pg["MaintainenceDB"]), ("ssl", pg.get("sslOpt", {})),
                       ("version", f"{p['version']} (server {p.get('serverVersion')})"),
                       ("plan", p["planEntity"]["planName"]), ("subclient", p["defaultSubclientId"]),
                       ("next backup", _when(p.get("nextBackupTime")) + " UTC")]:
        typer.echo(f"{key + ':':<16}{value}")


@instances_app.command("remove")
def instances_remove(
    instance: Annotated[str, typer.Argument(help="NAME or ID")],
    delete_backups: Annotated[bool, typer.Option("--delete-backups", help="also delete its backups")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove an instance; its backups stay (restorable by id) unless --delete-backups.

    Example: pgvault instances remove prod-1 --delete-backups"""
    with failing():
        api = Client.from_config()
        i = api.instance(instance)["instance"]
        answer = api.delete(f"/Instance/{i['instanceId']}", **({"deleteBackups": "true"} if delete_backups else {}))
    if as_json:
        emit_json(answer)
        return
    typer.echo(f"instance {i['instanceName']} (id {i['instanceId']}) removed")


# --- jobs ------------------------------------------------------------------------------------------

def _db_rows(job: dict[str, Any]) -> list[list[Any]]:
    rows = [[d["name"], d.get("target") or "", d["status"], _size(d.get("bytes")), _rate(d), d.get("error") or ""]
            for d in job.get("databases") or []]
    g = job.get("globals")
    if g:
        rows.append(["(roles)", "", g["status"], _size(g.get("bytes")), _rate(g), g.get("error") or ""])
    return rows


def _rate(d: dict[str, Any]) -> str:
    rate = d.get("bytesPerSecond")
    return f"{_size(rate)}/s" if rate else "-"


def _progress_line(d: dict[str, Any]) -> str:
    """A database while it runs: what it does, the bytes so far (a backup's stored, a restore's read of
    the archive) and the rate since it started."""
    phase = f" {d['phase']}" if d.get("phase") else ""
    return f"  {d['name']}: {d['status']}{phase} {_size(d.get('bytes'))} at {_rate(d)}"


def follow(api: Client, job_id: str, as_json: bool) -> dict[str, Any]:
    """Poll GET /Job until it ends: a line when the percent or the phase changes, a progress line per
    database whose bytes moved while it runs, and one per database as it ends (on stderr with --json, so
    stdout stays one document)."""
    seen: dict[str, tuple[str, int]] = {}
    last = None
    while True:
        job = api.job(job_id)
        state = (job["status"], job.get("percentComplete"), job.get("currentPhaseName"))
        if state != last:
            typer.echo(f"job {job_id} {job['jobType']}: {job['status']} {job.get('percentComplete', 0)}% "
                       f"{job.get('currentPhaseName') or ''}".rstrip(), err=as_json)
            last = state
        for d in job.get("databases") or []:
            now = (d["status"], d.get("bytes") or 0)
            if now == seen.get(d["name"]) or d["status"] == "Waiting":
                continue
            seen[d["name"]] = now
            if d["status"] == "Running":
                typer.echo(_progress_line(d), err=as_json)
                continue
            extra = f" {_size(d.get('bytes'))}" if d.get("bytes") else ""
            typer.echo(f"  {d['name']}: {d['status']}{extra}" + (f" ({d['error']})" if d.get("error") else ""),
                       err=as_json)
        if job["status"] in ENDED:
            return job
        time.sleep(1)


def show_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(job)
        return
    sub = job.get("subclient") or {}
    typer.echo(f"job {job['jobId']} {job['jobType']} of {sub.get('instanceName', '?')}: {job['status']} "
               f"{job.get('percentComplete', 0)}%  started {_when(job.get('jobStartTime'))} "
               f"ended {_when(job.get('jobEndTime'))} UTC")
    if job.get("message"):
        typer.echo(f"message: {job['message']}")
    for w in job.get("warnings") or []:
        typer.echo(f"warning: {w}")
    rows = _db_rows(job)
    if rows:
        table(["DATABASE", "TARGET", "STATUS", "SIZE", "RATE", "ERROR"], rows)


def finish(api: Client, job_id: str, do_follow: bool, as_json: bool) -> None:
    """Show the job (followed to its end with --follow); exit 0 only when it Completed."""
    job = follow(api, job_id, as_json) if do_follow else api.job(job_id)
    show_job(job, as_json)
    if do_follow and job["status"] != "Completed":
        raise typer.Exit(1)


def backup(instance: Annotated[str, typer.Argument(help="NAME or ID")], follow_: FollowOpt = False,
           as_json: JsonOpt = False) -> None:
    """Back up every database of an instance now. With --follow, exit status 0 only when it Completed.

    Example: pgvault backup prod-1 --follow"""
    with failing():
        api = Client.from_config()
        p = api.instance(instance)
        job_id = str(api.post(f"/Subclient/{p['defaultSubclientId']}/action/backup", backupLevel="full")["jobIds"][0])
        if not follow_ and not as_json:
            typer.echo(f"backup job {job_id} started (pgvault job {job_id} --follow)")
            return
        finish(api, job_id, follow_, as_json)


def jobs(running: Annotated[bool, typer.Option("--running", help="only waiting and running jobs")] = False,
         limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50,
         as_json: JsonOpt = False) -> None:
    """The jobs, newest first.

    Example: pgvault jobs --running"""
    with failing():
        answer = Client.from_config().post("/Jobs", {"category": 1 if running else 0,
                                                     "pagingConfig": {"offset": 0, "limit": limit}})
    rows = [j["jobSummary"] for j in answer.get("jobs", [])]
    if as_json:
        emit_json(rows)
        return
    table(["ID", "TYPE", "INSTANCE", "STATUS", "%", "STARTED (UTC)", "MESSAGE"],
          [[j["jobId"], j["jobType"], (j.get("subclient") or {}).get("instanceName", ""), j["status"],
            j.get("percentComplete", 0), _when(j.get("jobStartTime")), (j.get("message") or "")[:60]] for j in rows])


def job(job_id: Annotated[str, typer.Argument(help="the job id")], follow_: FollowOpt = False,
        as_json: JsonOpt = False) -> None:
    """One job, per database; --follow waits for its end (exit status 0 only when it Completed).

    Example: pgvault job 12 --follow"""
    with failing():
        finish(Client.from_config(), job_id, follow_, as_json)


def kill(job_id: Annotated[str, typer.Argument(help="the job id")]) -> None:
    """Kill a waiting or running job.

    Example: pgvault kill 12"""
    with failing():
        Client.from_config().post(f"/Job/{job_id}/action/kill")
    typer.echo(f"job {job_id} killed")


# --- restore points, restore, verify ---------------------------------------------------------------

def points(instance: Annotated[str, typer.Argument(help="NAME or ID")],
           database: Annotated[str | None, typer.Option(help="only points holding this database")] = None,
           as_json: JsonOpt = False) -> None:
    """The restore points of an instance, newest first.

    Example: pgvault points prod-1"""
    with failing():
        api = Client.from_config()
        iid = api.instance(instance)["instance"]["instanceId"]
        params: dict[str, Any] = {"instanceId": iid}
        if database:
            params["database"] = database
        answer = api.get("/RestorePoints", **params)
    rows = answer.get("restorePoints", [])
    if as_json:
        emit_json(rows)
        return
    table(["POINT", "JOB", "BACKUP TIME (UTC)", "STATUS", "SIZE", "DATABASES", "VERIFIED", "DRILL"],
          [[r["restorePointId"], r["jobId"], _when(r.get("backupTime")), r["status"], _size(r.get("totalBytes")),
            ",".join(d if isinstance(d, str) else d.get("name", "?") for d in r.get("databases") or []),
            (r.get("verification") or {}).get("status") or "-", (r.get("drill") or {}).get("status") or "-"]
           for r in rows])


def restore(
    instance: Annotated[str, typer.Argument(help="the source instance, NAME or ID")],
    databases: Annotated[list[str], typer.Argument(help="databases to restore")],
    as_: Annotated[str | None, typer.Option("--as", help="restore the (one) database under this name")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing database or table")] = False,
    to: Annotated[str | None, typer.Option("--to", help="another registered instance, NAME or ID")] = None,
    tables: Annotated[list[str] | None, typer.Option("--table", help="SCHEMA.TABLE (repeatable)")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="newest backup by then, 'YYYY-MM-DD HH:MM:SS' UTC")]
    = None,
    globals_: Annotated[bool, typer.Option("--globals", help="also replay the roles (globals.sql)")] = False,
    follow_: FollowOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore databases (or tables) of an instance's newest backup, in place, renamed or elsewhere.

    Example: pgvault restore prod-1 appdb --as appdb_restored --follow"""
    if as_ and len(databases) != 1:
        typer.echo("pgvault: --as takes exactly one database", err=True)
        raise typer.Exit(2)
    if tables and len(databases) != 1:
        typer.echo("pgvault: --table takes exactly one database", err=True)
        raise typer.Exit(2)
    with failing():
        api = Client.from_config()
        src = api.instance(instance)["instance"]
        items = [f"/{databases[0]}/{_table_path(t)}" for t in tables] if tables else [f"/{d}" for d in databases]
        pg: dict[str, Any] = {"tableLevelRestore": bool(tables), "restoreGlobals": globals_}
        if as_of:
            pg["refTime"] = {"timevalue": as_of}
        if as_:
            pg["renameDatabases"] = {databases[0]: as_}
        options: dict[str, Any] = {"fileOption": {"sourceItem": items},
                                   "commonOptions": {"unconditionalOverwrite": overwrite}, "postgresRstOption": pg}
        if to:
            d = api.instance(to)["instance"]
            options["destination"] = {"destinationInstance": {"instanceId": d["instanceId"]}}
        body = {"taskInfo": {
            "associations": [{"clientName": src["clientName"], "instanceName": src["instanceName"],
                              "instanceId": src["instanceId"]}],
            "task": {"taskType": 1},
            "subTasks": [{"subTask": {"subTaskType": 3, "operationType": 1001},
                          "options": {"restoreOptions": options}}]}}
        job_id = str(api.post("/CreateTask", body)["jobIds"][0])
        if not follow_ and not as_json:
            typer.echo(f"restore job {job_id} started (pgvault job {job_id} --follow)")
            return
        finish(api, job_id, follow_, as_json)


def _table_path(spec: str) -> str:
    schema, dot, name = spec.partition(".")
    if not dot:
        schema, name = "public", spec
    return f"{schema}/{name}"


def verify(point: Annotated[str, typer.Argument(help="the restore point id (pgvault points)")],
           drill: Annotated[bool, typer.Option("--drill", help="also restore it on a throwaway server and "
                                                               "compare row counts")] = False,
           follow_: FollowOpt = False, as_json: JsonOpt = False) -> None:
    """Check a restore point's files (sha256), and with --drill prove it restores.

    Example: pgvault verify 7 --drill --follow"""
    with failing():
        api = Client.from_config()
        job_id = str(api.post(f"/RestorePoints/{point}/action/verify", {"drill": drill})["jobIds"][0])
        if not follow_ and not as_json:
            typer.echo(f"verification job {job_id} started (pgvault job {job_id} --follow)")
            return
        finish(api, job_id, follow_, as_json)


# --- audit trail -----------------------------------------------------------------------------------

_UNITS = {"m": 60, "h": 3600, "d": 86400}


def _when_arg(value: str | None, name: str) -> str | None:
    """``30m``, ``12h``, ``7d`` (that long ago), or a date or time as the API takes it (ISO 8601, UTC)."""
    if value is None:
        return None
    text = value.strip()
    if text[:-1].isdigit() and text[-1:] in _UNITS:
        return datetime.fromtimestamp(time.time() - int(text[:-1]) * _UNITS[text[-1]], UTC).isoformat()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        typer.echo(f"pgvault: {name} {value!r}: give 30m, 12h, 7d or a date/time such as 2026-12-01 or "
                   "2026-12-01T08:00:00Z", err=True)
        raise typer.Exit(2) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def audit(
    since: Annotated[str | None, typer.Option(help="from then on: 30m, 12h, 7d, or a date/time (UTC)")] = None,
    until: Annotated[str | None, typer.Option(help="before then (same forms)")] = None,
    user: Annotated[str | None, typer.Option(help="a user name or id")] = None,
    action: Annotated[str | None, typer.Option(help="an action (login, create_instance ...) or a route "
                                                    "('POST /Instance')")] = None,
    resource: Annotated[str | None, typer.Option(help="Instance, Plan, Job, Login ...")] = None,
    outcome: Annotated[str | None, typer.Option(help="success or failure")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one record each (the export)")] = False,
) -> None:
    """The audit trail, oldest first: who did what, from where, with which outcome.

    Example: pgvault audit --since 7d --user alice --json > audit.jsonl"""
    params = {k: v for k, v in {"since": _when_arg(since, "--since"), "until": _when_arg(until, "--until"),
                                "user": user, "action": action, "resource": resource, "outcome": outcome}.items()
              if v is not None}
    with failing():
        data = Client.from_config().request("GET", "/AuditTrail/export", params=params or None, raw=True)
    if as_json:
        sys.stdout.write(data.decode())
        return
    rows = [json.loads(line) for line in data.splitlines() if line.strip()]
    table(["TIME (UTC)", "USER", "ADDRESS", "ACTION", "RESOURCE", "ID", "STATUS", "OUTCOME"],
          [[_when(r["time"]), r["user"]["userName"] or "-", r["address"] or "-", r["route"], r["resource"],
            r["resourceId"] or "", r["status"], r["outcome"]] for r in rows])


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)
    app.add_typer(instances_app, name="instances")
    app.command()(backup)
    app.command()(jobs)
    app.command()(job)
    app.command()(kill)
    app.command()(points)
    app.command()(restore)
    app.command()(verify)
    app.command()(audit)
