"""The Celery broker: Redis (the embedded default) or RabbitMQ (for fleets).

``CONNXT_BROKER_URL`` picks it; unset, the broker is ``CONNXT_REDIS_URL``. Locks and the
outcome hand-off stay on Redis whichever broker carries the tasks.

On RabbitMQ every lane (connxt.tasks) is a durable quorum queue, replicated by the broker,
and publishes wait for the broker's confirm: a message is accepted only once the broker
has it, and it outlives a broker restart. The queues are declared up front, each bound
to one topic exchange by its own name: a topic exchange is what Celery's native delayed
delivery (countdowns and retries on quorum queues) needs to route a delayed message back
to its lane.
"""

from __future__ import annotations

import re
from typing import Any

from kombu import Connection, Exchange, Queue

from connxt.settings import Settings

EXCHANGE = "connxt"
QUORUM = {"x-queue-type": "quorum"}

# What RabbitMQ's delayed delivery puts in front of a routing key: 28 binary digits.
_DELAY_PREFIX = re.compile(r"^(?:[01]\.){28}")


def broker_url(settings: Settings) -> str:
    return settings.broker_url or settings.redis_url


def is_amqp(url: str) -> bool:
    return url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")


def lane_queues(names: list[str]) -> list[Queue]:
    """The lanes as RabbitMQ quorum queues on the topic exchange."""
    exchange = Exchange(EXCHANGE, type="topic", durable=True)
    return [
        Queue(name, exchange, routing_key=name, durable=True, queue_arguments=QUORUM)
        for name in names
    ]


def celery_config(settings: Settings, queue_names: list[str]) -> dict[str, Any]:
    """What differs between the brokers in the Celery app's configuration."""
    url = broker_url(settings)
    if not is_amqp(url):
        return {
            "broker_url": url,
            # Longer than the longest task (a PSP call is bounded to ~20 s); short enough
            # that a message held by a killed worker comes back within a minute.
            "broker_transport_options": {
                "visibility_timeout": 60,
                "socket_timeout": 5,
                "socket_connect_timeout": 2,
                "global_keyprefix": settings.broker_key_prefix,
            },
        }
    return {
        "broker_url": url,
        "task_queues": lane_queues(queue_names),
        "task_default_exchange": EXCHANGE,
        "task_default_exchange_type": "topic",
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        # A publish returns once the broker has the message (and a quorum of its
        # replicas): what the outbox deletes is really on the broker.
        "broker_transport_options": {"confirm_publish": True},
        # Both sides send heartbeats: RabbitMQ closes the connection of a worker host that
        # vanished without a FIN after about two missed beats, and hands its unacknowledged
        # messages to the other consumers (the default, 120 s, is minutes of stuck work).
        "broker_heartbeat": settings.broker_heartbeat_seconds,
        # A killed worker's unacknowledged messages come back when its connection
        # closes; no visibility timeout is involved.
    }


def lane_of(routing_key: str | None) -> str | None:
    """The lane a delivered message came through: its routing key without the prefix
    RabbitMQ's delayed delivery adds (a retried message keeps it)."""
    if not routing_key:
        return None
    return _DELAY_PREFIX.sub("", routing_key, count=1)


def queue_depths(settings: Settings, names: list[str]) -> dict[str, int]:
    """Messages waiting in each queue; a queue the broker does not have yet counts 0."""
    url = broker_url(settings)
    if not is_amqp(url):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            prefix = settings.broker_key_prefix
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.llen(f"{prefix}{name}")
            return dict(zip(names, pipe.execute(), strict=True))
        finally:
            client.close()
    depths: dict[str, int] = {}
    with Connection(url, connect_timeout=2) as conn:
        for name in names:
            channel = conn.channel()
            try:
                depths[name] = channel.queue_declare(name, passive=True).message_count
            except conn.channel_errors:
                depths[name] = 0  # not declared yet: no worker has started for it
            finally:
                try:
                    channel.close()
                except Exception:  # closed by the broker after a 404
                    pass
    return depths
