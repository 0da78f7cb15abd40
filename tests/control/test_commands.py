"""Management commands (docs/api.md "Management commands").

Happy paths run in-process with call_command (under `db`, so on_commit tasks are not
sent); failure paths run `manage.py` in a subprocess, as an operator would.
"""

import os
import stat
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.models import Agent
from control.demo import DEMO_AGENTS

ROOT = Path(__file__).resolve().parents[2]
DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_POSTGRES = "postgres://postgres@127.0.0.1:1/nope"


def run(*args, **kwargs):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **kwargs)
    return out.getvalue()


# --- issue_token ----------------------------------------------------------------------------------


def test_issue_token_prints_the_token_alone_and_it_works_as_a_bearer(client, operator):
    output = run("issue_token", "operator")
    token = output.strip()
    assert output == f"{token}\n"
    assert " " not in token
    response = client.get("/api/agents", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200


def test_issue_token_for_an_unknown_user_fails_with_a_sentence(db):
    with pytest.raises(CommandError, match=r"There is no user named 'ghost'\."):
        run("issue_token", "ghost")


# --- seed_demo --------------------------------------------------------------------------------------


def test_seed_demo_creates_the_demo_agents(db):
    run("seed_demo")
    assert set(Agent.objects.values_list("agent_id", flat=True)) == {a["agent_id"] for a in DEMO_AGENTS}


def test_seed_demo_is_idempotent_and_keeps_the_state_of_existing_agents(db):
    run("seed_demo")
    agent_id = DEMO_AGENTS[0]["agent_id"]
    Agent.objects.filter(pk=agent_id).update(desired_state="running", status="running", name="Renamed")
    output = run("seed_demo")
    assert "already present" in output
    assert Agent.objects.count() == len(DEMO_AGENTS)
    agent = Agent.objects.get(pk=agent_id)
    assert (agent.desired_state, agent.status, agent.name) == ("running", "running", "Renamed")


def test_seed_demo_admin_creates_a_superuser_with_a_private_password_file(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    output = run("seed_demo", "--admin")
    path = tmp_path / "admin-password"
    assert str(path) in output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    user = authenticate(username="admin", password=path.read_text().strip())
    assert user is not None and user.is_superuser


def test_seed_demo_admin_leaves_an_existing_admin_alone(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    run("seed_demo", "--admin")
    password = (tmp_path / "admin-password").read_text()
    output = run("seed_demo", "--admin")
    assert "exists" in output
    assert (tmp_path / "admin-password").read_text() == password
    assert get_user_model().objects.filter(username="admin").count() == 1


# --- status -----------------------------------------------------------------------------------------


def test_status_prints_a_table_of_the_agents_and_their_statuses(make_agent):
    make_agent("feed", desired_state="running", status="running")
    make_agent("other")
    output = run("status")
    rows = {r.split()[0]: r.split() for r in output.splitlines()[1:]}
    assert rows["AGENT"][:5] == ["AGENT", "KIND", "ROLE", "STATUS", "WANTED"]
    assert rows["feed"][3:5] == ["running", "running"]
    assert rows["other"][3:5] == ["stopped", "stopped"]
    assert output.splitlines()[0].startswith("system: partial")


# --- start_all / stop_all ------------------------------------------------------------------------------


def test_start_all_asks_every_enabled_agent_to_run(make_agent):
    make_agent("feed")
    make_agent("other")
    make_agent("spare", enabled=False)
    output = run("start_all")
    assert "started 2" in output
    desired = dict(Agent.objects.values_list("agent_id", "desired_state"))
    assert desired == {"feed": "running", "other": "running", "spare": "stopped"}


def test_stop_all_after_start_all_asks_every_agent_to_stop(make_agent):
    make_agent("feed")
    make_agent("other")
    run("start_all")
    output = run("stop_all")
    assert "stopping 2" in output
    assert set(Agent.objects.values_list("desired_state", flat=True)) == {"stopped"}
    assert set(Agent.objects.values_list("status", flat=True)) == {"stopping"}


def test_stop_all_with_nothing_running_fails_with_the_409_sentence(make_agent):
    make_agent("feed")
    with pytest.raises(CommandError, match=r"The system is already stopped\."):
        run("stop_all")


def test_start_all_with_everything_running_fails_with_the_409_sentence(make_agent):
    make_agent("feed", desired_state="running", status="running")
    with pytest.raises(CommandError, match=r"already running"):
        run("start_all")


# --- failures, as an operator sees them (subprocess) ---------------------------------------------------


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
    folder = tmp_path_factory.mktemp("cli")
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


@pytest.mark.parametrize("command", ["start_all", "stop_all", "restore", "status"])
def test_commands_exit_non_zero_naming_redis_when_it_is_down(cli_env, command):
    result = manage(command, env={**cli_env, "REDIS_URL": DEAD_REDIS})
    assert result.returncode != 0
    assert f"Redis at {DEAD_REDIS} is unreachable" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["start_all", "stop_all", "restore", "status", "seed_demo"])
def test_commands_exit_non_zero_naming_the_database_when_it_is_down(cli_env, command):
    result = manage(command, env={**cli_env, "DATABASE_URL": DEAD_POSTGRES})
    assert result.returncode != 0
    assert "The database is unreachable (postgresql)" in result.stderr
    assert "Traceback" not in result.stderr


def test_issue_token_for_an_unknown_user_exits_non_zero(cli_env):
    result = manage("issue_token", "ghost", env=cli_env)
    assert result.returncode != 0
    assert "There is no user named 'ghost'." in result.stderr
    assert result.stdout == ""


def test_status_says_which_loops_are_stale_or_wait_for_the_database(make_agent, redis_client):
    import time

    from agents.runtime import keys

    make_agent("frozen", desired_state="running", status="running")
    make_agent("waiting", desired_state="running", status="running")
    redis_client.set(keys.heartbeat("agent", "frozen"), str(time.time() - 100))
    redis_client.set(keys.heartbeat("agent", "waiting"), str(time.time()))
    since = time.time() - 12
    wait = {"waiting_for": "database", "waiting_since": since}
    redis_client.hset(keys.metrics("agent", "waiting"), mapping=wait)
    output = run("status")
    lines = {line.split()[0]: line for line in output.splitlines()[1:]}
    assert "stale: no heartbeat for 10" in lines["frozen"]
    assert "waiting for the database for 12 s" in lines["waiting"]
