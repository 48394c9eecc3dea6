"""``GET /CommServ``: what this pgvault is, in the shape cvpysdk reads for ``commcell.version``,
``commserv_name``, ``commserv_timezone`` and friends."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from .common import Answer, TimeZoneInfo

COMMCELL_ID = 2  # Command Center numbers its own CommCell 2; pgvault is always its own, only CommCell


def version_parts(version: str) -> tuple[int, int, int]:
    nums = [int(n) for n in re.findall(r"\d+", version)[:3]]
    nums += [0] * (3 - len(nums))
    return nums[0], nums[1], nums[2]


def timezone_label(now: dt.datetime) -> str:
    """``(UTC+02:00) CEST``: cvpysdk keeps what follows the first parenthesis."""
    offset = now.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"(UTC{sign}{hours:02d}:{mins:02d}) {now.tzname() or 'UTC'}"


def commserv(*, name: str, host: str, version: str, now: dt.datetime) -> dict[str, Any]:
    major, minor, patch = version_parts(version)
    zone = timezone_label(now)
    return {
        "commcell": {"commCellName": name, "commCellId": COMMCELL_ID},
        "hostName": host,
        "csVersionInfo": f"{major}.{minor}.{patch}",
        "currentSPVersion": minor,
        "releaseName": f"pgvault {version}",
        "csTimeZone": {"TimeZoneName": zone},
        "timeZone": zone,
        "product": "pgvault",
        "version": version,
    }


class CommCellEntity(Answer):
    commCellName: str
    commCellId: Literal[2]


class CommServ(Answer):
    """``GET /CommServ``."""

    commcell: CommCellEntity
    hostName: str
    csVersionInfo: str
    currentSPVersion: int
    releaseName: str
    csTimeZone: TimeZoneInfo
    timeZone: str
    product: Literal["pgvault"]
    version: str


class ServiceInfo(Answer):
    """``GET /``: the service answers (cvpysdk checks this before logging in)."""

    service: Literal["pgvault"]
    version: str
    api: Literal["commandcenter"]
