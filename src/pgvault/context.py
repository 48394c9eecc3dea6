"""Everything a running pgvault holds: settings, catalog, the secret sealer, the worker pool and the scheduler."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .catalog.db import Catalog
from .crypto import Keyring, Sealer
from .logs import configure as configure_logging
from .node import Node
from .notifier import Notifier
from .pgtools.runner import prepare_runtime_dir
from .scheduler import Scheduler
from .services import users
from .services.audit import AuditWriter
from .services.auth import TokenCache
from .services.bootstrap import bootstrap
from .services.logins import Logins, ThrottleRules
from .settings import Settings
from .worker import WorkerPool

log = logging.getLogger("pgvault")
# Threads for the API's short reads of a catalog across the network (PostgreSQL): each mostly waits on a
# round trip. Measured with 32 clients on 2 cores (docs/performance.md): the 40 threads of the shared
# threadpool took 3 ms of CPU per GET /Job taking turns at the GIL; 4 took 1.7 ms and answered 1.5x as
# many; 1 serialised the round trips; 8 gained little over 4 and doubled the p99.
READ_THREADS = 4
# An API key's "last used" is written at most this often per key and process (a write per request would
# take SQLite's write lock on every GET made with a key).
KEY_TOUCH_SECONDS = 60.0


@dataclass
class Context:
    settings: Settings
    catalog: Catalog
    sealer: Sealer
    pool: WorkerPool
    scheduler: Scheduler
    tokens: TokenCache
    node: Node
    notifier: Notifier
    logins: Logins  # POST /Login's throttle and password-check thread (services/logins.py)
    audit: AuditWriter  # appends the audit trail's records (api/audit.py)
    # The API's short reads of a catalog across the network (see api.deps.run_read and READ_THREADS).
    reads: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=READ_THREADS, thread_name_prefix="catalog-read"))
    # Records an API key's use after the request was let in, off the request's path (key_used).
    touches: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="key-touch"))
    _touched: dict[int, float] = field(default_factory=dict)
    _touched_lock: threading.Lock = field(default_factory=threading.Lock)

    def key_used(self, key_id: int) -> None:
        """An API key was let in: its ``last_used_at`` is written (in the background, at most every
        KEY_TOUCH_SECONDS per key and process)."""
        now = time.monotonic()
        with self._touched_lock:
            if now - self._touched.get(key_id, -KEY_TOUCH_SECONDS) < KEY_TOUCH_SECONDS:
                return
            self._touched[key_id] = now
        self.touches.submit(self._touch, key_id)

    def _touch(self, key_id: int) -> None:
        try:
            with self.catalog.transaction(write=True) as s:
                users.touch_key(s, key_id)
        except Exception:
            log.warning("could not record the use of API key %s", key_id, exc_info=True)

    @classmethod
    def open(cls, settings: Settings) -> Context:
        home = settings.home_dir
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        configure_logging(settings.log_level, home)
        master = settings.master_key.get_secret_value() if settings.master_key else None
        sealer = Keyring.open_home(home, master, create=True)  # follows `pgvault keys rotate` while running
        catalog = Catalog(settings.effective_catalog_url)
        catalog.migrate()
        admin = settings.admin_password.get_secret_value() if settings.admin_password else None
        with catalog.transaction(write=True) as s:
            bootstrap(s, home=home, backups_dir=settings.backups_dir, admin_password=admin)
        log.info("catalog %s ready (%s)", catalog.dialect, _safe_url(catalog.url))
        node = Node.open(home, catalog, settings.node_name)
        log.info("node %s (incarnation %s)", node.name, node.incarnation)
        # Password files and downloads a killed process left: gone now, before any job starts, when no
        # other live process uses this home (node.py, "home lock").
        prepare_runtime_dir(settings.runtime_dir, sweep=node.owns_home)
        pool = WorkerPool(settings, catalog, sealer, node)
        notifier = Notifier(settings, catalog, sealer)
        pool.notify = notifier.wake
        scheduler = Scheduler(catalog, settings.scheduler_seconds, pool.wake,
                              aging_every=dt.timedelta(hours=settings.aging_hours),
                              rpo_grace=dt.timedelta(seconds=settings.rpo_grace_seconds), notify=notifier.wake,
                              audit_retention=dt.timedelta(days=settings.audit_retention_days))
        n = settings.login_lockout_failures
        logins = Logins(ThrottleRules(free=max(1, n // 2), lockout_after=n, user_free=2 * n,
                                      lockout_seconds=settings.login_lockout_seconds))
        return cls(settings, catalog, sealer, pool, scheduler, TokenCache(settings.token_cache_seconds), node,
                   notifier, logins, AuditWriter(catalog))

    def close(self) -> None:
        self.scheduler.stop()
        self.pool.stop()
        self.notifier.stop()
        self.reads.shutdown(wait=True)
        self.touches.shutdown(wait=True)  # (uvicorn closes after the requests in flight have been answered)
        self.logins.close()
        self.audit.close()
        self.node.close()
        self.catalog.dispose()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
