"""The Celery side: one app, two queues, two task bodies that call the library.

The ``gpu`` queue runs training and prediction stages, the ``eval`` queue turns predictions into
metrics. Messages carry only a stage id; a duplicate delivery finds nothing to claim. Late acks and
``reject_on_worker_lost`` put the message of a killed worker back on the queue, and the reconciler
(beat, every 30 s) recovers what a queue lost. CUDA is only touched inside task bodies, that is in
the pool's child processes, never in the parent. A GPU worker's pool has ``XSTILTS_STAGES_PER_GPU``
processes sharing one GPU; each reserves its stage's memory before claiming it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import time
from functools import lru_cache
from typing import cast

from celery import Celery

from xstilts.config import Settings, get_settings
from xstilts.runtime.executors import execute_stage
from xstilts.runtime.gpu_budget import ADMISSION_WAIT_S, pool_size
from xstilts.runtime.scheduler import EVAL_QUEUE, GPU_QUEUE, reconcile
from xstilts.runtime.workspace import Workspace

log = logging.getLogger(__name__)

RUN_STAGE = "xstilts.run_stage"
RECONCILE = "xstilts.reconcile"
RECONCILE_EVERY_S = 30.0
GC = "xstilts.gc"
GC_EVERY_S = 6 * 3600.0  # artifacts no stage can use (xstilts.runtime.gc), as `xstilts gc` does


def make_celery(settings: Settings) -> Celery:
    app = Celery("xstilts", broker=settings.broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A GPU worker runs XSTILTS_STAGES_PER_GPU stages at once, one pool process each, as far
        # as its GPU's memory admits them (1 without a GPU); the eval worker's --concurrency wins.
        worker_concurrency=pool_size(settings),
        task_ignore_result=True,
        task_default_queue=GPU_QUEUE,
        task_routes={RECONCILE: {"queue": EVAL_QUEUE}, GC: {"queue": EVAL_QUEUE}},
        broker_connection_retry_on_startup=True,
        # A broker that is down fails a send within about a second (the API then leaves the stage
        # queued for the reconciler) instead of holding the request.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 0.5,
        },
        # Redis redelivers an unacked message after this; longer than any single stage may take
        # is wrong for long training, so redelivery is left to the lease-based reconciler instead.
        broker_transport_options={"visibility_timeout": 7 * 24 * 3600, "socket_connect_timeout": 3},
        beat_schedule={
            "reconcile": {"task": RECONCILE, "schedule": RECONCILE_EVERY_S},
            "gc": {"task": GC, "schedule": GC_EVERY_S},
        },
        worker_hijack_root_logger=False,
        # beat keeps its schedule state in a file; the code directory is read-only in the images.
        beat_schedule_filename=os.path.join(tempfile.gettempdir(), "xstilts-celerybeat-schedule"),
    )
    app.task(name=RUN_STAGE, bind=False)(run_stage_task)
    app.task(name=RECONCILE, bind=False)(reconcile_task)
    app.task(name=GC, bind=False)(gc_task)
    return app


class CeleryExecutor:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def send(self, stage_id: int, queue: str) -> None:
        self.app.send_task(RUN_STAGE, args=[stage_id], queue=queue)

    def in_flight(self) -> set[int] | None:
        """Stage ids whose message the broker still holds: waiting in a queue, or delivered to a
        worker and not yet acknowledged. None when the broker cannot be asked (then the
        reconciler re-sends what is due, as before)."""
        try:
            return redis_in_flight(self.app.conf.broker_url, (GPU_QUEUE, EVAL_QUEUE))
        except Exception as e:  # the broker is down or not Redis: say "unknown"
            log.warning("cannot list the broker's messages: %s: %s", type(e).__name__, e)
            return None


# kombu's Redis transport: a queue is a list (priority levels are lists named queue + "\x06\x16"
# + level), and a delivered message waits in the hash "unacked" until it is acknowledged, its
# delivery time in the sorted set "unacked_index".
_PRIORITY_SEP = "\x06\x16"
_UNACKED = "unacked"
_UNACKED_INDEX = "unacked_index"
# A delivered message whose stage is still queued is held by a worker for the admission wait at
# most (then it is sent again and acknowledged); one delivered longer ago than this belongs to a
# worker that died. Redis would give it back only after the 7-day visibility timeout.
UNACKED_HELD_S = 10 * ADMISSION_WAIT_S


def redis_in_flight(broker_url: str, queues: tuple[str, ...], now: float | None = None) -> set[int]:
    import redis

    client = redis.Redis.from_url(broker_url, socket_connect_timeout=3, socket_timeout=10)
    try:
        raw: list[bytes | str] = []
        for queue in queues:
            for key in [queue.encode(), *client.scan_iter(match=f"{queue}{_PRIORITY_SEP}*")]:
                raw += client.lrange(key, 0, -1)
        since = (time.time() if now is None else now) - UNACKED_HELD_S
        recent = cast(list[bytes], client.zrangebyscore(_UNACKED_INDEX, since, "+inf"))
        for entry in client.hmget(_UNACKED, recent) if recent else []:
            if entry is not None:  # acknowledged in the meantime
                message = json.loads(entry)[0]  # [message, exchange, routing key]
                raw.append(json.dumps(message).encode())
    finally:
        client.close()
    return {sid for item in raw if (sid := _stage_of(item)) is not None}


def _stage_of(raw: bytes | str) -> int | None:
    """The stage id a ``run_stage`` message carries (None for any other message)."""
    try:
        message = json.loads(raw)
        if message.get("headers", {}).get("task") != RUN_STAGE:
            return None
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        return int(args[0])
    except (ValueError, KeyError, TypeError, IndexError):
        return None


@lru_cache(maxsize=1)
def _runtime() -> tuple[Workspace, CeleryExecutor]:
    """The worker process's workspace and executor (built in the pool's child, lazily). A worker
    never migrates the database: the deployment's migrate job does, before workers start."""
    return Workspace(get_settings(), upgrade_embedded=False), CeleryExecutor(app)


def run_stage_task(stage_id: int) -> None:
    ws, executor = _runtime()
    execute_stage(ws, executor, stage_id)


def reconcile_task() -> None:
    ws, executor = _runtime()
    reconcile(ws.sessions, executor)


def gc_task() -> None:
    from xstilts.runtime.gc import collect_garbage

    ws, _ = _runtime()
    report = collect_garbage(
        ws.sessions,
        ws.store,
        dry_run=False,
        comparisons_max_age_days=ws.settings.comparisons_max_age_days,
        comparisons_max_mib=ws.settings.comparisons_max_mib,
    )
    log.info("gc freed %d bytes: %s", report.freed_bytes, dict(report.reasons))


app = make_celery(get_settings())
