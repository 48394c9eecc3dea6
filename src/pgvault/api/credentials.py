"""Credentials (Command Center's credential manager): ``//CommCell/Credentials``, ``V4/Credential``,
``V5/credential/{id}``. cvpysdk's ``add_postgresql_instance`` looks a credential up here and creates it
when missing; the instance is then registered with its login."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from ..catalog.models import User
from ..domain.access import Capability, requires
from ..schemas.credentials import (
    CreateCredentialRequest,
    CreatedCredential,
    CredentialManagerList,
    CredentialRecordList,
    CredentialV5,
    DeleteCredentialRequest,
    DeleteCredentialsResponse,
    credential_record,
    credential_v4,
    credential_v5,
)
from ..services import credentials
from . import BASE
from .deps import ContextDep, UserDep
from .openapi import answers

router = APIRouter(prefix=BASE, tags=["credentials"])

VAULT_RECORD_TYPE = 1000  # credential vaults (CyberArk and the like): pgvault has none


@router.get("/CommCell/Credentials", summary="List credentials (never their passwords)",
             responses=answers(CredentialRecordList, "the credentials (never their passwords)"))
@requires(Capability.VIEW)
def list_credentials(ctx: ContextDep, _: UserDep) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return {"credentialRecordInfo": [credential_record(c) for c in credentials.list_all(s)]}


@router.get("/CommCell/Credentials/{credential_id}", summary="One credential",
             responses=answers(CredentialRecordList, "the credential (a list of one)"))
@requires(Capability.VIEW)
def get_credential(ctx: ContextDep, _: UserDep, credential_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        return {"credentialRecordInfo": [credential_record(credentials.get(s, credential_id))]}


@router.post("/CommCell/Credentials/action/delete", summary="Delete credentials by name",
             responses=answers(DeleteCredentialsResponse, "deleted"))
@requires(Capability.MANAGE_INSTANCES)
def delete_credentials(ctx: ContextDep, _: UserDep, body: Annotated[DeleteCredentialRequest, Body()]) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        for ref in body.credentialRecordInfo:
            credentials.delete(s, ref.credentialRecord.credentialName)
    return {"error": {"errorCode": 0, "errorMessage": ""}}


@router.get("/V4/Credential", summary="List credentials; recordType=1000 (vaults) lists none",
             responses=answers(CredentialManagerList, "the credentials (never their passwords)"))
@requires(Capability.VIEW)
def list_credentials_v4(
    ctx: ContextDep, _: UserDep, record_type: Annotated[int | None, Query(alias="recordType")] = None,
) -> dict:
    if record_type == VAULT_RECORD_TYPE:
        return {"credentialManager": []}
    with ctx.catalog.transaction(write=False) as s:
        return {"credentialManager": [credential_v4(c) for c in credentials.list_all(s)]}


@router.post("/V4/Credential", summary="Create a PostgreSQL database credential (password base64)",
             responses=answers(CreatedCredential, "created", conflict=True))
@requires(Capability.MANAGE_INSTANCES)
def create_credential(ctx: ContextDep, user: UserDep, body: Annotated[CreateCredentialRequest, Body()]) -> dict:
    with ctx.catalog.transaction(write=True) as s:
        cred = credentials.create(
            s, ctx.sealer, name=body.name, username=body.username, password=body.plain_password,
            description=body.description or "", account_type=body.accountType,
            database_type=body.databaseCredentialType, created_by=user.id,
        )
        return {"id": cred.id, "name": cred.name}


@router.get("/V5/credential/{credential_id}", summary="One credential, V5 shape",
             responses=answers(CredentialV5, "the credential"))
@requires(Capability.VIEW)
def get_credential_v5(ctx: ContextDep, _: UserDep, credential_id: int) -> dict:
    with ctx.catalog.transaction(write=False) as s:
        cred = credentials.get(s, credential_id)
        owner = s.get(User, cred.created_by) if cred.created_by is not None else None
        return credential_v5(cred, owner.username if owner else None)
