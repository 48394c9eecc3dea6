"""The compressor a dump passes through: a child process between pg_dump and pgvault.

pg_dump's uncompressed archive goes from its stdout straight into the compressor's stdin through a kernel
pipe, so the bytes never enter pgvault's own process: pgvault reads only the compressed stream (4-80x
smaller), hashes, encrypts and stores it. That keeps the service process (API, scheduler, workers, one
GIL) out of the data path, like the floor pipeline ``pg_dump -Fc -Z0 | zstd -1`` that the benchmark
compares against (docs/performance.md).

The compressor is the ``zstd`` command-line tool when it is installed, else this module run as a program
(``python -m pgvault.backup.compressor LEVEL``: python-zstandard, the same libzstd, at the same speed,
about 30 ms more to start). Both write standard zstd frames with a content checksum: either one's files
restore with the other, and with ``zstd -dc``.
``PGVAULT_COMPRESSOR`` chooses: ``auto`` (the default), ``zstd`` or ``builtin``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys

CHOICES = ("auto", "zstd", "builtin")
_BLOCK = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux fcntl: a 1 MiB pipe buffer means fewer, larger reads


class CompressorMissing(RuntimeError):
    pass


def compressor_argv(level: int, choice: str = "auto") -> list[str]:
    """The command that reads an archive on stdin and writes it zstd-compressed at ``level`` on stdout."""
    if choice not in CHOICES:
        raise ValueError(f"compressor must be one of {', '.join(CHOICES)}, not {choice!r}")
    zstd = shutil.which("zstd") if choice != "builtin" else None
    if zstd is not None:
        return [zstd, f"-{level}", "--quiet", "--stdout"]
    if choice == "zstd":
        raise CompressorMissing("PGVAULT_COMPRESSOR=zstd, but there is no zstd program on PATH")
    # -P: not the working folder first on sys.path (-m would put it there, and a zstandard.py in the
    # service's folder would be imported instead of the installed one).
    return [sys.executable, "-P", "-m", "pgvault.backup.compressor", str(level)]


def compressor_env() -> dict[str, str]:
    """What the compressor needs of the environment (and nothing else: no libpq settings)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    if "PYTHONPATH" in os.environ:  # the builtin compressor imports pgvault the way this process did
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def main(argv: list[str]) -> int:
    import fcntl

    import zstandard

    if len(argv) != 1 or not argv[0].lstrip("-").isdigit():
        print("usage: python -m pgvault.backup.compressor LEVEL", file=sys.stderr)
        return 2
    with contextlib.suppress(OSError):  # not a pipe, or a lower limit: only fewer, larger reads are lost
        fcntl.fcntl(0, _F_SETPIPE_SZ, _BLOCK)
    with open(0, "rb", buffering=0, closefd=False) as src, open(1, "wb", buffering=0, closefd=False) as dst:
        # With a content checksum in the frame, as the zstd program writes: decompression verifies it.
        zstandard.ZstdCompressor(level=int(argv[0]), write_checksum=True).copy_stream(
            src, dst, read_size=_BLOCK, write_size=_BLOCK)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
