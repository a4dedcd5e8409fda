"""`connxt health worker`: the container health check of a worker (compose, Kubernetes).

A worker is healthy when a Celery node of this host answers a ping through the broker: the
process is alive, connected and its consumer responsive. Node names carry the lane and the
pid (``psp.paymaxis-1@host``), so the check matches on the host, which in a container or a
pod is the container's own.
"""

from __future__ import annotations

import socket


def worker_answers(timeout: float) -> bool:
    from workers.app import celery_app

    host = socket.gethostname()
    replies = celery_app.control.ping(timeout=timeout)
    return any(node.endswith(f"@{host}") for reply in replies for node in reply)
