"""CPU and memory of processes, read from /proc (Linux only).

``utime``/``stime`` are a process's own CPU (all its threads); ``cutime``/``cstime`` are the CPU of the
children it has waited for. So for ``pgvault serve`` the first pair is pgvault itself and the second its
pg_dump/pg_dumpall children; for a PostgreSQL postmaster the second pair is the backends that exited
(pg_dump's sessions end with the dump, so they are counted once the postmaster has reaped them).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cpu:
    own: float  # seconds
    children: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.own - other.own, self.children - other.children)


def cpu(pid: int) -> Cpu:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return Cpu((utime + stime) / TICK, (cutime + cstime) / TICK)


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int) -> bool:
    """Resets VmHWM to the current RSS (``echo 5 > /proc/PID/clear_refs``), so that VmHWM read later is the
    peak since now, without sampling gaps. False where the kernel or permissions do not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


class RssSampler:
    """Samples VmRSS of one process every ``interval`` seconds in a thread; ``peak_mb`` is the largest."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024
