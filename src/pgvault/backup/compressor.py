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

Restores go the other way through the same program (``decompressor_argv``: ``zstd -d``, or this module
with ``-d``) between pgvault and pg_restore: pgvault reads, checks and decrypts the stored stream and
writes it, still compressed, into the decompressor; the archive itself never enters pgvault's process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from typing import Any, BinaryIO

from ..errors import CompressorMissing

CHOICES = ("auto", "zstd", "builtin")
_BLOCK = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux fcntl: a 1 MiB pipe buffer means fewer, larger reads




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


def decompressor_argv(choice: str = "auto") -> list[str]:
    """The command that reads a zstd stream on stdin and writes it decompressed on stdout; it fails (exit
    code not 0) on a stream that is damaged, cut short, or whose content checksum does not match."""
    if choice not in CHOICES:
        raise ValueError(f"compressor must be one of {', '.join(CHOICES)}, not {choice!r}")
    zstd = shutil.which("zstd") if choice != "builtin" else None
    if zstd is not None:
        return [zstd, "-d", "--quiet", "--stdout"]
    if choice == "zstd":
        raise CompressorMissing("PGVAULT_COMPRESSOR=zstd, but there is no zstd program on PATH")
    return [sys.executable, "-P", "-m", "pgvault.backup.compressor", "-d"]


def compressor_env() -> dict[str, str]:
    """What the compressor needs of the environment (and nothing else: no libpq settings)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    if "PYTHONPATH" in os.environ:  # the builtin compressor imports pgvault the way this process did
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def main(argv: list[str]) -> int:
    import fcntl

    import zstandard

    decompress = argv == ["-d"]
    if not decompress and (len(argv) != 1 or not argv[0].lstrip("-").isdigit()):
        print("usage: python -m pgvault.backup.compressor LEVEL | -d", file=sys.stderr)
        return 2
    with contextlib.suppress(OSError):  # not a pipe, or a lower limit: only fewer, larger reads are lost
        fcntl.fcntl(0, _F_SETPIPE_SZ, _BLOCK)
    with open(0, "rb", buffering=0, closefd=False) as src, open(1, "wb", buffering=0, closefd=False) as raw:
        dst = _WriteAll(raw)
        if decompress:
            return _decompress(zstandard, src, dst)
        # With a content checksum in the frame, as the zstd program writes: decompression verifies it.
        zstandard.ZstdCompressor(level=int(argv[0]), write_checksum=True).copy_stream(
            src, dst, read_size=_BLOCK, write_size=_BLOCK)  # type: ignore[arg-type]  # needs only .write
    return 0


class _WriteAll:
    """A raw file whose ``write`` writes every byte: a raw write may write only part (a pipe whose reader
    goes away mid-write, a signal), and neither copy_stream nor a plain loop would notice the rest lost."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            n = self.raw.write(view)
            if n is None:  # only a non-blocking stdout says "not now", and this one never is
                raise BlockingIOError("stdout is non-blocking")
            view = view[n:]
        return len(data)

    def flush(self) -> None:
        pass


# Input is fed to the decompressor this many bytes at a time: what one call returns is bounded by what
# these bytes can expand to (zstd reaches ~32,000x on runs of one byte: ~32 MiB), where a 1 MiB chunk of
# a table of zeros would come back as gigabytes at once. Per call the cost is ~1 us.
_FEED = 1024


def _decompress(zstandard: Any, src: BinaryIO, dst: _WriteAll) -> int:
    """Every frame of the input (a file may hold several, as ``zstd`` concatenates them), each verified
    against its content checksum; an input that is empty or ends inside a frame is an error, as with
    ``zstd -d``."""
    decompressor = zstandard.ZstdDecompressor()
    obj = decompressor.decompressobj()
    inside = False  # whether bytes of a frame that has not ended were read
    seen = False
    try:
        while block := src.read(_BLOCK):
            seen = True
            view = memoryview(block)
            while view:
                inside = True
                piece, view = view[:_FEED], view[_FEED:]
                out = obj.decompress(piece)
                if out:
                    dst.write(out)
                if obj.eof:  # a frame ended: the rest of this piece starts the next one
                    inside = False
                    rest = obj.unused_data
                    obj = decompressor.decompressobj()
                    if rest:
                        view = memoryview(bytes(rest) + bytes(view))
    except zstandard.ZstdError as exc:
        print(f"zstd: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (pg_restore) stopped, and its own exit code says why. Die of SIGPIPE as the zstd
        # program does (Python ignores it), which the runner takes for exactly that.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
        return 1
    if not seen or inside:
        print("zstd: " + ("the input is empty" if not seen else "the stream ends inside a frame (truncated)"),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
