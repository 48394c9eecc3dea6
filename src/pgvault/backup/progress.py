"""Live progress of the items a job is streaming (the databases being dumped, the archives being read by a
restore), written to the catalog by a thread of its own about once a second.

The streams themselves only count (``_HashingWriter.bytes``, a restore's bytes read): nothing in the path
of a chunk waits for the catalog, however busy it is. Every ``interval`` the thread reads the counters of
the items in flight and, when any moved, makes one report for all of them (``Reporter.progress``: one
short transaction), so the catalog sees at most one write a second per job, whatever the number of
databases or chunks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

INTERVAL = 1.0  # seconds between reports


class ProgressReporter(Protocol):
    def progress(self, items: dict[int, int], phase: str, percent: int | None) -> None: ...


class LiveProgress:
    """``with LiveProgress(...) as live:`` around the streaming part of a run; ``with live.track(item,
    counter):`` around each item's stream. ``percent`` (called on the thread) gives the job's percent from
    the counters it is handed, or None to leave it."""

    def __init__(self, reporter: ProgressReporter, phase: str, log: logging.Logger, *,
                 percent: Callable[[dict[int, int]], int | None] | None = None,
                 interval: float = INTERVAL, name: str = "progress") -> None:
        self.reporter = reporter
        self.phase = phase
        self.log = log
        self.percent = percent
        self.interval = interval
        self._lock = threading.Lock()
        self._counters: dict[int, Callable[[], int]] = {}
        self._reported: dict[int, int] = {}
        self._last_percent: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=name)

    def __enter__(self) -> LiveProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @contextlib.contextmanager
    def track(self, item_id: int, counter: Callable[[], int]) -> Iterator[None]:
        """The item's bytes so far are ``counter()`` while the block runs; its end is reported by the engine
        (``item_done``...), and a report that lands after it changes nothing (``services.jobs``)."""
        with self._lock:
            self._counters[item_id] = counter
        try:
            yield
        finally:
            with self._lock:
                self._counters.pop(item_id, None)
                self._reported.pop(item_id, None)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()

    def report(self) -> None:
        with self._lock:
            counters = dict(self._counters)
        values: dict[int, int] = {}
        for item_id, counter in counters.items():
            with contextlib.suppress(Exception):  # a counter reads a child's /proc file that may be gone
                values[item_id] = counter()
        moved = {i: n for i, n in values.items() if self._reported.get(i) != n}
        percent = None
        if self.percent is not None:
            try:
                percent = self.percent(values)
            except Exception:  # progress is a courtesy: it never fails the job
                self.log.debug("progress estimate failed", exc_info=True)
        if not moved and (percent is None or percent == self._last_percent):
            return
        try:
            self.reporter.progress(moved, self.phase, percent)
        except Exception:  # a busy or unreachable catalog: the next report carries the newer counts
            self.log.debug("progress report failed", exc_info=True)
            return
        with self._lock:
            for item_id, n in moved.items():
                if item_id in self._counters:
                    self._reported[item_id] = n
        if percent is not None:
            self._last_percent = percent
