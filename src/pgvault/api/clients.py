"""Cloud accounts, which Command Center calls clients: GET/POST /Client, GET /Client/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..catalog.models import CloudAccount
from ..domain.access import Capability, requires
from ..errors import Conflict, NotFound, shown
from ..schemas.clients import (
    ClientDetail,
    ClientListAnswer,
    CreateClientResponse,
    VSAClientAndClientGroupList,
    client_entity,
    client_properties,
)
from ..schemas.common import ENTITY_CLIENT, Name, Text, WireModel
from . import BASE
from .deps import ContextDep, UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["clients (cloud accounts)"])


class CreateClientRequest(WireModel):
    clientName: Annotated[Name, Field(min_length=1, max_length=255, pattern=r"^\S(.*\S)?$")]
    description: Text = ""


@router.get("/Client", summary="List cloud accounts (?PseudoClientType=: pseudo-clients, of which pgvault has none)",
             responses=answers(ClientListAnswer, "the cloud accounts (or, with PseudoClientType, no pseudo-clients)"))
@requires(Capability.VIEW)
def list_clients(
    ctx: ContextDep, _: UserDep,
    pseudo_client_type: Annotated[str | None, Query(alias="PseudoClientType")] = None,
) -> dict:
    if pseudo_client_type is not None:  # virtualization (VSA) pseudo-clients: not something pgvault has
        return {"VSPseudoClientsList": []}
    with ctx.catalog.transaction(write=False) as s:
        accounts = s.scalars(select(CloudAccount).order_by(CloudAccount.id)).all()
        return {"clientProperties": [{"client": {"clientEntity": client_entity(a)}} for a in accounts]}


@router.get("/Client/{client_id}", summary="One cloud account",
             responses=answers(ClientDetail, "the cloud account (a list of one)"))
@requires(Capability.VIEW)
def get_client(ctx: ContextDep, _: UserDep, client_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        account = s.get(CloudAccount, client_id)
        if account is None:
            raise NotFound(f"client {client_id} does not exist")
        return {"clientProperties": [client_properties(account)]}


@router.post("/Client", summary="Create a cloud account: {\"clientName\": ..., \"description\": ...}",
             responses=answers(CreateClientResponse, "created", conflict=True))
@requires(Capability.MANAGE_INSTANCES)
def create_client(ctx: ContextDep, _: UserDep, body: Annotated[CreateClientRequest, Body()]) -> dict:
    try:
        with ctx.catalog.transaction(write=True) as s:
            if s.scalar(select(CloudAccount.id).where(CloudAccount.name_key == body.clientName.lower())):
                raise Conflict(f"a cloud account named {shown(body.clientName)} already exists")
            account = CloudAccount(name=body.clientName, name_key=body.clientName.lower(),
                                   description=body.description)
            s.add(account)
            s.flush()
            entity = {**client_entity(account), "_type_": ENTITY_CLIENT}
    except IntegrityError:
        raise Conflict(f"a cloud account named {shown(body.clientName)} already exists") from None
    return {"response": {"errorCode": 0, "entity": entity}}


@router.get("/VSAClientAndClientGroupList", summary="Virtualization access nodes: pgvault has none",
             responses=answers(VSAClientAndClientGroupList, "no access nodes"))
@requires(Capability.VIEW)
def vsa_access_nodes(_: UserDep) -> dict:
    return {"clients": [], "clientGroups": []}
