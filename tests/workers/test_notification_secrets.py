"""What merchant notifications are signed with: never an empty key, and during a
rotation's overlap both the new and the previous secret (Standard Webhooks allows several
space-separated signatures), after it the new one only.

Signatures are checked with the sandbox merchant's own verifier (sandbox/merchant.py),
which shares no code with the worker's signing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connxt.secrets import key_ring
from sandbox.merchant import verify
from state_machine import Status
from storage.db import session_scope
from storage.models import Environment
from storage.notification_secrets import SigningSecrets, rotate_notification_secret
from storage.tenants import notification_secret
from tests.support.merchant import delivery_record
from tests.support.rollback import Ledger
from workers import notify
from workers.notify import deliver_many

pytestmark = pytest.mark.usefixtures("rolled_back")


class HeaderReceiver:
    """A merchant on loopback that keeps each POST's headers and body, and answers 204."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []
        merchant = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the standard library's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                merchant.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[HeaderReceiver]:
    notify._secrets.clear()
    server = HeaderReceiver()
    yield server
    server.close()


def current_secret(environment_id: str) -> str:
    with session_scope() as session:
        return notification_secret(key_ring(), session.get(Environment, environment_id))


def test_an_environment_without_a_secret_is_never_signed_with_an_empty_key(receiver):
    ledger = Ledger.open()
    with session_scope() as session:
        environment = session.get(Environment, ledger.environment_id)
        environment.notification_secret_key_id = None
        environment.notification_secret_sealed = None
    notification_id = ledger.notification(ledger.deposit(Status.SUCCESS), receiver.url)

    assert deliver_many({notification_id: None}) == {notification_id: "PENDING"}
    assert receiver.seen == []  # nothing left unsigned, or signed with a key anyone has
    _, made = delivery_record(notification_id)
    assert made[0].status_code is None
    assert "no notification secret" in made[0].error
    assert "rotate-secret" in made[0].error  # and what to do about it


def test_an_empty_key_is_refused_by_the_signature_itself():
    with pytest.raises(notify.NoSigningSecret):
        notify.sign("whsec_", "msg_1", 1, b"{}")


def test_during_the_overlap_both_signatures_are_sent_the_new_one_first(receiver):
    ledger = Ledger.open()
    previous = current_secret(ledger.environment_id)
    with session_scope() as session:
        environment = session.get(Environment, ledger.environment_id)
        rotated = rotate_notification_secret(session, key_ring(), environment, 3600)
    assert rotated.secret != previous and rotated.had_one
    assert current_secret(ledger.environment_id) == rotated.secret

    notification_id = ledger.notification(ledger.deposit(Status.SUCCESS), receiver.url)
    assert deliver_many({notification_id: None}) == {notification_id: "DELIVERED"}
    ((headers, body),) = receiver.seen
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    # A merchant holding either secret accepts the notification...
    assert verify(rotated.secret, headers, body)
    assert verify(previous, headers, body)
    # ...and the first signature is the new secret's.
    assert verify(rotated.secret, {**headers, "webhook-signature": signatures[0]}, body)
    assert not verify(previous, {**headers, "webhook-signature": signatures[0]}, body)


def test_without_an_overlap_only_the_new_secret_signs(receiver):
    ledger = Ledger.open()
    previous = current_secret(ledger.environment_id)
    with session_scope() as session:
        environment = session.get(Environment, ledger.environment_id)
        rotated = rotate_notification_secret(session, key_ring(), environment, 0)
    assert rotated.previous_until is None

    notification_id = ledger.notification(ledger.deposit(Status.SUCCESS), receiver.url)
    assert deliver_many({notification_id: None}) == {notification_id: "DELIVERED"}
    ((headers, body),) = receiver.seen
    assert " " not in headers["webhook-signature"]
    assert verify(rotated.secret, headers, body)
    assert not verify(previous, headers, body)


def test_a_rotation_is_used_from_the_next_attempt_on_despite_the_cache(receiver):
    """The opened secrets are cached for seconds, keyed by the sealed secret the lease
    reads: a rotation between two attempts is not missed for the cache's lifetime."""
    ledger = Ledger.open()
    first = ledger.notification(ledger.deposit(Status.SUCCESS), receiver.url)
    assert deliver_many({first: None}) == {first: "DELIVERED"}
    with session_scope() as session:
        environment = session.get(Environment, ledger.environment_id)
        rotated = rotate_notification_secret(session, key_ring(), environment, 0)
    second = ledger.notification(ledger.deposit(Status.SUCCESS), receiver.url)
    assert deliver_many({second: None}) == {second: "DELIVERED"}
    headers, body = receiver.seen[1]
    assert verify(rotated.secret, headers, body)


def test_the_previous_secret_stops_signing_when_the_overlap_ends():
    until = datetime.now(UTC) + timedelta(seconds=60)
    secrets = SigningSecrets("whsec_new", "whsec_old", until)
    assert secrets.in_use(until - timedelta(seconds=1)) == ["whsec_new", "whsec_old"]
    assert secrets.in_use(until) == ["whsec_new"]
    assert SigningSecrets(None, None, None).in_use(until) == []
