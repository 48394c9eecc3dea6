"""``GET /CommServ``: the service's own identity (cvpysdk reads it lazily for ``commcell.version``,
``commserv_name``, ``commserv_timezone``, and in ``repr(plan)``)."""

from __future__ import annotations

import datetime as dt
import socket

from fastapi import APIRouter

from .. import __version__
from ..domain.access import Capability, requires
from ..schemas.commserv import CommServ, commserv
from . import BASE
from .deps import UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["service"])


@router.get("/CommServ", summary="This pgvault: name, host, version, time zone",
             responses=answers(CommServ, "this pgvault"))
@requires(Capability.VIEW)
def get_commserv(_: UserDep) -> dict:
    host = socket.getfqdn()
    return commserv(name=socket.gethostname(), host=host, version=__version__,
                    now=dt.datetime.now().astimezone())
