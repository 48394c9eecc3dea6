"""The code's shape, checked: the layers point one way (api -> services -> domain/catalog; the worker and
the scheduler run what services prepare), the lifecycle has no SQLAlchemy, and no GET opens a write
transaction (docs/architecture.md, "The one rule for catalog access")."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "pgvault"

# A package may not import these (pgvault.<name> or a module under it).
FORBIDDEN = {
    "domain": {"api", "services", "catalog", "worker", "scheduler", "app", "context", "schemas", "sqlalchemy"},
    "catalog": {"api", "services", "worker", "scheduler", "app", "context", "schemas"},
    "schemas": {"api", "services", "worker", "scheduler", "app", "context"},
    "services": {"api", "worker", "scheduler", "app", "context"},
    "backup": {"api", "services", "catalog", "worker", "scheduler", "app", "context"},
    "restore": {"api", "services", "catalog", "worker", "scheduler", "app", "context"},
    "storage": {"api", "services", "catalog", "worker", "scheduler", "app", "context"},
    "pgtools": {"api", "services", "catalog", "worker", "scheduler", "app", "context"},
    # the console reads through services and acts through the API's operations: no SQL of its own
    "console": {"worker", "scheduler", "app", "sqlalchemy"},
}
for _below in ("domain", "catalog", "schemas", "services", "backup", "restore", "storage", "pgtools", "api"):
    FORBIDDEN.setdefault(_below, set()).add("console")  # nothing below the console knows it


def imported(path: Path) -> set[str]:
    """The first component under pgvault of every module ``path`` imports (``sqlalchemy`` for that)."""
    package = path.relative_to(SRC).parts[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = [*base, *(node.module.split(".") if node.module else [])]
                if not node.module:  # from .. import services
                    out.update(a.name for a in node.names if not module)
                    module = module or [a.name for a in node.names][:1]
                names = ["pgvault." + ".".join(module)] if module else []
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "pgvault" and len(parts) > 1:
                out.add(parts[1])
            elif parts[0] == "sqlalchemy":
                out.add("sqlalchemy")
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_point_one_way(package):
    wrong = {}
    for path in sorted((SRC / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        bad = imported(path) & FORBIDDEN[package]
        if bad:
            wrong[str(path.relative_to(SRC))] = sorted(bad)
    assert not wrong, wrong


def test_the_checker_sees_relative_imports():
    assert "services" in imported(SRC / "api" / "instances.py")
    assert "catalog" in imported(SRC / "services" / "jobs.py")
    assert "sqlalchemy" in imported(SRC / "catalog" / "db.py")


def test_no_get_route_opens_a_write_transaction():
    from fastapi.routing import APIRoute

    from pgvault.app import create_app

    writes = []
    for route in create_app().routes:
        if isinstance(route, APIRoute) and route.methods & {"GET"} and \
                "write=True" in inspect.getsource(route.endpoint):
            writes.append(route.path)
    assert not writes, writes
