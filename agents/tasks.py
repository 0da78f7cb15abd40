"""Celery entry points for agent loops (thin: the loop lives in agents.runtime)."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down

from agents.runtime import loop, worker_heartbeat
from agents.runtime.agent_loop import AgentLoop


# Endless by design: exempt from the global time limits (a loop runs until stopped), and
# acknowledged on receipt (acks_late=False) so a loop longer than the broker's visibility
# timeout is never delivered twice; the reconciler restarts loops that are lost.
@shared_task(name="agents.tasks.run_agent", acks_late=False, time_limit=None, soft_time_limit=None)
def run_agent(agent_id: str, run_id: str) -> str:
    return AgentLoop(agent_id, run_id).run()


@worker_ready.connect
def _start_worker_heartbeat(sender=None, **_kwargs) -> None:
    hostname = sender.hostname if sender is not None else "worker"
    worker_heartbeat.start(hostname, worker_heartbeat.queues_of(sender))


@worker_shutting_down.connect
def _stop_loops(**_kwargs) -> None:
    loop.shutdown.set()
    loop.wake_all_in_process()
    worker_heartbeat.stop()
