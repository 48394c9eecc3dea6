"""The compressor between pg_dump and pgvault, and the runner's output filter it rides on."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading

import pytest
import zstandard

from pgvault.backup.compressor import compressor_argv, compressor_env, decompressor_argv
from pgvault.errors import ToolError
from pgvault.pgtools.runner import run_program

log = logging.getLogger("test")
PATH = {"PATH": "/usr/bin:/bin"}


def test_builtin_compressor_ignores_modules_in_its_working_folder(tmp_path):
    """``python -m`` would put the working folder first on sys.path; a planted zstandard.py must not run."""
    (tmp_path / "zstandard.py").write_text("import sys; sys.exit(0)\n")
    data = os.urandom(1 << 16) + b"pgvault " * 200_000
    out = subprocess.run(compressor_argv(3, "builtin"), input=data, env=compressor_env(), cwd=tmp_path,
                         capture_output=True, check=True).stdout
    assert zstandard.ZstdDecompressor().decompressobj().decompress(out) == data
    assert zstandard.get_frame_parameters(out).has_checksum  # as the zstd program writes them


def test_output_filter_failure_and_success(tmp_path):
    data = tmp_path / "in"
    data.write_bytes(b"abc\n" * 1000)
    got: list[bytes] = []
    run_program(["cat", str(data)], PATH, log=log, stdout_sink=got.append, stdout_through=(["tr", "a-z", "A-Z"], PATH))
    assert b"".join(got) == b"ABC\n" * 1000
    with pytest.raises(ToolError, match=r"sh \(the output filter of cat\) exited with code 3: broken"):
        run_program(["cat", str(data)], PATH, log=log, stdout_sink=got.append,
                    stdout_through=(["sh", "-c", "echo broken >&2; exit 3"], PATH))
    with pytest.raises(ToolError, match="could not start no-such-filter, the output filter of cat"):
        run_program(["cat", str(data)], PATH, log=log, stdout_sink=got.append,
                    stdout_through=(["/nonexistent/no-such-filter"], PATH))


def test_input_filter_success_failure_and_a_reader_that_stops(tmp_path):
    """``stdin_through`` puts a filter before the program (``zstd -d | pg_restore``)."""
    def source(n: int = 1000):
        for _ in range(n):
            yield b"abc\n" * 256

    got: list[bytes] = []
    run_program(["cat"], PATH, log=log, stdout_sink=got.append, stdin_source=source(),
                stdin_through=(["tr", "a-z", "A-Z"], PATH))
    assert b"".join(got) == b"ABC\n" * 256_000
    with pytest.raises(ToolError, match=r"sh \(the input filter of cat\) exited with code 3: broken"):
        run_program(["cat"], PATH, log=log, stdout_sink=got.append, stdin_source=source(),
                    stdin_through=(["sh", "-c", "cat >/dev/null; echo broken >&2; exit 3"], PATH))
    with pytest.raises(ToolError, match="could not start no-such-filter, the input filter of cat"):
        run_program(["cat"], PATH, log=log, stdin_source=source(),
                    stdin_through=(["/nonexistent/no-such-filter"], PATH))
    # The program stops reading: the filter dies of a broken pipe, and the program's own result stands.
    result = run_program(["head", "-c", "10"], PATH, log=log, stdout_sink=got.append, stdin_source=source(100_000),
                         stdin_through=(["cat"], PATH))
    assert result.returncode == 0
    with pytest.raises(ToolError, match="sh exited with code 4"):
        run_program(["sh", "-c", "head -c 10 >/dev/null; exit 4"], PATH, log=log, stdin_source=source(100_000),
                    stdin_through=(["cat"], PATH))


@pytest.mark.parametrize("choice", ["builtin", "zstd"])
def test_each_decompressor_restores_every_frame_and_refuses_damage(choice):
    if choice == "zstd" and shutil.which("zstd") is None:
        pytest.skip("no zstd program on PATH (scripts/test-deps.sh installs it when root)")
    data = os.urandom(1 << 20) + b"pgvault " * 300_000
    packed = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(data)
    env = compressor_env()
    ok = subprocess.run(decompressor_argv(choice), input=packed + packed, env=env, capture_output=True)
    assert ok.returncode == 0 and ok.stdout == data + data  # two frames, as concatenated files are
    cut = subprocess.run(decompressor_argv(choice), input=packed[:-1000], env=env, capture_output=True)
    assert cut.returncode != 0 and cut.stderr
    damaged = bytearray(packed)
    damaged[len(damaged) // 2] ^= 0xFF
    bad = subprocess.run(decompressor_argv(choice), input=bytes(damaged), env=env, capture_output=True)
    assert bad.returncode != 0 and bad.stderr
    empty = subprocess.run(decompressor_argv(choice), input=b"", env=env, capture_output=True)
    assert empty.returncode != 0


def test_the_builtin_decompressors_memory_does_not_follow_the_expansion(tmp_path):
    """256 MiB of zeros compress to ~8 KB: decompressed in one call they would take 256 MiB at once. The
    child's peak RSS is compared with its peak on a small input (both include what the fork copied)."""
    compress = zstandard.ZstdCompressor(level=1, write_checksum=True).compress

    def peak_kib(data: bytes) -> int:
        packed = tmp_path / "in.zst"
        packed.write_bytes(compress(data))
        with open(packed, "rb") as src, open(os.devnull, "wb") as dst:
            proc = subprocess.Popen(decompressor_argv("builtin"), stdin=src, stdout=dst, env=compressor_env())
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0
        return int(usage.ru_maxrss)  # KiB on Linux

    small, zeros = peak_kib(b"x" * 1000), peak_kib(bytes(256 << 20))
    assert zeros - small < 64 * 1024, f"{(zeros - small) // 1024} MiB more for 256 MiB of zeros"


def test_the_builtin_decompressor_dies_of_a_broken_pipe_as_zstd_does():
    """Its reader stopped: exit by SIGPIPE, which the runner reads as "the program stopped reading"."""
    import signal

    packed = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(os.urandom(1 << 16) * 200)
    proc = subprocess.Popen(decompressor_argv("builtin"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=compressor_env())
    assert proc.stdout is not None and proc.stdin is not None
    stdin = proc.stdin

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError):
            stdin.write(packed)
            stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    try:
        assert proc.wait(30) == -signal.SIGPIPE
    finally:
        proc.kill()
        feeder.join(10)
