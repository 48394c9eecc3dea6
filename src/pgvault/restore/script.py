"""A restore that must be all or nothing, on any major: ``pg_restore --single-transaction -f -`` (the SQL
script, wrapped in BEGIN ... COMMIT by pg_restore itself) | the script filter | ``psql -v ON_ERROR_STOP=1``.

Why not ``pg_restore --single-transaction -d``: it stops at the first error, and pg_restore 18 begins every
restore with ``SET transaction_timeout = 0``, which servers before 17 refuse. Table-level restores onto
PostgreSQL 10-16 all failed that way. The script route lets pgvault drop exactly those ``SET`` lines, and
only in the script's preamble (before the first object: no function body or COPY data is ever touched),
and keeps every other error fatal. The filter also holds back the script's closing ``COMMIT`` until
pg_restore has ended successfully: a pg_restore that fails (a damaged archive, a kill) stops psql before it
reads a COMMIT, so nothing is committed.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..pgtools.runner import CancelToken, ProgramResult, run_program
from ..pgtools.versions import PgVersion
from .archive import ProgramInput
from .pgrestore import redact, unknown_to

_COPY_START = re.compile(rb"^COPY .* FROM stdin;$")
_PSQL_ERROR = re.compile(r"^psql:[^:]*:\d+: (ERROR|FATAL):\s+(.*)$")


class ScriptFilter:
    """Streams a pg_restore SQL script through, line by line outside COPY data:

    - in the preamble (``SET``s, ``set_config``, comments, ``BEGIN``, psql's ``\\restrict``: what pg_restore
      writes before the first object), drops the ``SET`` lines of parameters the target does not have;
    - COPY data (``COPY ... FROM stdin;`` up to a ``\\.`` line) passes untouched, without per-line work;
    - a ``COMMIT;`` line and what follows it (pg_restore's closing comments) is held back while only such
      trailing lines follow, and let out by ``finish``, which the caller calls only when pg_restore succeeded.
    """

    _PREAMBLE = re.compile(rb"^(|--.*|SET .*;|SELECT pg_catalog\.set_config\(.*\);|BEGIN;|\\restrict .*)$")
    _TRAILER = re.compile(rb"^(|--.*|\\unrestrict .*)$")

    def __init__(self, target: PgVersion) -> None:
        self.target = target
        self.dropped: list[str] = []
        self._pending = b""  # always begins at the start of a line
        self._in_copy = False
        self._preamble = True
        self._held: list[bytes] | None = None  # from a COMMIT line on, while only trailing lines follow

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            if self._in_copy:
                if data.startswith(b"\\.\n", pos):
                    end = pos
                else:
                    end = data.find(b"\n\\.\n", pos)
                    if end < 0:  # all data so far: pass every whole line, keep the last, incomplete one
                        last_nl = data.rfind(b"\n", pos)
                        if last_nl >= 0:
                            out.append(data[pos:last_nl + 1])
                            pos = last_nl + 1
                        break
                    end += 1
                out.append(data[pos:end + 3])
                pos = end + 3
                self._in_copy = False
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            line = data[pos:nl]
            pos = nl + 1
            self._line(line, out)
        self._pending = data[pos:]
        return b"".join(out)

    def _line(self, line: bytes, out: list[bytes]) -> None:
        if self._held is not None:
            if self._TRAILER.match(line):
                self._held.append(line + b"\n")
                return
            out.extend(self._held)  # a COMMIT that was not the end (a line of a function body, say)
            self._held = None
        if self._preamble:
            if not self._PREAMBLE.match(line):
                self._preamble = False
            elif line.startswith(b"SET ") and (name := unknown_to(self.target, line.decode("utf-8", "replace"))):
                self.dropped.append(name)
                return
        if line.startswith(b"COPY ") and _COPY_START.match(line):
            self._in_copy = True
        elif line == b"COMMIT;":
            self._held = [line + b"\n"]
            return
        out.append(line + b"\n")

    def finish(self) -> bytes:
        """The rest of the script, the held-back COMMIT included: call only once pg_restore succeeded."""
        out: list[bytes] = []
        rest, self._pending = self._pending, b""
        if rest:  # a last line without its newline (pg_restore ends with one; psql needs none)
            if self._in_copy:
                out.append(rest)
            else:
                self._line(rest, out)
        if self._held is not None:
            out.extend(self._held)
            self._held = None
        return b"".join(out)


@dataclass
class ScriptErrors:
    """psql's errors (ON_ERROR_STOP: the first one ends the script, and the transaction with it)."""

    objects: list[dict[str, str]] = field(default_factory=list)

    def feed(self, line: str) -> None:
        if m := _PSQL_ERROR.match(line):
            self.objects.append({"object": "", "error": m.group(2)})
        elif self.objects and line.startswith(("DETAIL:", "HINT:", "CONTEXT:")):
            self.objects[-1]["error"] = f"{self.objects[-1]['error']} {line.strip()}"[:1000]
        elif self.objects and line.startswith("LINE "):
            self.objects[-1]["command"] = redact(line.split(":", 1)[-1].strip())[:500]


class _PsqlGone(Exception):
    pass


def restore_script(restore_argv: list[str], restore_env: dict[str, str], archive: ProgramInput,
                   psql_argv: list[str], psql_env: dict[str, str], *, target: PgVersion, log: logging.Logger,
                   cancel: CancelToken, on_psql_stderr: Callable[[str], None]) -> tuple[ProgramResult, list[str]]:
    """Run ``restore_argv`` (a pg_restore writing its script to stdout) into ``psql_argv``, the script
    filtered for ``target`` on the way. Returns psql's result (non-zero: nothing was committed) and the
    settings dropped. A failure of pg_restore stops psql before it can see the end of the script, and is
    raised."""
    filt = ScriptFilter(target)
    pipe: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
    psql_done = threading.Event()
    outcome: list[ProgramResult | BaseException] = []

    def script() -> Iterator[bytes]:
        while (item := pipe.get()) is not None:
            if isinstance(item, BaseException):
                raise item  # run_program stops psql: the transaction never reaches COMMIT
            yield item

    def run_psql() -> None:
        try:
            outcome.append(run_program(psql_argv, psql_env, log=log, cancel=cancel, stdin_source=script(),
                                       on_stderr=on_psql_stderr, check=False))
        except BaseException as exc:
            outcome.append(exc)
        finally:
            psql_done.set()

    def put(item: bytes | BaseException | None) -> None:
        while True:
            try:
                pipe.put(item, timeout=0.2)
                return
            except queue.Full:
                if psql_done.is_set():
                    raise _PsqlGone() from None

    def sink(chunk: bytes) -> None:
        if psql_done.is_set():  # psql stopped at an error: reading the rest of the archive is of no use
            raise _PsqlGone()
        if data := filt.feed(chunk):
            put(data)

    thread = threading.Thread(target=run_psql, name="psql-script", daemon=True)
    thread.start()
    failure: BaseException | None = None
    try:
        try:
            run_program(restore_argv, restore_env, log=log, cancel=cancel, stdout_sink=sink, **archive)
            tail: list[bytes | BaseException | None] = [filt.finish(), None]
        except _PsqlGone:
            tail = []  # psql stopped first (an error in the script): its result says why
        except BaseException as exc:
            failure, tail = exc, [exc]
        for item in tail:
            put(item)
    except _PsqlGone:
        pass
    finally:
        thread.join()
    if failure is not None:
        raise failure
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result, filt.dropped
