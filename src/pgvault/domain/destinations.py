"""What may be shown of a backup destination (a plan's, or a restore point's copy): its configuration,
never its secret."""

from __future__ import annotations

from typing import Any

SECRET_FIELDS = frozenset({"accessKeyId", "secretAccessKey"})


def describe(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """A destination or copy for API output: its kind and configuration, without its secret."""
    return {"kind": kind, **{k: v for k, v in config.items() if k not in SECRET_FIELDS}}
