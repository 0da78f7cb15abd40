"""Management commands for sessions: pause_all, resume_all, and the sessions table of status.

Happy paths run in-process with call_command (under `db`, so on_commit callbacks do not
run); failure paths run `manage.py` in a subprocess, as an operator would.
"""

import os
import subprocess
import sys
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from agents.states import Desired, Status
from sessions import broker
from sessions.models import TradingSession

ROOT = Path(__file__).resolve().parents[2]
DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_POSTGRES = "postgres://postgres@127.0.0.1:1/nope"
D = Decimal


def run(*args, **kwargs):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **kwargs)
    return out.getvalue()


@pytest.fixture
def make_session(make_agent):
    feed = make_agent("feed", symbols=["BTC-USD"])
    execution = make_agent("broker", kind="execution", role="execution", symbols=[], config={})
    execution.inputs_from.set([feed])
    decision = make_agent("decider", kind="decision", role="decision", symbols=["BTC-USD"], config={})

    def make(session_id, status=Status.READY, desired=Desired.STOPPED, **fields):
        return TradingSession.objects.create(
            session_id=session_id,
            name=session_id.title(),
            symbols=["BTC-USD"],
            decision_agent=decision,
            execution_agent=execution,
            starting_cash=D("10000"),
            status=status,
            desired_state=desired,
            **fields,
        )

    return make


@pytest.fixture
def sessions(make_session):
    make_session("alpha", Status.RUNNING, Desired.RUNNING, run_id="r1")
    make_session("beta", Status.RUNNING, Desired.RUNNING, run_id="r2")
    make_session("gamma", Status.PAUSED, Desired.PAUSED, run_id="r3")
    make_session("delta")


def desired():
    return dict(TradingSession.objects.values_list("session_id", "desired_state"))


def test_pause_all_pauses_the_running_sessions_and_prints_the_skipped_ones(sessions):
    output = run("pause_all")
    lines = output.splitlines()
    assert lines[0] == "paused 2: alpha, beta"
    assert "skipped gamma: Session gamma is already paused. You can resume or stop it." in lines
    assert (
        "skipped delta: Session delta is not running (ready). Only a running session can be paused." in lines
    )
    assert desired() == {"alpha": "paused", "beta": "paused", "gamma": "paused", "delta": "stopped"}


def test_resume_all_resumes_the_paused_sessions_and_prints_the_skipped_ones(sessions):
    output = run("resume_all")
    lines = output.splitlines()
    assert lines[0] == "resumed 1: gamma"
    assert {line.split(":")[0] for line in lines[1:]} == {"skipped alpha", "skipped beta", "skipped delta"}
    assert desired()["gamma"] == "running"


def test_pause_all_with_nothing_to_pause_says_so_and_succeeds(make_session):
    make_session("delta")
    output = run("pause_all")
    assert output.splitlines()[0] == "paused 0"
    assert desired() == {"delta": "stopped"}


def test_status_prints_a_second_table_of_the_sessions(make_session, make_agent):
    make_session("alpha", Status.RUNNING, Desired.RUNNING)
    make_session("broken", Status.ERROR, Desired.RUNNING, error_message="the decision agent vanished")
    order = broker.place_order("alpha", "BTC-USD", "buy", D("0.1"))
    broker.fill_market_order(order.pk, D("50000"))
    output = run("status")
    lines = output.splitlines()
    assert "sessions: 2 total, 1 running, 0 paused, 1 in error" in lines[0]
    assert "trades in 24 h: 1" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["AGENT"][0] == "AGENT" and "feed" in rows
    assert rows["SESSION"][:7] == ["SESSION", "STATUS", "WANTED", "EQUITY", "PNL", "PNL%", "TRADES"]
    assert rows["alpha"][1:3] == ["running", "running"]
    assert rows["alpha"][6] == "1"
    # 0.1 BTC for 5002.50 + 5.0025 fee (10 bps fee, 5 bps slippage), valued at 50000.
    assert rows["alpha"][3:5] == ["9992.4975", "-7.5025"]
    assert rows["broken"][1] == "error"
    assert "the decision agent vanished" in output


def test_status_without_sessions_prints_no_session_table(make_agent):
    make_agent("feed")
    assert "SESSION" not in run("status")


# --- failures, as an operator sees them (subprocess) ---------------------------------------------


def manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """The environment of a subprocess: its own migrated SQLite file and this run's Redis prefix."""
    folder = tmp_path_factory.mktemp("cli-sessions")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "REDIS_PREFIX": django_settings.REDIS_PREFIX,
        "LOG_DIR": str(folder / "logs"),
        "PYTHONUNBUFFERED": "1",
    }
    migrated = manage("migrate", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stderr
    return env


@pytest.mark.parametrize("command", ["pause_all", "resume_all"])
def test_commands_exit_non_zero_naming_redis_when_it_is_down(cli_env, command):
    result = manage(command, env={**cli_env, "REDIS_URL": DEAD_REDIS})
    assert result.returncode != 0
    assert f"Redis at {DEAD_REDIS} is unreachable" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["pause_all", "resume_all"])
def test_commands_exit_non_zero_naming_the_database_when_it_is_down(cli_env, command):
    result = manage(command, env={**cli_env, "DATABASE_URL": DEAD_POSTGRES})
    assert result.returncode != 0
    assert "The database is unreachable (postgresql)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["pause_all", "resume_all"])
def test_commands_succeed_in_a_subprocess_with_nothing_to_do(cli_env, command):
    result = manage(command, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "0"
