"""The shared loop runs any RunnableState model, not only agents (sessions subclass it)."""

import threading

from django.db import connection

from agents.runtime import lifecycle
from agents.runtime.loop import Loop
from agents.states import Desired, Status
from sessions.models import TradingSession
from tests.conftest import wait_for


class CountingSessionLoop(Loop):
    kind = "session"
    model = TradingSession

    def setup(self, row) -> None:
        self.steps = 0

    def step(self) -> dict[str, int]:
        self.steps += 1
        return {}


def test_the_base_loop_runs_a_session_row_and_stops_it(make_session, transactional_db):
    session = make_session("generic")
    TradingSession.objects.filter(pk=session.pk).update(
        desired_state=Desired.RUNNING, status=Status.STARTING, run_id="run-1"
    )
    lifecycle.write_flags("session", session.pk, Desired.RUNNING, "run-1")
    loop = CountingSessionLoop(session.pk, "run-1")
    outcome: dict = {}

    def target():
        outcome["reason"] = loop.run()
        connection.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_for(lambda: TradingSession.objects.get(pk=session.pk).status == Status.RUNNING)
    wait_for(lambda: TradingSession.objects.get(pk=session.pk).last_heartbeat is not None)
    TradingSession.objects.filter(pk=session.pk).update(desired_state=Desired.STOPPED)
    lifecycle.write_flags("session", session.pk, Desired.STOPPED, "run-1")
    thread.join(timeout=10)
    assert outcome["reason"] == "stop requested"
    assert loop.steps >= 1
    assert TradingSession.objects.get(pk=session.pk).status == Status.STOPPED
