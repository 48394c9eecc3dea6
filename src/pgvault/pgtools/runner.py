"""The one wrapper for every external program pgvault runs (pg_dump, pg_dumpall, pg_restore, ...).

- the password goes through a 0600 passfile in a private folder, never argv, never the log;
- SSL, which the bundled client tools were built without, goes through a local TLS bridge (a child
  process per ``client_env``, so the dump's bytes never cross this one);
- stderr is streamed to the job's log, stdout to a sink, the exit code is checked;
- a cancel token stops the whole process group (pg_dump -j forks workers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ToolError
from .connection import ServerAddress

CHUNK = 1 << 20


class Cancelled(Exception):
    """The job was asked to stop."""


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks = list(self._callbacks)
        for cb in callbacks:
            with contextlib.suppress(Exception):
                cb()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()

    @contextlib.contextmanager
    def on_cancel(self, cb: Callable[[], None]) -> Iterator[None]:
        with self._lock:
            self._callbacks.append(cb)
            already = self._event.is_set()
        if already:
            cb()
        try:
            yield
        finally:
            with self._lock:
                self._callbacks.remove(cb)


def prepare_runtime_dir(path: Path, *, sweep: bool = True) -> Path:
    """The private folder (0700) where jobs keep passfiles, TLS bridge sockets and local copies, instead of
    the system's temporary folder; with ``sweep`` (no other live process uses it), what a killed process
    left there is removed: a passfile holds a password in clear, and a SIGKILLed process cannot run the
    cleanup of ``client_env``. Its path is handed to each job (``runtime_dir`` of the engines' requests);
    what goes in it is named ``pgvault-*``."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    if sweep:
        for stale in path.glob("pgvault-*"):
            shutil.rmtree(stale, ignore_errors=True)
    return path


def _escape_passfile(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def client_env(address: ServerAddress, runtime_dir: Path | None = None) -> Iterator[dict[str, str]]:
    """Environment for libpq programs that reach ``address``; the database is chosen per program with
    ``PGDATABASE`` (safe for any name, unlike ``-d``, which treats ``=`` as a connection string).

    With SSL, a TLS bridge process serves the block (``tlsbridge.BridgeProcess``): a CA file it cannot use
    raises ``ConnectionFailed``, a bridge that cannot start ``ToolError``, and so does leaving the block
    after the bridge died in it (killed, crashed), naming that as the reason the clients failed."""
    with tempfile.TemporaryDirectory(prefix="pgvault-", dir=runtime_dir) as tmp:
        os.chmod(tmp, 0o700)
        passfile = Path(tmp) / "pgpass"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"*:*:*:*:{_escape_passfile(address.password)}\n")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C.UTF-8",
            "PGPASSFILE": str(passfile),
            "PGUSER": address.user,
            "PGDATABASE": address.dbname,
            "PGCONNECT_TIMEOUT": str(address.connect_timeout),
            "PGAPPNAME": "pgvault",
        }
        if address.ssl_enabled:
            from .tlsbridge import BridgeProcess

            # A child process (not a thread of this one) carries the dump's bytes through TLS. Its socket
            # folder goes inside this private one, so that a bridge killed with the service is swept too.
            with BridgeProcess(
                address.host, address.port,
                ca_file=Path(address.ssl_ca) if address.ssl_ca else None,
                connect_timeout=address.connect_timeout, folder=Path(tmp),
            ) as bridge:
                env.update(bridge.libpq_env())
                yield env
        else:
            env.update(PGHOST=address.host, PGPORT=str(address.port), PGSSLMODE="disable")
            yield env


def dbname_arg(name: str) -> str:
    """``--dbname`` for any database name: a one-keyword connection string with the name quoted as libpq
    wants (pg_restore requires -d; a bare name with ``=`` in it would be read as a connection string)."""
    quoted = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"--dbname=dbname='{quoted}'"


@dataclass
class ProgramResult:
    returncode: int
    stderr: str


Filter = tuple[list[str], dict[str, str]]  # a filter program: argv and environment


def run_program(
    argv: list[str],
    env: dict[str, str],
    *,
    log: logging.Logger,
    cancel: CancelToken | None = None,
    stdout_sink: Callable[[bytes], None] | None = None,
    stdin_source: Iterator[bytes] | None = None,
    on_stderr: Callable[[str], None] | None = None,
    check: bool = True,
    stdout_through: Filter | None = None,
    stdin_through: Filter | None = None,
    on_start: Callable[[Pipeline], None] | None = None,
) -> ProgramResult:
    """Run one program to its end (``Pipeline``'s docstring says how): the one call every caller makes.
    ``on_start`` is handed the pipeline once its processes run (to watch it: ``Pipeline.written``)."""
    pipeline = Pipeline(argv, env, log=log, cancel=cancel, stdout_filter=stdout_through, stdin_filter=stdin_through)
    return pipeline.run(stdout_sink=stdout_sink, stdin_source=stdin_source, on_stderr=on_stderr, check=check,
                        on_start=on_start)


class Pipeline:
    """One program, alone or joined by a kernel pipe to a filter program on one side.

    - stdout goes to ``stdout_sink`` in 1 MiB chunks (or is discarded); stderr lines go to ``log`` (and
      ``on_stderr``), the last of them into the result and any ``ToolError``; ``stdin_source`` feeds the
      program's stdin from another thread. When the source itself fails (a stored file that does not
      decrypt or cannot be read), the program is stopped rather than left to take a cut-short input for a
      whole one, and the source's exception is raised.
    - ``stdout_filter`` (argv, env) stands between the program's stdout and the sink (``pg_dump | zstd``):
      the unfiltered bytes never pass through this process. Both are stopped together, and a failure of
      either fails the run, the filter's first (the program then only saw a broken pipe).
    - ``stdin_filter`` is the same the other way round (``zstd -d | pg_restore``): the source feeds the
      filter, whose stdout is the program's stdin. A filter that fails fails the run, first (the program
      then saw its input cut short), unless it died of a broken pipe: then the program stopped reading,
      and the program's own result says why.
    - a cancel stops both processes' groups (pg_dump -j forks workers).
    """

    def __init__(self, argv: list[str], env: dict[str, str], *, log: logging.Logger,
                 cancel: CancelToken | None = None, stdout_filter: Filter | None = None,
                 stdin_filter: Filter | None = None) -> None:
        if stdout_filter is not None and stdin_filter is not None:
            raise ValueError("a pipeline has a filter on one side at most")
        self.argv, self.env, self.log, self.cancel = argv, env, log, cancel
        self.stdout_filter, self.stdin_filter = stdout_filter, stdin_filter
        self.name = Path(argv[0]).name
        through = stdout_filter or stdin_filter
        self.filter_name = Path(through[0][0]).name if through is not None else ""
        self._procs: list[subprocess.Popen[bytes]] = []  # the program first, then its filter
        self._source_failed: list[BaseException] = []
        self._written = 0

    def run(self, *, stdout_sink: Callable[[bytes], None] | None = None,
            stdin_source: Iterator[bytes] | None = None, on_stderr: Callable[[str], None] | None = None,
            check: bool = True, on_start: Callable[[Pipeline], None] | None = None) -> ProgramResult:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        if self.stdout_filter is not None and stdout_sink is None:
            raise ValueError("stdout_through needs a stdout_sink")
        if self.stdin_filter is not None and stdin_source is None:
            raise ValueError("stdin_through needs a stdin_source")
        stdout, feed_into = self._spawn(stdout_sink is not None, stdin_source is not None)
        tail: deque[str] = deque(maxlen=40)
        filter_tail: deque[str] = deque(maxlen=10)
        threads = [threading.Thread(target=self._read_stderr, args=(self._procs[0], self.name, tail, on_stderr),
                                    daemon=True, name=f"{self.name}-stderr")]
        if len(self._procs) > 1:
            threads.append(threading.Thread(target=self._read_stderr,
                                            args=(self._procs[1], self.filter_name, filter_tail, None),
                                            daemon=True, name=f"{self.filter_name}-stderr"))
        if stdin_source is not None:
            assert feed_into is not None
            threads.append(threading.Thread(target=self._feed, args=(stdin_source, feed_into), daemon=True,
                                            name=f"{self.name}-stdin"))
        for t in threads:
            t.start()
        if on_start is not None:
            on_start(self)
        try:
            with self.cancel.on_cancel(self._stop) if self.cancel is not None else contextlib.nullcontext():
                if stdout_sink is not None:
                    assert stdout is not None
                    while chunk := stdout.read(CHUNK):
                        stdout_sink(chunk)
                for p in self._procs:
                    p.wait()
        except BaseException:
            self._stop()
            raise
        finally:
            for t in threads:
                t.join(timeout=10)
            for p in self._procs:
                _close(p)
        return self._outcome(tail, filter_tail, check)

    def written(self) -> int:
        """Bytes the program has written so far (stdout and stderr: Linux's ``/proc/<pid>/io`` ``wchar``),
        read from another thread without touching the stream: pg_dump's output before its filter
        compresses it. 0 before it starts or where there is no such file; its last value once it ended."""
        procs = self._procs
        if not procs or procs[0].returncode is not None:
            return self._written
        try:
            with open(f"/proc/{procs[0].pid}/io", "rb") as fh:
                for line in fh:
                    if line.startswith(b"wchar:"):
                        self._written = int(line.split()[1])
                        break
        except (OSError, ValueError):
            pass
        return self._written

    # -- the parts -------------------------------------------------------------------------------
    def _spawn(self, with_stdout: bool, with_stdin: bool) -> tuple[Any, Any]:
        """Start the filter (stdin side) and the program, or the program and the filter (stdout side),
        joined by a kernel pipe; returns the stream the sink reads and the one the source feeds."""
        infilt: subprocess.Popen[bytes] | None = None
        if self.stdin_filter is not None:
            infilt = _start_filter(self.stdin_filter, subprocess.PIPE,
                                   f"{self.filter_name}, the input filter of {self.name}")
        try:
            proc = subprocess.Popen(
                self.argv, env=self.env,
                stdin=infilt.stdout if infilt is not None else (subprocess.PIPE if with_stdin else subprocess.DEVNULL),
                stdout=subprocess.PIPE if with_stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True, bufsize=0,
            )
        except BaseException:
            if infilt is not None:
                _terminate(infilt)
                _close(infilt)
            raise
        self._procs = [proc]
        stdout, feed_into = proc.stdout, proc.stdin
        if infilt is not None:
            assert infilt.stdout is not None
            infilt.stdout.close()  # the program holds the pipe's read end: the filter sees EPIPE if it dies
            self._procs.append(infilt)
            feed_into = infilt.stdin
        if self.stdout_filter is not None:
            try:
                filt = _start_filter(self.stdout_filter, proc.stdout,
                                     f"{self.filter_name}, the output filter of {self.name}")
            except BaseException:
                _terminate(proc)
                _close(proc)
                raise
            assert proc.stdout is not None
            proc.stdout.close()  # the filter holds the pipe's read end: the program sees EPIPE if it dies
            self._procs.append(filt)
            stdout = filt.stdout
        return stdout, feed_into

    def _read_stderr(self, p: subprocess.Popen[bytes], prog: str, lines: deque[str],
                     on_stderr: Callable[[str], None] | None) -> None:
        assert p.stderr is not None
        for raw in p.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                lines.append(line)
                self.log.info("%s: %s", prog, line)
                if on_stderr is not None:
                    on_stderr(line)

    def _feed(self, source: Iterator[bytes], into: Any) -> None:
        try:
            for chunk in source:
                try:
                    into.write(chunk)
                except OSError:  # the program (or its filter) stopped reading: its exit code tells
                    return
        except Exception as exc:
            self._source_failed.append(exc)
            for p in self._procs:
                _terminate(p)
        finally:
            with contextlib.suppress(OSError):
                into.close()

    def _stop(self) -> None:
        try:
            _terminate(self._procs[0])
        finally:
            if len(self._procs) > 1:
                _terminate(self._procs[1])

    def _outcome(self, tail: deque[str], filter_tail: deque[str], check: bool) -> ProgramResult:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        if self._source_failed:
            raise self._source_failed[0]
        procs = self._procs
        if len(procs) > 1 and procs[1].returncode != 0 and not (
                self.stdin_filter is not None and procs[1].returncode == -signal.SIGPIPE):
            role = "input filter" if self.stdin_filter is not None else "output filter"
            raise ToolError(f"{self.filter_name} (the {role} of {self.name}) exited with code {procs[1].returncode}: "
                            f"{chr(10).join(filter_tail) or 'no message'}")
        result = ProgramResult(procs[0].returncode, "\n".join(tail))
        if check and procs[0].returncode != 0:
            raise ToolError(f"{self.name} exited with code {procs[0].returncode}: {result.stderr or 'no message'}")
        return result


def _start_filter(through: Filter, stdin: Any, what: str) -> subprocess.Popen[bytes]:
    """A filter program (``zstd``) with its stdout piped; ToolError when it cannot start."""
    try:
        return subprocess.Popen(through[0], env=through[1], stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, bufsize=0)
    except OSError as exc:
        raise ToolError(f"could not start {what}: {exc}") from exc


def _close(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
