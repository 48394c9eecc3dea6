"""Users, roles, API keys and sessions on the wire: Command Center's shapes where cvpysdk 11.44 reads
them (``GET /User``, ``/V4/User``, ``/Role``, ``/V4/Role``, ``POST /User``), pgvault's own for the rest."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictStr

from .common import Answer, WireModel

# -- requests ------------------------------------------------------------------------------------------


class UserEntityIn(WireModel):
    userName: StrictStr


class NewUser(WireModel):
    """One user of ``POST /User`` (cvpysdk's ``users.add`` body, plus pgvault's ``role``)."""

    userEntity: UserEntityIn
    password: StrictStr | None = None  # base64 of the UTF-8 password, as cvpysdk sends it
    email: StrictStr | None = None
    fullName: StrictStr | None = None
    role: StrictStr | None = None  # a role's name (GET /Role); Viewer when absent


class CreateUsersRequest(WireModel):
    users: list[NewUser] = Field(min_length=1, max_length=1)


class UpdateUserRequest(WireModel):
    """``PUT /User/{id}``: what is given changes."""

    role: StrictStr | None = None
    email: StrictStr | None = None
    fullName: StrictStr | None = None


class ChangePasswordRequest(WireModel):
    """``POST /ChangePassword``: the caller's own password (both base64, as ``/Login`` takes them)."""

    currentPassword: StrictStr
    newPassword: StrictStr


class ResetPasswordRequest(WireModel):
    newPassword: StrictStr  # base64


class CreateApiKeyRequest(WireModel):
    name: StrictStr
    role: StrictStr | None = None  # the creator's role when absent


# -- answers -------------------------------------------------------------------------------------------


class UserEntity(Answer):
    userName: str
    userId: int


class RoleRef(Answer):
    roleId: int
    roleName: str


class UserProperties(Answer):
    """A user in ``GET /User`` and ``GET /User/{id}`` (times: Unix seconds)."""

    userEntity: UserEntity
    enableUser: bool
    email: str
    fullName: str
    role: RoleRef
    createdTime: int
    updatedTime: int
    passwordChangedTime: int | None  # null: still the password it was created with at first start


class UserList(Answer):
    """``GET /User``; ``GET /User/{id}`` (a list of one)."""

    users: list[UserProperties]


class V4User(Answer):
    id: int
    name: str
    fullName: str
    email: str
    enabled: bool
    role: str


class UserSecurity(Answer):
    """``GET /User/{id}/Security``: pgvault's roles apply to everything, so a user has no per-entity
    associations (``{}``, which cvpysdk reads as none)."""


class V4UserList(Answer):
    """``GET /V4/User`` (cvpysdk's ``commcell.users``)."""

    users: list[V4User]


class UserCreated(Answer):
    errorCode: Literal[0]
    errorString: str
    entity: UserEntity


class CreateUsersResponse(Answer):
    """``POST /User``: cvpysdk reads ``response[0].errorCode`` and ``entity.userName``."""

    response: list[UserCreated]


class DoneItem(Answer):
    errorCode: Literal[0]
    errorString: str


class DeleteUserResponse(Answer):
    response: list[DoneItem]


class RoleFlags(Answer):
    disabled: bool


class RoleEntity(Answer):
    roleId: int
    roleName: str
    flags: RoleFlags


class Permission(Answer):
    permissionName: str


class CategoryPermission(Answer):
    categoriesPermissionList: list[Permission]


class RoleProperties(Answer):
    role: RoleEntity
    description: str
    categoryPermission: CategoryPermission


class RoleList(Answer):
    """``GET /Role``; ``GET /Role/{id}`` (a list of one). The permissions are pgvault's capabilities."""

    roleProperties: list[RoleProperties]


class V4Role(Answer):
    id: int
    name: str
    capabilities: list[str]


class V4RoleList(Answer):
    """``GET /V4/Role`` (cvpysdk's ``commcell.roles``)."""

    roles: list[V4Role]


class ApiKeyInfo(Answer):
    """An API key as listed: never the key itself."""

    id: int
    name: str
    role: str
    userName: str
    userId: int
    createdTime: int
    lastUsedTime: int | None
    revokedTime: int | None


class ApiKeyCreated(ApiKeyInfo):
    """``POST /ApiKey``: the key, shown this once (only its hash is kept)."""

    key: str


class ApiKeyList(Answer):
    apiKeys: list[ApiKeyInfo]


class SessionInfo(Answer):
    id: int
    userName: str
    userId: int
    createdTime: int
    expiresTime: int
    current: bool  # the session of the token this request came with


class SessionList(Answer):
    """``GET /Session``: the live sessions (login tokens) of a user, newest first."""

    sessions: list[SessionInfo]


class LogoutEverywhereResponse(Answer):
    errorCode: Literal[0]
    errorMessage: str
    sessionsEnded: int

