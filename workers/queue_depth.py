"""Messages waiting in each worker queue, read from the broker (Redis lists).

One reading for every process that shows it: the API's /metrics and the console's PSP
health page.
"""

from __future__ import annotations

from connectors.registry import all_connectors
from connxt import tasks
from connxt.redis import get_redis
from connxt.settings import get_settings


def queue_depths() -> dict[str, int]:
    """``{queue: messages waiting}`` for every lane, in one round trip; raises
    redis.RedisError when the broker does not answer."""
    prefix = get_settings().broker_key_prefix
    queues = tasks.all_queues(list(all_connectors()))
    with get_redis().pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(f"{prefix}{queue}")
        return dict(zip(queues, pipe.execute(), strict=True))
