"""This process as a node: a name that outlives it, an incarnation that does not, and the locks that say
whether it may act on what an earlier incarnation left.

- The **name** is ``PGVAULT_NODE_NAME``, or one generated at the first start and kept in
  ``PGVAULT_HOME/node-id`` (the host name and 8 random hex digits). Every lease a worker takes starts with
  it (``<name>:<incarnation>:<claim>``), so a node that comes back knows which Running jobs were its own.
- The **incarnation** is this process (``<name>:<pid>.<random>``).
- The **node lock** (``Catalog.hold_node_lock``): one live process per name and catalog holds it. Holding it
  proves that jobs leased by another incarnation of this name have no live worker left, so they are taken
  back at once (``WorkerPool.start``), not after their lease. Two nodes of different names never touch each
  other's jobs this way; a node that cannot take its lock (another live process has its name) leaves
  them to the lease reaper.
- The **home lock** (``PGVAULT_HOME/pgvault.lock``): one live process per ``PGVAULT_HOME`` holds it. Holding
  it proves that what another process left in ``PGVAULT_HOME/run`` (password files, downloaded archives)
  belongs to a dead one, so it is removed at start (``pgtools.runner.prepare_runtime_dir``).

Both locks are dropped by the kernel (or the PostgreSQL server) when the process dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .catalog.db import Catalog, flock_file

log = logging.getLogger("pgvault.node")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # no ':': it separates a lease's parts
NODE_ID_FILE = "node-id"
HOME_LOCK_FILE = "pgvault.lock"


def generated_name() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()).strip("._-")[:40] or "node"
    return f"{host}-{secrets.token_hex(4)}"


def home_node_name(home: Path) -> str:
    """The name kept in ``home/node-id``, written at the first start. Two processes starting together
    agree on one (the file appears whole, by a hard link, or not at all)."""
    path = home / NODE_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text().strip()
        if NAME.match(text):
            return text
        raise ValueError(f"{path} does not hold a node name ({NAME.pattern}); remove it to get a new one")
    tmp = home / f".{NODE_ID_FILE}.{secrets.token_hex(4)}"
    tmp.write_text(generated_name() + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return home_node_name(home)


@dataclass
class Node:
    name: str
    incarnation: str
    sole: bool  # holds the node lock: jobs leased by another incarnation of this name are its to take back
    owns_home: bool  # holds the home lock: what another process left in PGVAULT_HOME/run can go
    _releases: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, home: Path, catalog: Catalog, name: str | None = None) -> Node:
        name = name or home_node_name(home)
        if not NAME.match(name):
            raise ValueError(f"node name {name!r} must match {NAME.pattern}")
        releases = []
        home_lock = flock_file(home / HOME_LOCK_FILE)
        if home_lock is None:
            log.warning("another live pgvault process uses %s: its run folder is not swept", home)
        else:
            releases.append(home_lock)
        node_lock = catalog.hold_node_lock(name)
        if node_lock is None:
            log.warning("another live process is node %r on this catalog: the jobs it leased are left to it (or "
                        "to the lease reaper); give each process its own PGVAULT_NODE_NAME", name)
        else:
            releases.append(node_lock)
        incarnation = f"{name}:{os.getpid()}.{uuid.uuid4().hex[:8]}"
        return cls(name, incarnation, node_lock is not None, home_lock is not None, releases)

    @property
    def prefix(self) -> str:
        """What every lease of this node starts with, whichever incarnation took it."""
        return f"{self.name}:"

    def lease(self) -> str:
        """A new claim's lease token: a job reaped and claimed again is a different run."""
        return f"{self.incarnation}:{uuid.uuid4().hex[:8]}"

    def close(self) -> None:
        while self._releases:
            self._releases.pop()()
