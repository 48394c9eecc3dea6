"""Notifications, the pure part: the events a target may want, what a message says, and the one form of a
target's URL that may be shown (its scheme and host, never credentials, paths or tokens).

No SQLAlchemy, no sending: the catalog side is ``services/notifications.py``, the sending ``notifier.py``.
"""

from __future__ import annotations

import enum
import urllib.parse
from typing import Any


class Event(enum.StrEnum):
    JOB_FAILED = "job_failed"  # a backup, restore or verification that Failed or completed with errors
    RPO_BREACH = "rpo_breach"  # an instance past its plan's RPO (once per breach)
    RPO_RECOVERED = "rpo_recovered"  # ... and back within it (once)
    DRILL_FAILED = "drill_failed"  # a restore drill that failed
    TEST = "test"  # POST /NotificationTarget/{id}/action/test (not a subscription)


SUBSCRIBABLE = (Event.JOB_FAILED, Event.RPO_BREACH, Event.RPO_RECOVERED, Event.DRILL_FAILED)

# Schemes whose host part is a server's name (shown); for the others (slack://TokenA/..., tgram://bot-token/...,
# discord://webhook-id/token) the host part is itself a secret, so only the scheme is shown.
_HOST_SCHEMES = frozenset({
    "mailto", "mailtos", "json", "jsons", "xml", "xmls", "form", "forms", "ntfy", "ntfys", "gotify", "gotifys",
    "matrix", "matrixs", "mmost", "mmosts", "rocket", "rockets", "mqtt", "mqtts", "apprise", "apprises",
    "http", "https", "ses", "smtp", "smtps",
})

DETAIL_CHARS = 500  # of one database's error in a message
DATABASES_SHOWN = 20


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def redact(url: str) -> str:
    """What may be shown of a target's URL: ``scheme://host[:port]`` for schemes whose host is a server,
    ``scheme://…`` for the rest. Never a user name, password, path or query."""
    scheme = scheme_of(url)
    if not scheme:
        return "…"
    if scheme not in _HOST_SCHEMES:
        return f"{scheme}://…"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return f"{scheme}://…"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}{f':{port}' if port else ''}"


def destination_hosts(url: str) -> list[str] | None:
    """The servers a URL makes pgvault connect to, as far as the URL says (its host, and a mail server
    named by ``smtp=``); None for services whose server the URL does not name (slack://, tgram://, ...)."""
    if scheme_of(url) not in _HOST_SCHEMES:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        hosts = [parts.hostname] if parts.hostname else []
    except ValueError:
        return None
    hosts += [v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() == "smtp" and v]
    return hosts or None


def secret_parts(url: str) -> list[str]:
    """The pieces of a URL that must never appear in what pgvault writes (an error message from a sender
    may quote them): the URL itself, and its user, password, path segments and query values."""
    out = [url]
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return out
    for value in (parts.username, parts.password, urllib.parse.unquote(parts.password or "")):
        if value:
            out.append(value)
    out += [seg for seg in parts.path.split("/") if len(seg) >= 4]
    out += [v for _, v in urllib.parse.parse_qsl(parts.query) if len(v) >= 4 and "@" not in v]
    if parts.hostname and scheme_of(url) not in _HOST_SCHEMES:
        out.append(parts.netloc)
    return sorted(set(out), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    for secret in secret_parts(url):
        text = text.replace(secret, "***")
    return text


def job_link(public_url: str, job_id: int) -> str:
    return f"{public_url.rstrip('/')}/commandcenter/api/Job/{job_id}"


def render(event: str, payload: dict[str, Any], public_url: str) -> tuple[str, str]:
    """The title and body of a notification, in words an operator acts on: which instance, what failed and
    why, and the link to the job."""
    instance = payload.get("instance", "?")
    account = payload.get("cloud_account")
    where = f"{instance} ({account})" if account else str(instance)
    lines: list[str] = []
    if event in (Event.JOB_FAILED, Event.DRILL_FAILED):
        job_id = int(payload.get("job_id", 0))
        kind = payload.get("job_type", "Job")
        status = payload.get("status", "Failed")
        if event == Event.DRILL_FAILED:
            title = f"pgvault: restore drill failed on {where} (job {job_id})"
        else:
            title = f"pgvault: {kind} job {job_id} {status.lower()} on {where}"
        lines += [f"Instance: {where}", f"Job: {job_id} ({kind}), {status}"]
        if payload.get("restored_on"):
            lines.append(f"Drill on: {payload['restored_on']}")
        if payload.get("plan"):
            lines.append(f"Plan: {payload['plan']}")
        if payload.get("message"):
            lines.append(f"Why: {payload['message']}")
        failed = payload.get("databases") or []
        if failed:
            lines.append("Databases that failed:")
            for db in failed[:DATABASES_SHOWN]:
                lines.append(f"  - {db.get('name')}: {db.get('status')}: {str(db.get('error') or '')[:DETAIL_CHARS]}")
            if len(failed) > DATABASES_SHOWN:
                lines.append(f"  ... and {len(failed) - DATABASES_SHOWN} more")
        lines.append(f"Job details: {job_link(public_url, job_id)}")
    elif event == Event.RPO_BREACH:
        title = f"pgvault: {where} is past its RPO"
        lines += [f"Instance: {where}", f"Plan: {payload.get('plan')} (RPO {payload.get('rpo')})",
                  f"No restore point within the RPO since {payload.get('since')}.",
                  f"Newest restore point: {payload.get('last_backup') or 'none'}"]
        if payload.get("last_job_id"):
            lines.append(f"Newest backup job: {job_link(public_url, int(payload['last_job_id']))}"
                         f" ({payload.get('last_job_status')}: {payload.get('last_job_message') or ''})")
    elif event == Event.RPO_RECOVERED:
        title = f"pgvault: {where} is back within its RPO"
        lines += [f"Instance: {where}", f"Plan: {payload.get('plan')}",
                  f"Past its RPO from {payload.get('since')} until {payload.get('recovered_at')}.",
                  f"Newest restore point: {payload.get('last_backup') or 'none'}"]
    else:
        title = "pgvault: test notification"
        lines.append(f"This target ({payload.get('target')}) receives pgvault's notifications.")
        lines.append(f"Service: {public_url}")
    return title, "\n".join(lines)
