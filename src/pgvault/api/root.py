"""GET /commandcenter/api/: the service answers (cvpysdk checks this before logging in)."""

from __future__ import annotations

from fastapi import APIRouter

from .. import __version__
from ..domain.access import public
from ..schemas.commserv import ServiceInfo
from . import BASE
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["service"])


@router.get("/", summary="Service check",
             responses=answers(ServiceInfo, "the service answers"))
@public
async def root() -> dict:
    return {"service": "pgvault", "version": __version__, "api": "commandcenter"}
