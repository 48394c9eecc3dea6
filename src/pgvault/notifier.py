"""The notifier: a thread of the service that sends the outbox's deliveries (``services/notifications.py``)
through apprise, after the transactions that queued them have committed.

A job never waits for it: the job's end only writes rows. A delivery that fails is retried with a doubling
backoff (``PGVAULT_NOTIFY_BACKOFF_SECONDS``, at most ``PGVAULT_NOTIFY_ATTEMPTS`` attempts), then given up;
each outcome lands on its target (status, counters). Beyond ``PGVAULT_NOTIFY_BACKLOG`` deliveries waiting
for one target, the oldest are dropped and counted. Several processes sharing a catalog each run one: a
delivery is claimed by a compare-and-set on its due time before it is sent, so it is sent once (at least
once, if a process dies mid-send: its claim runs out and another sends it again).

Apprise's own log can quote what it sends to (paths, and for some services tokens): it is kept at WARNING,
and what pgvault records of an error has every part of the URL scrubbed out.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from .catalog.db import Catalog
from .catalog.types import utcnow
from .crypto import Sealer
from .domain.notifications import render, scrub
from .services import notifications
from .settings import Settings

log = logging.getLogger("pgvault.notifier")

BATCH = 50
CLAIM_SECONDS = 120  # a claimed delivery is someone's for this long (longer than any one send)
MAX_BACKOFF = dt.timedelta(hours=1)

for _noisy in ("apprise", "urllib3"):  # their DEBUG lines name URLs and paths
    logging.getLogger(_noisy).setLevel(logging.WARNING)


def send(url: str, title: str, body: str) -> str | None:
    """Send one message to one apprise URL: None when it went, else why not (scrubbed of the URL)."""
    import apprise

    sender = apprise.Apprise()
    try:
        if not sender.add(url):
            return "apprise cannot send to this URL"
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            ok = sender.notify(title=title, body=body)
        if ok:
            return None
        words = " ".join(line.strip() for line in captured.getvalue().splitlines() if line.strip())
        return scrub(words or "the notification was not accepted", url)
    except Exception as exc:  # a plugin's bug must not stop the notifier
        return scrub(f"{type(exc).__name__}: {exc}", url)


class Notifier:
    def __init__(self, settings: Settings, catalog: Catalog, sealer: Sealer,
                 clock: Callable[[], dt.datetime] = utcnow,
                 sender: Callable[[str, str, str], str | None] = send) -> None:
        self.settings = settings
        self.catalog = catalog
        self.sealer = sealer
        self.clock = clock
        self.sender = sender
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def public_url(self) -> str:
        return self.settings.effective_public_url

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="pgvault-notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("notifier pass failed")
                busy = False
            if not busy:
                self._wake.wait(self.settings.notify_poll_seconds)
                self._wake.clear()

    def run_once(self) -> bool:
        """One pass: drop what is over the backlog, then send what is due. True if a full batch was due
        (there may be more)."""
        with self.catalog.transaction(write=True) as s:
            dropped = notifications.prune(s, self.settings.notify_backlog)
        for target_id, n in dropped.items():
            log.warning("notification target %s: %d oldest notifications dropped (backlog over %d)", target_id,
                        n, self.settings.notify_backlog)
        now = self.clock()
        with self.catalog.transaction(write=False) as s:
            due = notifications.due_deliveries(s, now, BATCH)
        for delivery_id, seen in due:
            if self._stop.is_set():
                break
            self._deliver(delivery_id, seen)
        return len(due) == BATCH

    def _deliver(self, delivery_id: int, seen: dt.datetime) -> None:
        now = self.clock()
        with self.catalog.transaction(write=True) as s:
            row = notifications.claim(s, delivery_id, seen, now + dt.timedelta(seconds=CLAIM_SECONDS))
            if row is None:
                return
            target = notifications.get(s, row.target_id)
            target_id, target_name, attempts = target.id, target.name, row.attempts
            url = notifications.url_of(target, self.sealer)
            title, body = render(row.event, row.payload, self.public_url)
            event = row.event
        error = self._send(url, title, body)
        now = self.clock()
        with self.catalog.transaction(write=True) as s:
            if error is None:
                notifications.record_sent(s, delivery_id, target_id, now)
                log.info("notification %s (%s) sent to target %r", delivery_id, event, target_name)
                return
            retry_at = None
            if attempts < self.settings.notify_attempts:
                backoff = dt.timedelta(seconds=self.settings.notify_backoff_seconds * 2 ** (attempts - 1))
                retry_at = now + min(backoff, MAX_BACKOFF)
            notifications.record_failed(s, delivery_id, target_id, error, now, retry_at=retry_at)
        if retry_at is None:
            log.warning("notification %s (%s) to target %r given up after %d attempts: %s", delivery_id, event,
                        target_name, attempts, error)
        else:
            log.warning("notification %s (%s) to target %r failed (attempt %d, next at %s): %s", delivery_id,
                        event, target_name, attempts, retry_at.isoformat(timespec="seconds"), error)

    def _send(self, url: str, title: str, body: str) -> str | None:
        """The sender's answer, with every part of the URL scrubbed out of an error before it is logged or
        recorded, whoever wrote the error."""
        try:
            error = self.sender(url, title, body)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        return None if error is None else scrub(error, url)

    def test(self, target_id: int) -> str | None:
        """Send a test message to a target now (the API's ``action/test``); its outcome lands on the
        target's status. None when it went, else why not."""
        with self.catalog.transaction(write=False) as s:
            target = notifications.get(s, target_id)
            url = notifications.url_of(target, self.sealer)
            title, body = render("test", {"target": target.name}, self.public_url)
        error = self._send(url, title, body)
        with self.catalog.transaction(write=True) as s:
            notifications.record_test(s, target_id, error, self.clock())
        return error
