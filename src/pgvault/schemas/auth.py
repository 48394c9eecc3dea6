"""What ``/Login``, ``/RenewLoginToken``, ``/Logout`` and ``/WhoAmI`` answer."""

from __future__ import annotations

from typing import Literal

from .common import Answer, UserEntity


class RenewLoginTokenResponse(Answer):
    """``POST /RenewLoginToken``: the fresh token (the old one stops working)."""

    token: str  # "QSDK <hex>", for the Authtoken header
    userName: str
    userId: int


class LoginResponse(RenewLoginTokenResponse):
    """``POST /Login``."""

    aliasName: str


class LogoutResponse(Answer):
    """``POST /Logout``."""

    response: Literal["User logged out"]


class WhoAmIResponse(Answer):
    """``POST /WhoAmI``."""

    user: UserEntity
