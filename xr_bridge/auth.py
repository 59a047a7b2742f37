"""Join tokens: who may enter which room, in which role, until when. Pure, no I/O.

A token is ``base64url(claims JSON) + "." + base64url(HMAC-SHA256(secret, first part))``.
The server that holds the secret mints tokens (for a lesson link, a kiosk, a
teacher's dashboard) and checks them at ``join``; nothing is stored server
side, so any process sharing the secret can mint them.  Claims are signed,
not encrypted: do not put secrets in room or name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from .protocol import ROLES, Role

TOKEN_VERSION = 1
MAX_TOKEN_CHARS = 2048


class TokenError(Exception):
    """The token is malformed, forged, or expired (the message says which)."""


@dataclass(frozen=True, slots=True)
class Claims:
    room: str
    role: Role
    name: str
    expires_at: float
    """Unix time in seconds."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest())


def make_token(
    secret: bytes, *, room: str, role: Role, name: str, ttl_s: float = 3600.0, now: float | None = None
) -> str:
    """A token letting ``name`` join ``room`` as ``role`` for ``ttl_s`` seconds from ``now``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    if not 0 < len(room) <= 128 or not 0 < len(name) <= 64:
        raise ValueError("room must be 1-128 characters and name 1-64 (the protocol's limits)")
    if len(secret) < 16:
        raise ValueError("the secret must be at least 16 bytes")
    issued = time.time() if now is None else now
    claims = {"v": TOKEN_VERSION, "room": room, "role": role, "name": name, "exp": round(issued + ttl_s, 3)}
    payload = _b64(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_sign(secret, payload)}"


def verify_token(secret: bytes, token: str, *, now: float | None = None) -> Claims:
    """The claims of a genuine, unexpired token, or :class:`TokenError`."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenError("malformed token")
    payload, signature = token.split(".")
    try:
        genuine = hmac.compare_digest(signature.encode("ascii"), _sign(secret, payload).encode("ascii"))
    except UnicodeError:
        raise TokenError("malformed token") from None
    if not genuine:
        raise TokenError("bad token signature")
    try:
        claims = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        raise TokenError("malformed token") from None
    if not isinstance(claims, dict) or claims.get("v") != TOKEN_VERSION:
        raise TokenError("unsupported token version")
    room, role, name, exp = (claims.get(key) for key in ("room", "role", "name", "exp"))
    if not (isinstance(room, str) and isinstance(name, str) and role in ROLES and isinstance(exp, int | float)):
        raise TokenError("malformed token claims")
    if (time.time() if now is None else now) >= exp:
        raise TokenError("token expired")
    return Claims(room=room, role=role, name=name, expires_at=float(exp))
