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

_TOC = re.compile(r"^pg_restore: from TOC entry \d+; \d+ \d+ (.+)$")
_ERROR = re.compile(r"^pg_restore: error: (.+)$")
_IGNORED = re.compile(r"^pg_restore: warning: errors ignored on restore: (\d+)$")


_SECRET = re.compile(r"(?i)\b(password|passwd|secret|token)(\s*=?\s*)('(?:[^']|'')*'|\S+)")


def redact(sql_text: str) -> str:
    """A failed statement is shown to help the operator, but DDL can carry credentials (a user mapping's
    password, a subscription's connection string): their values are masked."""
    return _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}'***'", sql_text)


@dataclass
class RestoreErrors:
    objects: list[dict[str, str]] = field(default_factory=list)
    ignored: int = 0
    _current: str | None = None

    def feed(self, line: str) -> None:
        if m := _TOC.match(line):
            self._current = m.group(1)
        elif m := _ERROR.match(line):
            self.objects.append({"object": self._current or "", "error": m.group(1)})
            self._current = None
        elif m := _IGNORED.match(line):
            self.ignored = int(m.group(1))
        elif self.objects and not line.startswith("pg_restore:"):
            last = self.objects[-1]
            if line.startswith("Command was:"):
                last["command"] = redact(line.removeprefix("Command was:").strip())[:500]
            else:
                last["error"] = f"{last['error']} {line.strip()}"[:1000]
