"""The connectors of this process, found through the ``connxt.connectors`` entry point group.

Third-party packages register a connector class the same way the built-ins do in
pyproject.toml. One instance per class per process, so each owns one pooled client.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

import structlog

from connectors.base import Connector
from connxt import broker, tasks
from connxt.settings import get_settings

log = structlog.get_logger()

GROUP = "connxt.connectors"


def _builtins() -> list[type]:
    from connectors.paymaxis import PaymaxisConnector
    from connectors.sticpay import SticpayConnector

    return [PaymaxisConnector, SticpayConnector]


@cache
def all_connectors() -> dict[str, Connector]:
    """Every registered connector by its flow target name (e.g. ``"Paymaxis"``)."""
    classes: list[type] = []
    for entry_point in entry_points(group=GROUP):
        # A broken plugin fails loudly here rather than vanishing from the catalog.
        classes.append(entry_point.load())
    # From a source tree without the installed distribution there are no entry points.
    classes += [cls for cls in _builtins() if cls not in classes]

    found: dict[str, Connector] = {}
    for cls in classes:
        connector = cls()
        if not isinstance(connector, Connector):
            raise TypeError(f"{cls.__module__}.{cls.__qualname__} is not a Connector")
        if connector.name in found:
            if type(found[connector.name]) is not cls:
                raise ValueError(f"two connectors are named {connector.name!r}")
            continue
        found[connector.name] = connector
    log.debug("connectors.registry.loaded", names=sorted(found))
    return found


def get_connector(name: str) -> Connector:
    """The connector named ``name``; KeyError when none is registered."""
    connectors = all_connectors()
    if name not in connectors:
        raise KeyError(f"no connector named {name!r}")
    return connectors[name]


def lane_queues() -> list[str]:
    """Every worker queue: one per connector's PSP lane, then the shared ones."""
    return tasks.all_queues(list(all_connectors()))


def queue_depths() -> dict[str, int]:
    """``{queue: messages waiting}`` for every lane, read from the broker (Redis or
    RabbitMQ): one reading for the API's, the workers' and beat's /metrics and the console's
    PSP health page. Raises when the broker does not answer (a redis or kombu/amqp error,
    or an OSError)."""
    return broker.queue_depths(get_settings(), lane_queues())
