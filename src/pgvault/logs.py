"""Logging set-up: one line format for the service log, and a file per job under ``PGVAULT_HOME/jobs``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _JobFiles(logging.Handler):
    """Copies every ``pgvault.job.<id>`` record to ``jobs/<id>.log`` (opened per record: jobs are few and
    their logs short, and no file stays open after a job ends)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        parts = record.name.split(".")
        if len(parts) < 3 or parts[:2] != ["pgvault", "job"]:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / f"{parts[2]}.log", "a") as fh:
                fh.write(self.format(record) + "\n")
        except OSError:
            self.handleError(record)


def configure(level: str, home: Path) -> None:
    root = logging.getLogger("pgvault")
    if getattr(root, "_pgvault_configured", False):
        return
    root.setLevel(level.upper())
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(stream)
    root.addHandler(_JobFiles(home / "jobs"))
    root.propagate = False
    root._pgvault_configured = True  # type: ignore[attr-defined]
