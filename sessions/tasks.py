"""Celery entry point for session loops (thin: the loop lives in sessions.runtime)."""

from __future__ import annotations

from celery import shared_task

from sessions.runtime import SessionLoop


# Endless, acknowledged early and without time limits, like agents.tasks.run_agent.
@shared_task(name="sessions.tasks.run_session", acks_late=False, time_limit=None, soft_time_limit=None)
def run_session(session_id: str, run_id: str) -> str:
    return SessionLoop(session_id, run_id).run()
