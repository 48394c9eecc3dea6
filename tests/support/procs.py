"""Processes seen from /proc (Linux): the TLS bridge children a process left running."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

BRIDGE_MODULE = b"pgvault.pgtools.tlsbridge"


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def bridge_processes(parent: int | None = None) -> list[int]:
    """Pids of the TLS bridge processes that ``parent`` (this process by default) started and that run."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None or fields[0] == "Z" or int(fields[1]) != parent:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if BRIDGE_MODULE in cmdline:
            found.append(int(entry))
    return found


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
