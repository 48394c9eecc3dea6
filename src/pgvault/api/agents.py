"""``GET /Agent?clientId=``: a cloud account's agents; pgvault protects PostgreSQL only, so each cloud
account has exactly one, ``PostgreSQL`` (applicationId 125)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..catalog.models import CloudAccount
from ..domain.access import Capability, requires
from ..errors import NotFound
from ..schemas.agents import AgentList, agent_properties
from ..schemas.common import POSTGRESQL_APP_ID
from . import BASE
from .deps import ContextDep, UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["clients (cloud accounts)"])


@router.get("/Agent", summary="The agents of a cloud account (PostgreSQL, applicationId 125)",
             responses=answers(AgentList, "the cloud account's agent: PostgreSQL"))
@requires(Capability.VIEW)
def list_agents(
    ctx: ContextDep, _: UserDep,
    client_id: Annotated[int, Query(alias="clientId")],
    application_id: Annotated[int | None, Query(alias="applicationId")] = None,
) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        account = s.get(CloudAccount, client_id)
        if account is None:
            raise NotFound(f"client {client_id} does not exist")
        if application_id is not None and application_id != POSTGRESQL_APP_ID:
            raise NotFound(f"client {account.name!r} has no agent with applicationId {application_id}: "
                           f"pgvault protects PostgreSQL ({POSTGRESQL_APP_ID}) only")
        return {"agentProperties": [agent_properties(account)]}
