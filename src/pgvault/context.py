"""Everything a running pgvault holds: settings, catalog, the secret sealer, the worker pool and the scheduler."""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass

from .catalog.db import Catalog
from .crypto import Keyring, Sealer
from .logs import configure as configure_logging
from .pgtools.runner import use_runtime_dir
from .scheduler import Scheduler
from .services.auth import TokenCache
from .services.bootstrap import bootstrap
from .settings import Settings
from .worker import WorkerPool

log = logging.getLogger("pgvault")


@dataclass
class Context:
    settings: Settings
    catalog: Catalog
    sealer: Sealer
    pool: WorkerPool
    scheduler: Scheduler
    tokens: TokenCache

    @classmethod
    def open(cls, settings: Settings) -> Context:
        home = settings.home_dir
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        configure_logging(settings.log_level, home)
        use_runtime_dir(home / "run")
        master = settings.master_key.get_secret_value() if settings.master_key else None
        sealer = Keyring.open_home(home, master, create=True)  # follows `pgvault keys rotate` while running
        catalog = Catalog(settings.effective_catalog_url)
        catalog.migrate()
        admin = settings.admin_password.get_secret_value() if settings.admin_password else None
        with catalog.begin() as s:
            bootstrap(s, home=home, backups_dir=settings.backups_dir, admin_password=admin)
        log.info("catalog %s ready (%s)", catalog.dialect, _safe_url(catalog.url))
        pool = WorkerPool(settings, catalog, sealer)
        scheduler = Scheduler(catalog, settings.scheduler_seconds, pool.wake,
                              aging_every=dt.timedelta(hours=settings.aging_hours))
        return cls(settings, catalog, sealer, pool, scheduler, TokenCache(settings.token_cache_seconds))

    def close(self) -> None:
        self.scheduler.stop()
        self.pool.stop()
        self.catalog.dispose()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
