"""The Celery app every Braid process shares, configured for production (see STACK_NOTES)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from kombu.entity import Exchange, Queue

from app._service import ServiceSpec
from app._settings import Settings

__all__ = ["create_celery", "visibility_timeout"]


def visibility_timeout(settings: Settings, specs: Sequence[ServiceSpec]) -> float:
    """Longer than the longest hard time limit, so a running task is never redelivered."""
    longest = max(s.timeout for s in specs) + settings.time_limit_grace_s
    return longest + settings.visibility_margin_s


class _Amqp(AMQP):  # type: ignore[misc]
    """Publishes without declaring the queue each time: Braid's queues are Redis lists
    that a push creates, reached through the default exchange, and Celery's declaration
    (retried, through ``Connection.ensure``) cost 7% of the API's CPU per job."""

    def _create_task_sender(self) -> Any:
        send = super()._create_task_sender()

        def send_task_message(producer: Any, name: str, message: Any, declare: Any = None,
                              **options: Any) -> Any:
            return send(producer, name, message, declare=[] if declare is None else declare,
                        **options)

        return send_task_message


def create_celery(settings: Settings, specs: Sequence[ServiceSpec]) -> Celery:
    """A Celery app that knows every queue in ``specs`` (the first spec takes ``celery.*``)."""
    app = Celery("braid", set_as_current=False, amqp=_Amqp)
    # the tasks whose messages a step's finish holds for its own worker (app._inline)
    app.braid_inline = frozenset(a.task_name for s in specs for a in s.apis.values() if a.inline)
    core = specs[0].queue
    app.conf.update(
        broker_url=settings.broker_url,
        # kombu's Redis transport and Celery's Redis backend, each with its hot path trimmed
        broker_transport="app._transport:Transport",
        result_backend=f"app._backend:Backend+{settings.broker_url}",
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        result_extended=True,
        task_track_started=True,
        worker_send_task_events=settings.task_events,
        task_send_sent_event=False,
        result_expires=settings.job_ttl_s,
        broker_transport_options={
            "visibility_timeout": visibility_timeout(settings, specs),
            "unacked_restore_interval": max(1, round(settings.restore_interval_s)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_proc_alive_timeout=settings.model_load_timeout_s,
        worker_hijack_root_logger=False,
        # runs only the tasks its worker serves; refused messages become dead letters
        worker_consumer="app._consumer:Consumer",
        task_queues=[Queue(s.queue, Exchange(s.queue, type="direct"), routing_key=s.queue)
                     for s in specs],
        task_default_queue=core,
        task_routes={
            "celery.*": {"queue": core},
            **{a.task_name: {"queue": s.queue} for s in specs for a in s.apis.values()},
        },
        task_create_missing_queues=False,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                                   "interval_max": 0.5},
    )
    return app
