"""Who is looking: a tenant (one brand and environment) or an operator (every tenant).

A tenant signs in with its API token, found by the API's own lookup
(storage.tenants.find_token), though a token rotated out, even within its grace period,
opens no console session; an operator with a token of ``CONNXT_OPERATOR_TOKENS``. The
session keeps only references (the token row's id, the operator's name and a fingerprint
of the token), and each request checks them again, so a revoked or replaced token ends its
sessions at once.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from functools import lru_cache

from connxt.secrets import hash_token
from connxt.settings import get_settings
from console.session import Session, signed_in_as
from storage.db import session_scope
from storage.directory import environment_labels
from storage.tenants import find_token
from storage.transactions import Scope

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,59}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# Fingerprint length kept in the session: enough to notice a replaced token, far too little
# to say anything useful about the token itself.
_FINGERPRINT = 16
MIN_TOKEN_LENGTH = 16


class OperatorConfigError(ValueError):
    """CONNXT_OPERATOR_TOKENS is malformed (the message never contains a token)."""


@dataclass(frozen=True)
class Operator:
    name: str
    digest: str  # SHA-256 of the token, hex


def parse_operators(spec: str) -> list[Operator]:
    """``name:token`` or ``name:sha256:<hex>`` entries, comma-separated."""
    operators: dict[str, Operator] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, secret = entry.partition(":")
        if not sep or not _NAME.match(name):
            raise OperatorConfigError(
                "CONNXT_OPERATOR_TOKENS entries look like name:token (names: letters, "
                "digits, . _ @ -)"
            )
        if name in operators:
            raise OperatorConfigError(f"operator {name!r} appears more than once")
        if secret.startswith("sha256:"):
            digest = secret.removeprefix("sha256:").lower()
            if not _DIGEST.match(digest):
                raise OperatorConfigError(f"operator {name!r}: sha256: needs 64 hex digits")
        elif len(secret) < MIN_TOKEN_LENGTH:
            raise OperatorConfigError(
                f"operator {name!r}: a token needs at least {MIN_TOKEN_LENGTH} characters"
            )
        else:
            digest = hash_token(secret)
        operators[name] = Operator(name, digest)
    return list(operators.values())


@lru_cache
def configured_operators() -> tuple[Operator, ...]:
    secret = get_settings().operator_tokens
    return tuple(parse_operators(secret.get_secret_value())) if secret else ()


@dataclass(frozen=True)
class Viewer:
    """A signed-in user as the pages and actions see them."""

    scope: Scope  # None: every tenant (an operator)
    label: str  # shown in the page header
    who: str  # recorded with every action taken

    @property
    def is_operator(self) -> bool:
        return self.scope is None


def sign_in(token: str, typed_name: str) -> Session | None:
    """A session for ``token``, or None when it is no operator's and no live API token.

    ``typed_name`` is what a tenant's user says they are called (recorded with their
    actions beside the token's id); an operator's name is the configured one.
    """
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    for operator in configured_operators():
        if hmac.compare_digest(operator.digest, digest):
            return signed_in_as("operator", operator.name, fingerprint=digest[:_FINGERPRINT])
    with session_scope() as db:
        live = find_token(db, digest=digest)
    if live is None or live.retiring:
        return None
    return signed_in_as("tenant", clean_name(typed_name), token_id=live.id)


def clean_name(typed: str) -> str:
    """A display name as typed, without control characters, at most 60 characters."""
    kept = "".join(ch for ch in typed if ch.isprintable()).strip()
    return kept[:60]


def viewer_of(session: Session) -> Viewer | None:
    """Who the session is, checked against the tokens as they are now."""
    if session.kind == "operator":
        for operator in configured_operators():
            if operator.name == session.name and hmac.compare_digest(
                operator.digest[:_FINGERPRINT], session.operator_fingerprint
            ):
                return Viewer(
                    None, f"operator {operator.name} · every tenant", f"operator {operator.name}"
                )
        return None
    if session.kind == "tenant":
        with session_scope() as db:
            token = find_token(db, token_id=session.token_id)
            if token is None or token.retiring:
                return None
            tenant = environment_labels(db, [token.environment_id]).get(token.environment_id, "")
        person = session.name or "someone"
        return Viewer(
            (token.brand_id, token.environment_id),
            f"{person} · {tenant}",
            f"{person} with the {tenant} token #{session.token_id}",
        )
    return None
