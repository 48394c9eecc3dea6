"""Who may do what: the roles, their capabilities, and the one check (no SQLAlchemy, no FastAPI).

Every API route declares the capability it needs (``api/deps.py``: ``@requires(Capability.X)`` or
``@public``; ``create_app`` refuses a route without one and tests/test_access.py walks the route table);
``api.deps.current_user`` checks it before the route runs, so a refusal (403, ``Forbidden``) happens before
anything is read or changed. The console calls ``require`` with the same declaration
(``capability_of(route_function)``), so the two faces of pgvault never disagree.

The roles are nested: each holds every capability of the roles below it, so "a role no stronger than
yours" (an API key's) is simply a rank no higher. The table is documented in docs/api.md ("Roles and
capabilities"); tests/test_access.py checks the documentation against ``CAPABILITIES``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..errors import Forbidden


class Role(enum.StrEnum):
    VIEWER = "Viewer"
    RESTORE_OPERATOR = "Restore operator"
    OPERATOR = "Operator"
    ADMINISTRATOR = "Administrator"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    @property
    def role_id(self) -> int:
        """Its id in ``GET /Role`` (Command Center's roles have numbers): 1 for the strongest."""
        return len(_ORDER) - self.rank

    @classmethod
    def by_id(cls, role_id: int) -> Role | None:
        return next((r for r in _ORDER if r.role_id == role_id), None)

    @classmethod
    def parse(cls, text: str) -> Role:
        """A role by its name, without regard to case, spaces, ``-`` or ``_`` ("restore_operator" too)."""
        key = "".join(ch for ch in text.lower() if ch.isalnum())
        for role in cls:
            if "".join(ch for ch in role.value.lower() if ch.isalnum()) == key:
                return role
        raise ValueError(f"unknown role {text[:100]!r}: one of {', '.join(r.value for r in cls)}")


_ORDER = (Role.VIEWER, Role.RESTORE_OPERATOR, Role.OPERATOR, Role.ADMINISTRATOR)


class Capability(enum.StrEnum):
    OWN_SESSION = "own_session"  # who am I, log out, change my password, my sessions
    VIEW = "view"  # read the fleet: instances, jobs, plans, restore points, accounts, credentials' names
    BROWSE = "browse"  # list the tables inside a restore point
    RESTORE = "restore"
    BACKUP = "backup"  # on-demand backups, Data Aging
    VERIFY = "verify"  # verification and restore drills
    KILL_JOBS = "kill_jobs"
    MANAGE_INSTANCES = "manage_instances"  # register, update, delete instances; cloud accounts; credentials
    EDIT_PLANS = "edit_plans"  # create and change plans
    DELETE_PLANS = "delete_plans"
    MANAGE_NOTIFICATIONS = "manage_notifications"  # notification targets (their URLs carry secrets)
    MANAGE_USERS = "manage_users"  # users, their roles, password resets, everyone's sessions
    MANAGE_API_KEYS = "manage_api_keys"
    READ_AUDIT = "read_audit"  # the audit trail: who did what, from where


_VIEWER = frozenset({Capability.OWN_SESSION, Capability.VIEW})
_RESTORE_OPERATOR = _VIEWER | {Capability.BROWSE, Capability.RESTORE}
_OPERATOR = _RESTORE_OPERATOR | {Capability.BACKUP, Capability.VERIFY, Capability.KILL_JOBS,
                                 Capability.MANAGE_INSTANCES, Capability.EDIT_PLANS}
CAPABILITIES: dict[Role, frozenset[Capability]] = {
    Role.VIEWER: _VIEWER,
    Role.RESTORE_OPERATOR: _RESTORE_OPERATOR,
    Role.OPERATOR: _OPERATOR,
    Role.ADMINISTRATOR: frozenset(Capability),
}


class HasRole(Protocol):
    @property
    def role(self) -> Role: ...

    @property
    def username(self) -> str: ...


def allows(role: Role, capability: Capability) -> bool:
    return capability in CAPABILITIES[role]


def require(user: HasRole, capability: Capability) -> None:
    """Raise ``Forbidden`` unless ``user``'s role holds ``capability``: the one check, for the API (through
    ``api.deps.current_user``) and the console alike. Changes nothing, reads nothing."""
    if capability not in CAPABILITIES[user.role]:
        raise Forbidden(f"{user.username} ({user.role.value}) may not do this: it needs the "
                        f"{capability.value!r} capability")


def weaker(a: Role, b: Role) -> Role:
    """The weaker of two roles (an API key acts with its own role, or its creator's if that is weaker now)."""
    return a if a.rank <= b.rank else b


# -- declarations on route functions ------------------------------------------------------------------

PUBLIC = "public"  # a route that needs no token (Login; /metrics checks its own)
_ATTR = "__pgvault_capability__"
F = TypeVar("F", bound=Callable[..., Any])


def requires(capability: Capability) -> Callable[[F], F]:
    """Declare the capability a route needs (put it under the ``@router.<method>`` line)."""
    def mark(fn: F) -> F:
        setattr(fn, _ATTR, capability)
        return fn
    return mark


def public(fn: F) -> F:
    """Declare a route that needs no token."""
    setattr(fn, _ATTR, PUBLIC)
    return fn


def capability_of(fn: Callable[..., Any]) -> Capability | str | None:
    """What a route function declared: a Capability, ``PUBLIC``, or None (nothing: a bug)."""
    return getattr(fn, _ATTR, None)  # type: ignore[no-any-return]
