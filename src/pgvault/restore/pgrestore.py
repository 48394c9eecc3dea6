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

# Parameters that pg_restore sets (at the start of every restore, or before a table) and that older servers
# do not have, with the first release that has each. On an older server ``SET transaction_timeout = 0``
# fails with "unrecognized configuration parameter" and changes nothing that server does (it has no such
# timeout; before 12 every table is heap): such an error is not an object that failed to restore.
NEWER_PARAMETERS = {
    "transaction_timeout": 170000,
    "default_table_access_method": 120000,
    "idle_in_transaction_session_timeout": 90600,
    "row_security": 90500,
}
_SET = re.compile(r"^SET (\w+) = ('?[\w.]*'?);$")


def unknown_to(target: PgVersion, command: str) -> str | None:
    """The parameter a ``SET`` command sets, when the ``target`` server is older than that parameter (see
    ``NEWER_PARAMETERS``); None for any other command."""
    m = _SET.match(command.strip())
    if m is None or m.group(1) not in NEWER_PARAMETERS or target.num >= NEWER_PARAMETERS[m.group(1)]:
        return None
    if m.group(1) == "default_table_access_method" and m.group(2).strip() != "heap":
        return None
    return m.group(1)

_TOC = re.compile(r"^pg_restore: from TOC entry \d+; \d+ \d+ (.+)$")
_ERROR = re.compile(r"^pg_restore: error: (.+)$")
_COULD_NOT_SET = re.compile(r'^could not set "(\w+)": ERROR:\s+unrecognized configuration parameter "(\w+)"')
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
    instead, since nothing was lost."""

    target: PgVersion
    objects: list[dict[str, str]] = field(default_factory=list)
    ignored: int = 0  # pg_restore's own count, "errors ignored on restore: N", unknown settings included
    unknown_settings: list[str] = field(default_factory=list)
    _current: str | None = None

    @property
    def failed(self) -> int:
        """How many objects really failed to restore."""
        return len(self.objects)

    def summary(self) -> str:
        """A line for the job's log about the settings skipped, or ""."""
        if not self.unknown_settings:
            return ""
        names = ", ".join(sorted(set(self.unknown_settings)))
        return (f"the target (PostgreSQL {self.target.label}) does not have {names}, which pg_restore sets; "
                "ignored, nothing was lost")

    def feed(self, line: str) -> None:
        if m := _TOC.match(line):
            self._current = m.group(1)
        elif m := _ERROR.match(line):
            # pg_restore sets a table's access method itself, without a "Command was:" line
            if (s := _COULD_NOT_SET.match(m.group(1))) and s.group(1) == s.group(2) and \
                    unknown_to(self.target, f"SET {s.group(1)} = heap;"):
                self.unknown_settings.append(s.group(1))
                self._current = None
                return
            self.objects.append({"object": self._current or "", "error": m.group(1)})
            self._current = None
        elif m := _IGNORED.match(line):
            self.ignored = int(m.group(1))
        elif self.objects and not line.startswith("pg_restore:"):
            last = self.objects[-1]
            if line.startswith("Command was:"):
                command = line.removeprefix("Command was:").strip()
                setting = unknown_to(self.target, command)
                if setting is not None and f'unrecognized configuration parameter "{setting}"' in last["error"]:
                    self.objects.pop()
                    self.unknown_settings.append(setting)
                    return
                last["command"] = redact(command)[:500]
            else:
                last["error"] = f"{last['error']} {line.strip()}"[:1000]
