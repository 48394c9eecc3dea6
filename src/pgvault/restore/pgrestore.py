"""What pg_restore says, per object.

pg_restore keeps going after an object fails (we do not pass --exit-on-error, so one extension a managed
login may not create does not cost the whole database) and reports each failure as::

    pg_restore: from TOC entry 2; 3079 16385 EXTENSION hstore (no owner)
    pg_restore: error: could not execute query: ERROR:  permission denied to create extension "hstore"
    HINT:  Must have CREATE privilege on current database to create this extension.
    Command was: CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..pgtools.versions import PgVersion

# Parameters that pg_restore sets at the start of every restore (its "fixed output state", before any
# object) and that older servers do not have, with the first release that has each. On an older server
# ``SET transaction_timeout = 0`` fails with "unrecognized configuration parameter" and changes nothing that
# server does (it has no such timeout): such an error is not an object that failed to restore.
# (``default_table_access_method``, set before each table, is turned off for targets before 12 instead:
# ``NO_TABLE_ACCESS_METHOD_BEFORE``.)
NEWER_PARAMETERS = {
    "transaction_timeout": 170000,
    "idle_in_transaction_session_timeout": 90600,
    "row_security": 90500,
}
NO_TABLE_ACCESS_METHOD_BEFORE = 120000  # pg_restore --no-table-access-method below this server version
_SET = re.compile(r"^SET (\w+) = ('?[\w.]*'?);$")


def unknown_to(target: PgVersion, command: str) -> str | None:
    """The parameter a ``SET`` command sets, when the ``target`` server is older than that parameter (see
    ``NEWER_PARAMETERS``); None for any other command."""
    m = _SET.match(command.strip())
    if m is None or m.group(1) not in NEWER_PARAMETERS or target.num >= NEWER_PARAMETERS[m.group(1)]:
        return None
    return m.group(1)


def target_options(target: PgVersion) -> list[str]:
    """pg_restore options a target of this version needs: before 12 there are no table access methods,
    and pg_restore would ``SET default_table_access_method`` before every table."""
    return ["--no-table-access-method"] if target.num < NO_TABLE_ACCESS_METHOD_BEFORE else []


_TOC = re.compile(r"^pg_restore: from TOC entry \d+; \d+ \d+ (.+)$")
_ERROR = re.compile(r"^pg_restore: error: (.+)$")
_UNRECOGNIZED = re.compile(r'^could not execute query: ERROR:\s+unrecognized configuration parameter "(\w+)"$')
_IGNORED = re.compile(r"^pg_restore: warning: errors ignored on restore: (\d+)$")


_SECRET = re.compile(r"(?i)\b(password|passwd|secret|token)(\s*=?\s*)('(?:[^']|'')*'|\S+)")


def redact(sql_text: str) -> str:
    """A failed statement is shown to help the operator, but DDL can carry credentials (a user mapping's
    password, a subscription's connection string): their values are masked."""
    return _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}'***'", sql_text)


@dataclass
class RestoreErrors:
    """pg_restore's stderr, read line by line: ``objects`` are the objects that failed; a ``SET`` of a
    parameter the ``target`` server does not know (``NEWER_PARAMETERS``) goes to ``unknown_settings``
    instead, since nothing was lost. Only the exact shape pg_restore gives such an error counts: outside
    any TOC entry, the error line alone, then its ``Command was:`` line (an object's failure whose text
    merely quotes those lines stays a failure)."""

    target: PgVersion
    objects: list[dict[str, str]] = field(default_factory=list)
    ignored: int = 0  # pg_restore's own count, "errors ignored on restore: N", unknown settings included
    unknown_settings: list[str] = field(default_factory=list)
    _current: str | None = None
    _setting: str | None = None  # the parameter of an "unrecognized" error just read, until its next line

    @property
    def failed(self) -> int:
        """How many objects really failed to restore: those reported, or more if pg_restore counted errors
        this parser did not see as such (its count wins, less the settings it knows to be harmless)."""
        return max(len(self.objects), self.ignored - len(self.unknown_settings))

    def summary(self) -> str:
        """A line for the job's log about the settings skipped, or ""."""
        if not self.unknown_settings:
            return ""
        names = ", ".join(sorted(set(self.unknown_settings)))
        return (f"the target (PostgreSQL {self.target.label}) does not have {names}, which pg_restore sets; "
                "ignored, nothing was lost")

    def feed(self, line: str) -> None:
        setting, self._setting = self._setting, None
        if m := _TOC.match(line):
            self._current = m.group(1)
        elif m := _ERROR.match(line):
            if self._current is None and (u := _UNRECOGNIZED.match(m.group(1))):
                self._setting = u.group(1)
            self.objects.append({"object": self._current or "", "error": m.group(1)})
            self._current = None
        elif m := _IGNORED.match(line):
            self.ignored = int(m.group(1))
        elif self.objects and not line.startswith("pg_restore:"):
            last = self.objects[-1]
            if line.startswith("Command was:"):
                command = line.removeprefix("Command was:").strip()
                if setting is not None and unknown_to(self.target, command) == setting:
                    self.objects.pop()
                    self.unknown_settings.append(setting)
                    return
                last["command"] = redact(command)[:500]
            else:
                last["error"] = f"{last['error']} {line.strip()}"[:1000]
