"""The broker's part of the Celery configuration (connxt.broker), without a broker."""

from __future__ import annotations

from celery import Celery
from kombu.transport.native_delayed_delivery import calculate_routing_key

from connxt import tasks
from connxt.broker import broker_url, celery_config, is_amqp, lane_of
from connxt.settings import Settings

LANES = tasks.all_queues(["Paymaxis", "Sticpay"])


def test_unset_broker_url_is_redis_with_the_key_prefix():
    settings = Settings(redis_url="redis://127.0.0.1:6379/3", broker_key_prefix="acme:")
    config = celery_config(settings, LANES)
    assert broker_url(settings) == "redis://127.0.0.1:6379/3" == config["broker_url"]
    assert config["broker_transport_options"]["global_keyprefix"] == "acme:"
    assert "task_queues" not in config


def test_rabbitmq_lanes_are_durable_quorum_queues_with_publisher_confirms():
    settings = Settings(broker_url="amqp://guest:guest@rabbit:5672/connxt")
    assert is_amqp(broker_url(settings))
    config = celery_config(settings, LANES)
    assert config["broker_transport_options"] == {"confirm_publish": True}
    queues = {q.name: q for q in config["task_queues"]}
    assert set(queues) == set(LANES) and "psp.paymaxis" in queues
    for name, queue in queues.items():
        assert queue.durable and queue.queue_arguments == {"x-queue-type": "quorum"}
        # Native delayed delivery needs a topic exchange to bring a countdown back.
        assert queue.exchange.type == "topic" and queue.routing_key == name


def test_a_retry_goes_back_to_the_lane_it_came_from():
    """A retried message arrives with the delayed-delivery prefix on its routing key; the
    retry names the lane, and Celery routes it there rather than to the task's default."""
    delayed = calculate_routing_key(3, "psp.paymaxis")
    assert delayed.endswith(".psp.paymaxis") and delayed != "psp.paymaxis"
    assert lane_of(delayed) == "psp.paymaxis" == lane_of("psp.paymaxis")
    assert lane_of(None) is None

    app = Celery("probe")
    app.conf.update(
        celery_config(Settings(broker_url="amqp://guest:guest@rabbit:5672/x"), LANES),
        task_routes={tasks.INITIATE: {"queue": tasks.ANY_PSP_QUEUE}},
    )
    routed = app.amqp.router.route({"queue": lane_of(delayed)}, tasks.INITIATE)
    assert routed["queue"].name == "psp.paymaxis"
    assert routed["queue"].routing_key == "psp.paymaxis"
    # Without the lane named, the task's default route would win: the shared lane.
    assert app.amqp.router.route({}, tasks.INITIATE)["queue"].name == tasks.ANY_PSP_QUEUE
