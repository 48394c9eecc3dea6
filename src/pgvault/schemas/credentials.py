"""Credentials in Command Center's shapes: ``//CommCell/Credentials`` records, ``V4/Credential`` and
``V5/credential/{id}``. Never the password, in any shape."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictStr, field_validator

from ..catalog.models import Credential
from .common import Answer, GenericResponse, Name, Text, WireModel, decode_login_password, epoch


class CreateCredentialRequest(WireModel):
    """``POST V4/Credential`` as cvpysdk's ``add_postgres_database_creds`` sends it."""

    accountType: StrictStr = "DATABASE_ACCOUNT"
    databaseCredentialType: StrictStr = "POSTGRESQL"
    name: Annotated[Name, Field(min_length=1, max_length=255, pattern=r"^\S(.*\S)?$")]
    username: Annotated[Name, Field(min_length=1, max_length=255)]
    password: StrictStr  # base64 of the UTF-8 password
    description: Text | None = None

    @field_validator("password")
    @classmethod
    def _base64(cls, v: str) -> str:
        decode_login_password(v)
        return v

    @property
    def plain_password(self) -> str:
        return decode_login_password(self.password)


class CredentialName(WireModel):
    credentialName: Annotated[StrictStr, Field(min_length=1)]


class CredentialRecordRef(WireModel):
    credentialRecord: CredentialName


class DeleteCredentialRequest(WireModel):
    """``POST /Commcell/Credentials/action/delete``."""

    credentialRecordInfo: Annotated[list[CredentialRecordRef], Field(min_length=1)]


def credential_record(c: Credential) -> dict[str, Any]:
    """One entry of ``credentialRecordInfo`` (``GET //CommCell/Credentials``)."""
    return {
        "credentialRecord": {"credentialId": c.id, "credentialName": c.name},
        "accountType": c.account_type,
        "databaseCredentialType": c.database_type,
        "record": {"userName": c.username},
        "description": c.description,
        "createdTime": epoch(c.created_at),
    }


def credential_v4(c: Credential) -> dict[str, Any]:
    """One entry of ``credentialManager`` (``GET V4/Credential``)."""
    return {"id": c.id, "name": c.name, "accountType": c.account_type,
            "databaseCredentialType": c.database_type, "userAccount": c.username, "description": c.description}


def credential_v5(c: Credential, owner: str | None) -> dict[str, Any]:
    """``GET V5/credential/{id}``: cvpysdk's ``Credential`` reads ``id``, ``name``, ``userAccount``,
    ``accountType`` and ``security.associations[].user.name``."""
    return {
        **credential_v4(c),
        "createdTime": epoch(c.created_at),
        "security": {"associations": [{"user": {"name": owner}}] if owner else []},
    }


# -- answers ---------------------------------------------------------------------------------------

class CredentialRecordEntity(Answer):
    credentialId: int
    credentialName: str


class CredentialUser(Answer):
    userName: str


class CredentialRecordInfo(Answer):
    credentialRecord: CredentialRecordEntity
    accountType: str
    databaseCredentialType: str
    record: CredentialUser
    description: str
    createdTime: int


class CredentialRecordList(Answer):
    """``GET //CommCell/Credentials``, ``GET //CommCell/Credentials/{id}`` (a list of one)."""

    credentialRecordInfo: list[CredentialRecordInfo]


class DeleteCredentialsResponse(Answer):
    """``POST /Commcell/Credentials/action/delete``."""

    error: GenericResponse


class CredentialV4(Answer):
    id: int
    name: str
    accountType: str
    databaseCredentialType: str
    userAccount: str
    description: str


class CredentialManagerList(Answer):
    """``GET V4/Credential``."""

    credentialManager: list[CredentialV4]


class CreatedCredential(Answer):
    """``POST V4/Credential``."""

    id: int
    name: str


class CredentialOwnerName(Answer):
    name: str


class CredentialAssociation(Answer):
    user: CredentialOwnerName


class CredentialSecurity(Answer):
    associations: list[CredentialAssociation]  # who created it; none when that user is gone


class CredentialV5(CredentialV4):
    """``GET V5/credential/{id}``."""

    createdTime: int
    security: CredentialSecurity
