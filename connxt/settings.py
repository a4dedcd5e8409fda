"""Every setting of the service, each an environment variable with a working local default."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONNXT_", extra="ignore", populate_by_name=True)

    env: Literal["development", "production"] = "development"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/connxt"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The Celery broker (connxt.broker): unset, Redis at ``redis_url``; ``amqp://…`` for a
    # RabbitMQ fleet (durable quorum queues, publisher confirms). Locks stay on Redis.
    broker_url: str | None = None
    # Prefix of every broker key: lets several deployments (or test runs) share one Redis.
    broker_key_prefix: str = ""
    # Base URL the PSPs call back (redirects and webhooks).
    public_url: str = "http://127.0.0.1:8000"
    # When set, every built-in connector talks to the sandbox at this URL.
    sandbox_url: str | None = None
    # Key ring: "kid1:base64key,kid2:base64key"; the first key encrypts, all decrypt.
    encryption_keys: str | None = None
    # Local state (the development key; connxt.state): found the same way from any directory.
    state_dir: str | None = None
    # Development's generated key when CONNXT_ENCRYPTION_KEYS is unset: absolute, or relative
    # to the state directory; unset, ``encryption.key`` there (connxt.state.local_key_path).
    local_key_file: str | None = None

    # Proxies whose X-Forwarded-For names the client (the balancer's addresses or networks,
    # comma-separated, e.g. "10.0.0.0/8"; "*" trusts every peer). Unset, no peer is trusted:
    # the client is the peer, and a forged X-Forwarded-For changes nothing.
    trusted_proxies: str = ""
    # On SIGTERM an ingress answers /readyz 503 and keeps serving this long before it stops
    # (api_gateway/drain.py): enough for the shipped haproxy check (1 s, two failures) and
    # for Kubernetes to take the pod out of its endpoints.
    drain_seconds: float = Field(default=5.0, ge=0)
    # Then requests in flight get this long to finish (inside Kubernetes' 30 s grace period).
    shutdown_grace_seconds: float = Field(default=10.0, gt=0)
    # /metrics on the API's public listener as well as on --metrics-port (off: scrapers
    # reach the metrics port, clients never see the metrics).
    public_metrics: bool = False
    # connxt_queue_depth is read from the broker at most this often per process.
    queue_depth_interval_seconds: float = Field(default=15.0, gt=0)

    max_body_bytes: int = 1024 * 1024
    initiation_wait_seconds: float = Field(default=10.0, ge=0)
    # Connections per process for everything but the ingress hot paths: kept, never churned;
    # a worker's items hold one only for a statement or two, so a few serve many threads.
    db_pool_size: int = 5
    # The ingress's asynchronous connections: a fixed set, opened at start, never churned.
    # Each group commit keeps one per batch in flight; the rest serve reads.
    ingress_db_connections: int = Field(default=8, ge=1)
    # Group commit: the most requests one INSERT carries, and batches committing at once.
    # One at a time makes the biggest batches: fewer commits, and less of PostgreSQL's CPU
    # taken from the ingress on the same cores (measured on 2 cores, durable accept at 16
    # connections: 0.55–0.64× the bare floor with 1 in five runs, 0.44–0.60× with 2,
    # 0.36–0.44× with 3). Where PostgreSQL has cores of its own, 2 may serve better.
    group_commit_max_batch: int = Field(default=256, ge=1)
    group_commit_concurrency: int = Field(default=1, ge=1)
    # How long a batch may keep trying (a connection lost mid-commit is resolved by
    # looking for its rows) before its requests are refused with a 503.
    group_commit_deadline_seconds: float = Field(default=3.0, gt=0)
    # PSP accounts and their operations, as the ingress validates against them; a PATCH
    # takes effect at once in the process that served it, elsewhere within this bound.
    psp_cache_seconds: float = Field(default=5.0, ge=0)
    # Unknown tokens one client address may present per window before it is answered 429
    # without a lookup until the window ends (per ingress process; api_gateway.auth).
    auth_failure_limit: int = Field(default=20, ge=1)
    auth_failure_window_seconds: float = Field(default=10.0, gt=0)
    # Catalog rows (flow targets and actions) as Step 3 validates against them: a
    # `connxt catalog disable` takes effect in every ingress process within this bound.
    catalog_cache_seconds: float = Field(default=30.0, ge=0)

    psp_connect_timeout: float = 3.0
    psp_read_timeout: float = 15.0
    # A PSP call in all, from connecting to the answer's last byte, however the PSP paces
    # its bytes (a read timeout bounds each read, not the call): connxt.deadlines.
    psp_call_deadline_seconds: float = Field(default=20.0, gt=0)

    # Threads per worker process working on a batch's items side by side: for a PSP's
    # lane, the most calls in flight to that PSP from one process (its bulkhead).
    worker_threads: int = Field(default=128, ge=1)
    # The same for the lane of scheduled inquiries (workers.lanes): reconciliation at its
    # own pace, never at the expense of fresh payments.
    reconcile_threads: int = Field(default=8, ge=1)
    # The same for merchant notifications: each is a short POST (workers.merchant_http)
    # and mostly a wait for the merchant's answer (measured: 10,000 settled at 410/s with
    # 24 threads, 500/s with 64). Merchants that answer slowly want more.
    notify_threads: int = Field(default=64, ge=1)
    # Messages a worker process works on at once (its Celery pool's threads), and items per
    # message when the relay packs the outbox into tasks. Their product bounds the items a
    # process holds reserved: small enough to finish within the broker's visibility
    # timeout even when its PSP answers slowly, large enough that small messages (light
    # load) never cap the calls in flight below ``worker_threads``.
    worker_batches: int = Field(default=32, ge=1)
    relay_message_items: int = Field(default=16, ge=1)
    # Items per message for the tasks applied as a set in the database (PSP webhooks,
    # merchant notifications, connxt.tasks.SET_TASKS): no PSP call holds a batch of them
    # up, and a message's statements are shared by all of its items (measured: 10,000
    # webhooks settled with 40% less PostgreSQL CPU at 64 than at 16).
    set_message_items: int = Field(default=64, ge=1)

    # A stopping worker finishes its running tasks for at most this long, then exits anyway
    # (workers/lifecycle.py): its unfinished messages go back to the broker. Under the
    # platform's grace period (Kubernetes: 60 s for the workers).
    worker_shutdown_seconds: float = Field(default=20.0, gt=0)
    # RabbitMQ heartbeats: a worker host that vanished (no FIN) is noticed, and its
    # unacknowledged messages handed to others, within about two of these.
    broker_heartbeat_seconds: float = Field(default=10.0, ge=0)

    lock_ttl_seconds: int = 15
    task_max_attempts: int = 8
    # Initiation attempts before a transaction is left to inquiries alone. A retry first
    # looks for the payment at the PSP, so it completes an interrupted call, never repeats it.
    initiate_max_attempts: int = 4

    # Reconciliation: first inquiry after this age, then spaced out (seconds).
    inquiry_schedule: list[int] = [60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600]
    deposit_expiry_seconds: int = 30 * 60
    # Each worker relays the outbox to the broker (workers.relay); off for workers that
    # should only consume.
    outbox_relay: bool = True
    # Under load the relay waits this long between drains that found work, so a message
    # carries what a few commits left (workers.relay).
    relay_pace_seconds: float = Field(default=0.01, ge=0)
    outbox_redrive_after_seconds: int = 5
    inbox_redrive_after_seconds: int = 30
    reconcile_interval_seconds: float = 30.0
    # Scheduled looks started per second (each sweep claims rate × interval of them, the
    # longest-waiting first): a backlog of abandoned checkouts is worked through at this
    # pace instead of all at once, so it never crowds out fresh payments.
    reconcile_rate: float = Field(default=20.0, gt=0)
    redrive_interval_seconds: float = 5.0

    # A customer's redirect or an unverified webhook has the PSP asked about a transaction
    # at most once per this many seconds (storage.inquiries).
    hint_inquiry_interval_seconds: float = Field(default=10.0, ge=0)
    # Retention (storage.retention): days a row is kept once it has served its purpose,
    # pruned by beat every ``retention_interval_seconds`` in batches of this many rows.
    inbox_retention_days: int = Field(default=30, ge=1)
    idempotency_retention_days: int = Field(default=7, ge=1)
    notification_attempts_retention_days: int = Field(default=30, ge=1)
    # Customers' names, e-mails, phones and addresses (storage.personal_data) are redacted
    # this many days after their transaction ended; amounts, ids and statuses stay.
    pii_retention_days: int = Field(default=90, ge=0)
    retention_interval_seconds: float = Field(default=600.0, gt=0)
    retention_batch_rows: int = Field(default=1000, ge=1)

    # Settlement reconciliation (`connxt recon`: storage/recon/, workers/settlement.py).
    # The most one answer of a settlement report (a page, or a whole file) may hold.
    settlement_report_max_bytes: int = Field(default=2 * 1024**3, ge=1024)
    # How long one answer of a settlement report (a page, or a whole day's file) may take
    # in all, where a payment's answer has CONNXT_PSP_CALL_DEADLINE_SECONDS.
    settlement_report_deadline_seconds: float = Field(default=600.0, gt=0)
    # How long a PSP may take to settle our SUCCESS, from the transaction's creation: inside
    # it an unsettled one is pending, past it missing at the PSP. Per PSP account id or
    # connector name (``{"Sticpay": 1}``) in ``recon_settlement_windows``, else the default.
    recon_settlement_window_days: float = Field(default=2.0, ge=0)
    recon_settlement_windows: dict[str, float] = {}
    # The daily runs: from this hour (UTC) each day reconciles the day before, and again
    # each of the ``recon_lookback_days`` before it, to catch what settled late. Beat
    # looks for due days every ``recon_sweep_interval_seconds``.
    recon_hour: int = Field(default=4, ge=0, le=23)
    recon_lookback_days: int = Field(default=4, ge=0, le=60)
    recon_sweep_interval_seconds: float = Field(default=300.0, gt=0)
    # A run that has shown no sign of life for this long (its process died) is run again.
    recon_stale_after_seconds: float = Field(default=120.0, gt=0)

    merchant_return_url: str | None = None
    # A merchant notification attempt in all, however the merchant paces its bytes (and
    # each read): workers.merchant_http. Its lease is 5 s longer (workers.notify).
    notify_timeout_seconds: float = 10.0
    # Delays between merchant notification attempts: about a day in all.
    notify_backoff: list[int] = [10, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800]
    # Allow merchant notification URLs on private, loopback or link-local addresses: `make
    # run` does, for its demo receiver on loopback. Production ignores it: never allowed
    # there. CONNXT_ALLOW_PRIVATE_WEBHOOK_URLS is its name before notifications were named
    # as such, still read.
    allow_private_notification_urls: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "allow_private_notification_urls",
            "CONNXT_ALLOW_PRIVATE_NOTIFICATION_URLS",
            "CONNXT_ALLOW_PRIVATE_WEBHOOK_URLS",
        ),
    )

    log_level: str = "INFO"

    # How long a migration's statement waits for a lock before it fails (storage/migrations/
    # env.py): DDL queued behind a long transaction would hold every query behind it.
    migration_lock_timeout_ms: int = Field(default=5000, ge=1)

    # The operator console (`connxt console`). Operators see every tenant; each is
    # "name:token", comma-separated, and a token may be given as "name:sha256:<hex digest>"
    # so that it is not kept in clear here. Tenants sign in with their API token.
    operator_tokens: SecretStr | None = None
    # How long a console sign-in lasts before the token is asked for again.
    console_session_hours: float = Field(default=8.0, gt=0)

    @property
    def is_production(self) -> bool:
        return self.env == "production"


@lru_cache
def get_settings() -> Settings:
    return Settings()
