"""The compressor between pg_dump and pgvault, and the runner's output filter it rides on."""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
import zstandard

from pgvault.backup.compressor import compressor_argv, compressor_env
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
