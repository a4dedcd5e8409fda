"""`connxt tenants ...`: brands and environments, their API tokens, their merchant
notification URL and signing secret. Every change is recorded in the audit trail."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from typing import Any

from commands.audit import cli_actor
from commands.exits import KEY_MISMATCH as KEY_MISMATCH_EXIT
from commands.exits import NOT_FOUND, fail
from connxt.logging import redact
from connxt.secrets import key_mismatch_message, key_ring
from connxt.settings import get_settings
from storage import audit
from storage.db import session_scope
from storage.key_check import opens_what_is_stored
from storage.notification_secrets import rotate_notification_secret
from storage.tenants import (
    TokenRow,
    create_tenant,
    find_environment,
    list_tokens,
    revoke_token,
    revoke_token_id,
    rotate_tokens,
)

# How long the ingress remembers a token it has seen (api_gateway.auth.TOKEN_CACHE_SECONDS).
_TOKEN_CACHE_SECONDS = 10


def _when(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def _print(out: dict[str, Any], as_json: bool, width: int, note: str | None = None) -> None:
    if as_json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key:{width}} {value}")
    if note:
        print(note)


def refuse_a_foreign_key(session) -> None:
    """Sealing a secret with a key that cannot open what is already stored would make one
    that no process of the service can use: refuse, naming the key, before writing."""
    if not opens_what_is_stored(session, key_ring()):
        print(key_mismatch_message(get_settings()), file=sys.stderr)
        sys.exit(KEY_MISMATCH_EXIT)


def create(brand: str, environment: str, as_json: bool) -> None:
    with session_scope() as session:
        refuse_a_foreign_key(session)
        issued = create_tenant(session, key_ring(), brand, environment)
        audit.record(
            session,
            cli_actor(),
            "tenant.created",
            issued.environment_id,
            None,
            {"brand": brand, "environment": environment, "tokenId": issued.token_id},
        )
    out = {
        "brandId": issued.brand_id,
        "environmentId": issued.environment_id,
        "token": issued.token,
        "notificationSecret": issued.notification_secret,
    }
    if as_json:
        # ``webhookSecret``: the same secret under its name before notifications were named
        # as such, for scripts written then.
        print(json.dumps({**out, "webhookSecret": issued.notification_secret}))
    else:
        _print(out, False, 18, "the token and the notification secret are shown once: keep them")


def _token_from_stdin() -> str:
    """One line from standard input; typed without echo at a terminal."""
    if sys.stdin.isatty():
        return getpass.getpass("token to revoke: ").strip()
    return sys.stdin.readline().strip()


def revoke(token: str | None, token_id: int | None) -> None:
    """Stop one token now, named by its row's id, or by the token itself read from stdin
    (``--token -`` or no option). A token given on the command line still works, with a
    warning: by then shell history and ``ps`` have it, and revoking it is what makes
    their copy worthless (refusing would leave a live token there)."""
    on_command_line = token_id is None and token not in (None, "-")
    if on_command_line:
        print(
            "warning: a token on the command line is kept by shell history and shown by ps; "
            "pass it on standard input (--token -) or name it by id (--token-id, see "
            "`connxt tenants tokens`)",
            file=sys.stderr,
        )
    elif token_id is None:
        token = _token_from_stdin()
        if not token:
            sys.exit("no token on standard input")
    with session_scope() as session:
        revoked = (
            revoke_token_id(session, token_id)
            if token_id is not None
            else revoke_token(session, token or "")
        )
        if revoked is not None:
            audit.record(
                session,
                cli_actor(),
                "token.revoked",
                f"token #{revoked.id}",
                {"stopsAt": _when(revoked.revoked_at)} if revoked.revoked_at else None,
                {"revoked": True},
                scope=(revoked.brand_id, revoked.environment_id),
            )
    if revoked is None:
        if on_command_line:
            print(
                "warning: that token was not revoked, and it is in your shell history",
                file=sys.stderr,
            )
        sys.exit("no working token matches (unknown, or revoked already)")
    print(f"token #{revoked.id} revoked: refused everywhere within {_TOKEN_CACHE_SECONDS} seconds")


def _token_view(row: TokenRow, now: datetime) -> dict[str, Any]:
    if row.revoked_at is None:
        state = "working"
    elif row.revoked_at > now:
        state = "stops at " + (_when(row.revoked_at) or "")
    else:
        state = "revoked"
    return {
        "id": row.id,
        "createdAt": _when(row.created_at),
        "revokedAt": _when(row.revoked_at),
        "state": state,
    }


def tokens(brand: str, environment: str, as_json: bool) -> None:
    """The environment's tokens by id, with when each was issued and stopped: never the
    token, nor its digest."""
    with session_scope() as session:
        env = find_environment(session, brand, environment)
        if env is None:
            sys.exit(fail("no such brand/environment", NOT_FOUND))
        now = datetime.now(UTC)
        rows = [_token_view(row, now) for row in list_tokens(session, env.id)]
    if as_json:
        print(json.dumps(rows))
        return
    for row in rows:
        print(f"#{row['id']:<6} issued {row['createdAt']}  {row['state']}")
    if not rows:
        print("(no tokens)")


def rotate(brand: str, environment: str, grace: int, as_json: bool) -> None:
    if grace < 0:
        sys.exit("--grace must be 0 or more seconds")
    with session_scope() as session:
        env = find_environment(session, brand, environment)
        if env is None:
            sys.exit(fail("no such brand/environment", NOT_FOUND))
        rotated = rotate_tokens(session, env, grace)
        audit.record(
            session,
            cli_actor(),
            "token.rotated",
            env.id,
            {"working": rotated.retired},
            {
                "tokenId": rotated.token_id,
                "previousTokensStopAt": _when(rotated.retired_at),
                "graceSeconds": grace,
            },
        )
    out = {
        "brandId": rotated.brand_id,
        "environmentId": rotated.environment_id,
        "token": rotated.token,
        "previousTokens": rotated.retired,
        "previousTokensStopAt": _when(rotated.retired_at),
    }
    _print(out, as_json, 20, "the new token is shown once: keep it")


def rotate_secret(brand: str, environment: str, overlap: int, as_json: bool) -> None:
    """A new merchant notification secret; the one it replaces keeps signing beside it for
    ``overlap`` seconds (both signatures in every notification), then stops."""
    if overlap < 0:
        sys.exit("--overlap must be 0 or more seconds")
    with session_scope() as session:
        env = find_environment(session, brand, environment)
        if env is None:
            sys.exit(fail("no such brand/environment", NOT_FOUND))
        refuse_a_foreign_key(session)
        rotated = rotate_notification_secret(session, key_ring(), env, overlap)
        audit.record(
            session,
            cli_actor(),
            "notification_secret.rotated",
            env.id,
            {"hadOne": rotated.had_one},
            {"sealedUnder": rotated.key_id, "previousSignsUntil": _when(rotated.previous_until)},
        )
    out = {
        "brandId": rotated.brand_id,
        "environmentId": rotated.environment_id,
        "notificationSecret": rotated.secret,
        "previousSecretSignsUntil": _when(rotated.previous_until),
    }
    note = "the notification secret is shown once: keep it"
    if rotated.previous_until is not None:
        note += "; until then notifications carry both signatures (new first)"
    _print(out, as_json, 24, note)


def notification_url(brand: str, environment: str, url: str, return_url: str | None) -> None:
    from workers.notify_urls import UnsafeUrl, check_merchant_url

    try:
        check_merchant_url(url)
    except UnsafeUrl as exc:
        sys.exit(f"refused: {exc}")
    with session_scope() as session:
        env = find_environment(session, brand, environment)
        if env is None:
            sys.exit(fail("no such brand/environment", NOT_FOUND))
        # A merchant URL may carry its own token in the query: kept out of the trail.
        before = {"url": redact(env.notification_url, for_log=True)}
        after = {"url": redact(url, for_log=True)}
        env.notification_url = url
        if return_url is not None:
            before["returnUrl"] = redact(env.return_url, for_log=True)
            env.return_url = return_url or None
            after["returnUrl"] = redact(env.return_url, for_log=True)
        audit.record(session, cli_actor(), "notification_url.changed", env.id, before, after)
    print(f"merchant notifications for {brand}/{environment}: {url}")
