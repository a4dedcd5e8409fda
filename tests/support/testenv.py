"""The test run's environment, set before any project module reads its settings.

A database named for this run, a Redis key prefix of its own, a fresh key ring, fixed
ports for the shared stack, and healing loops that run in seconds instead of minutes.

``CONNXT_TEST_BROKER=rabbitmq`` runs the suite's workers on RabbitMQ instead of Redis: the
run gets a virtual host of its own on the local RabbitMQ (tests.support.rabbitmq), as it
gets a key prefix on Redis. ``.ci/run`` runs the tests marked ``broker`` that way too.
"""

from __future__ import annotations

import base64
import os
import secrets

from tests.support import rabbitmq
from tests.support.stack import reserved_port

RUN_DB = f"connxt_test_{secrets.token_hex(4)}"
# The shared stack's ports are fixed up front so that in-process code (connectors, tasks
# called directly) reaches the same sandbox and calls back the same API as the workers.
# Reserved, not only free now: the stack starts when a test first needs it, maybe minutes on.
API_PORT, SANDBOX_PORT = reserved_port(), reserved_port()
ADMIN_DSN = os.environ.get("CONNXT_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_URL = (
    ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + RUN_DB
)
REDIS_URL = os.environ.get("CONNXT_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")

os.environ.update(
    CONNXT_ENV="development",
    CONNXT_DATABASE_URL=DB_URL,
    CONNXT_REDIS_URL=REDIS_URL,
    CONNXT_ENCRYPTION_KEYS="t1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    CONNXT_LOG_LEVEL="WARNING",
    # Healing loops run in seconds here, not minutes, so tests can watch them work.
    CONNXT_INQUIRY_SCHEDULE="[2, 2, 3, 5]",
    CONNXT_RECONCILE_INTERVAL_SECONDS="1",
    CONNXT_REDRIVE_INTERVAL_SECONDS="1",
    CONNXT_INBOX_REDRIVE_AFTER_SECONDS="5",
    CONNXT_NOTIFY_BACKOFF="[1, 1, 2, 2, 3, 3]",
    CONNXT_NOTIFY_TIMEOUT_SECONDS="2",
    CONNXT_PSP_READ_TIMEOUT="3",
    # A catalog disable reaches every ingress within this; tests wait for it both ways.
    CONNXT_CATALOG_CACHE_SECONDS="2",
    CONNXT_BROKER_KEY_PREFIX=f"{RUN_DB}:",
    CONNXT_PUBLIC_URL=f"http://127.0.0.1:{API_PORT}",
    CONNXT_SANDBOX_URL=f"http://127.0.0.1:{SANDBOX_PORT}",
    # The merchant receiver the tests use is the sandbox, on loopback.
    CONNXT_ALLOW_PRIVATE_NOTIFICATION_URLS="true",
    # A stopping ingress stops at once here; the drain's own tests set their own.
    CONNXT_DRAIN_SECONDS="0",
    # Test traffic is light, and several stacks run side by side (deploy/test.sh): small
    # pools keep them all inside PostgreSQL's connections.
    CONNXT_DB_POOL_SIZE="3",
    CONNXT_INGRESS_DB_CONNECTIONS="4",
    # As `make run` has it, for the demo's reconciliation (commands/demo_recon.py).
    CONNXT_RECON_SETTLEMENT_WINDOWS='{"Sticpay": 0}',
    CONNXT_LOCAL_KEY_FILE=os.path.join(os.environ.get("TMPDIR", "/tmp"), f"{RUN_DB}.key"),
)

BROKER = os.environ.get("CONNXT_TEST_BROKER", "redis")
if BROKER == "rabbitmq":
    os.environ["CONNXT_BROKER_URL"] = rabbitmq.create_vhost(RUN_DB)
elif BROKER == "redis":
    os.environ.pop("CONNXT_BROKER_URL", None)
else:
    raise SystemExit(f"CONNXT_TEST_BROKER must be redis or rabbitmq, not {BROKER!r}")
