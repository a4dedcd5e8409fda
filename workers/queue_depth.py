"""Messages waiting in each worker queue, read from the broker (Redis or RabbitMQ).

One reading for every process that shows it: the API's, the worker's and beat's
/metrics, and the console's PSP health page.
"""

from __future__ import annotations

from connectors.registry import all_connectors
from connxt import broker, tasks
from connxt.settings import get_settings


def queue_depths() -> dict[str, int]:
    """``{queue: messages waiting}`` for every lane; raises when the broker does not
    answer (a redis or kombu/amqp error, or an OSError)."""
    return broker.queue_depths(get_settings(), tasks.all_queues(list(all_connectors())))
