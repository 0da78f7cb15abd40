"""The loop every runnable shares: lease, heartbeat, stop/pause handling, fencing.

One incarnation = one `run_id`. The loop:
* takes the Redis lease (waiting out an older incarnation's lease), so at most one
  loop per runnable is live;
* every iteration renews the lease, heartbeats and reads its flags in one round trip
  (`Lease.tick`), and falls back to the database when the flags are missing;
* steps when the tick is due and otherwise waits on its wake-up (agents.runtime.wakeups),
  so a stop or pause takes effect in milliseconds, not at the next tick;
* writes status only with `WHERE run_id = <its run_id>`; a superseded loop exits
  without writing anything;
* waits out an outage of the database or Redis (agents.runtime.outage): it retries with
  backoff, shows what it waits for in its live metrics, and carries on by itself; only a
  real error puts it in `error`. Time a step spends waiting on the database does not
  count toward its step timeout, and while a call to the database has not returned the
  watchdog's thread keeps the loop's lease and heartbeat alive.

Subclasses (agents here, sessions in their app) say how to load their row, build the
thing that steps, and what to do on pause.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import redis
from django.conf import settings
from django.db import close_old_connections, connection, connections, models, transaction

from agents.runtime import heartbeats, keys, lifecycle, wakeups, watchdog
from agents.runtime.lease import Fenced, Lease
from agents.runtime.outage import DATABASE, Outage, outage_of
from agents.runtime.redis import get_redis
from agents.states import Desired, Status

log = logging.getLogger(__name__)

# Set when the worker process shuts down (celery signal in agents.tasks): every loop in
# the process ends its run cleanly so a warm shutdown does not wait forever.
shutdown = threading.Event()


def wake_all_in_process() -> None:
    """Wake every loop running in this process (used at worker shutdown)."""
    wakeups.wake_local()


@dataclass
class Control:
    """What the loop must do now, read from the flags or the database."""

    desired: str
    run_id: str
    config_rev: str = ""


class Superseded(Exception):
    """The database names another run_id (or the row is gone)."""


STOPPED_WHILE_WAITING = "stopped while waiting for the lease"

# A call to the database that has not returned after this long is waiting for it (a lock,
# a restart): the watchdog's thread then shows the wait and keeps the loop's lease alive.
DB_WAIT_NOTICE_SECONDS = 1.0


class Loop:
    kind: ClassVar[str]
    model: ClassVar[type[models.Model]]

    def __init__(self, rid: str, run_id: str) -> None:
        self.rid = rid
        self.run_id = run_id
        # The lease token names this loop instance, not just its run: two deliveries of
        # the same task are two instances, and only one may hold the lease.
        self.token = f"{run_id}:{uuid.uuid4().hex[:12]}"
        self.wakeup = threading.Event()  # replaced by a registered one in run()
        self.client = get_redis()
        # Its length is set once the tick is known (run); its publish is how the writes to
        # Redis only the holder may make (streams of messages, orders) are made.
        self.lease = Lease(self.client, keys.lease(self.kind, rid), self.token, 0)
        self.tick_seconds = 1.0
        self.paused = False
        self._pending_incr: dict[str, int] = {}
        self._gauges: dict[str, Any] = {}
        # Set by the heartbeat writer when the row names another run: stop at once.
        self.db_superseded = False
        self._config_rev = ""
        self.step_timeout = settings.STEP_TIMEOUT_SECONDS
        self._step_started: float | None = None
        # Set by the watchdog when a step overran: from then on the loop writes nothing.
        self.abandoned = False
        self._fence_lock = threading.Lock()
        # Time the current step spent in database calls, and when the call under way
        # began (monotonic; None outside a call): waits on the database are not the step's.
        self._db_spent = 0.0
        self._db_since: float | None = None
        self._last_keepalive = 0.0
        self.outage: Outage | None = None  # built in run(), once logger() is ready

    # --- what subclasses provide ---------------------------------------------------

    def setup(self, row: models.Model) -> None:
        """Build whatever steps, from the row; set `self.tick_seconds`."""
        raise NotImplementedError

    def step(self) -> dict[str, int]:
        """One unit of work; returns counters to add to the metrics."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Release what `setup` built."""

    def on_paused_changed(self, paused: bool) -> None:
        """Called when the loop enters or leaves pause (sessions act on it)."""

    def reload(self, row: models.Model) -> None:
        """The config changed while running; default: rebuild."""
        self.teardown()
        self.setup(row)

    def flush(self) -> None:
        """Write buffered side data (log rows) with the database heartbeat (any thread)."""

    def tick_for(self, row: models.Model) -> float:
        """Seconds between steps, read before setup (the lease length depends on it)."""
        return 1.0

    def step_timeout_for(self, row: models.Model) -> float:
        """Seconds a step may run before the watchdog abandons it."""
        return settings.STEP_TIMEOUT_SECONDS

    def config_rev(self, row: models.Model) -> str:
        """A value that changes when the row's config does ("" = never reload)."""
        return ""

    def heartbeat_fields(self) -> dict[str, Any]:
        """Extra columns to write with the database heartbeat ("metrics" is merged with
        the live counters). Called from the heartbeat writer's thread: read, never mutate."""
        return {}

    def status_fields(self, status: str) -> dict[str, Any]:
        """Extra columns to write with a status change (sessions stamp started/paused/stopped)."""
        return {}

    def on_stop(self) -> None:
        """A stop was requested; the last work before the loop ends (sessions flatten)."""

    def logger(self) -> logging.Logger:
        return log

    # --- the loop ------------------------------------------------------------------

    @property
    def lease_ms(self) -> int:
        # Long enough to survive a tick plus a slow step, short enough that a crashed
        # loop is replaced within seconds; longer than the step timeout, so a hung step
        # is the watchdog's to report, not a takeover's.
        seconds = max(2 * self.tick_seconds + settings.LEASE_EXTRA_SECONDS, self.step_timeout + 2)
        return int(seconds * 1000)

    def run(self) -> str:
        """Run until stopped, superseded or failed; returns why it ended."""
        self.wakeup = wakeups.register(self.kind, self.rid)
        self.outage = Outage(self.logger())
        self._gauges.update(self.outage.gauges())
        try:
            # Every query of this thread is timed: a wait on the database is an outage.
            with connection.execute_wrapper(self._timed_query):
                return self._run()
        finally:
            wakeups.unregister(self.kind, self.rid, self.wakeup)

    def _run(self) -> str:
        close_old_connections()
        try:
            row = self._through_outages(self._load)
        except Superseded as exc:
            return f"not started: {exc}"
        if row is None or row.run_id != self.run_id:
            return "superseded before start"
        if row.desired_state == Desired.STOPPED:
            self._through_outages(lambda: self._set_status(Status.STOPPED))
            return "stopped before start"
        # A session paused before this incarnation (a restart, a relaunch, a start of a
        # paused session) starts paused: only an explicit resume makes it trade.
        self.paused = row.desired_state == Desired.PAUSED
        self.tick_seconds = self.tick_for(row)
        self.step_timeout = self.step_timeout_for(row)
        lease = self.lease
        lease.ttl_ms = self.lease_ms
        try:
            self._through_outages(lambda: self._take_lease(lease))
        except Superseded as exc:
            if str(exc) == STOPPED_WHILE_WAITING:
                self._through_outages(lambda: self._set_status(Status.STOPPED))
            return f"not started: {exc}"
        except TimeoutError as exc:
            message = str(exc)
            self._through_outages(lambda: self._set_status(Status.ERROR, message))
            return "lease not available"

        watchdog.watch(self)
        reason = "stopped"
        try:
            self._through_outages(lambda: self._start(row))
            self.logger().info("started (run %s, tick %.2fs)", self.run_id[:8], self.tick_seconds)
            heartbeats.register(self)
            reason = self._iterate(lease)
            self.logger().info("stopped: %s", reason)
            self._through_outages(lambda: self._set_status(Status.STOPPED, ""))
        except Fenced as exc:
            reason = f"fenced: {exc}"
            self.logger().warning("superseded; exiting without writing (%s)", exc)
        except Superseded as exc:  # the worker shut down while the database was away
            reason = str(exc)
            self.logger().warning("ended without writing its status (%s)", exc)
        except Exception as exc:  # a failing step must not take the worker down
            if self.abandoned:
                reason = f"abandoned, then failed: {exc}"
            else:
                reason = f"error: {exc}"
                self.logger().exception("failed: %s", exc)
                message = f"{type(exc).__name__}: {exc}"
                self._through_outages(lambda: self._set_status(Status.ERROR, message))
        finally:
            heartbeats.unregister(self)
            watchdog.unwatch(self)
            try:
                self.teardown()
            finally:
                self._safe_flush()
                self._release()
        return reason

    def _start(self, row: models.Model) -> None:
        """Build what steps and say so (again from the top after an outage)."""
        self.teardown()
        self.setup(row)
        self._config_rev = self.config_rev(row)
        if not self._set_status(Status.PAUSED if self.paused else Status.RUNNING, ""):
            raise Fenced("superseded before running")

    def _take_lease(self, lease: Lease) -> None:
        # An older incarnation (crashed, or still stopping) may hold the lease until it
        # expires; wait for it, but give up if this incarnation is itself superseded.
        deadline = time.monotonic() + lease.ttl_ms / 1000 + 5
        while not lease.acquire():
            holder = lease.holder() or ""
            if holder.split(":")[0] == self.run_id:
                # A second delivery of this same run (broker redelivery): the first one
                # is live, so this one must not become a twin.
                raise Superseded("a loop of this run already holds the lease")
            if time.monotonic() > deadline:
                raise TimeoutError(f"another loop still holds the lease (run {lease.holder()})")
            if shutdown.is_set():
                raise Superseded("worker shutting down")
            control = self._control_from_db()
            if control.run_id != self.run_id:
                raise Superseded(f"run {control.run_id[:8]} is current")
            if control.desired == Desired.STOPPED:
                raise Superseded(STOPPED_WHILE_WAITING)
            self.wait(0.5)

    def _iterate(self, lease: Lease) -> str:
        next_step = time.monotonic()
        while True:
            close_old_connections()
            try:
                next_step, reason = self._one_iteration(lease, next_step)
            except Exception as exc:
                # The database or Redis is away (locked, restarting, unreachable): keep
                # the loop (and its place) and retry; when Redis is back the lease is
                # re-taken (see _tick). Any other exception is a real error.
                if not self._wait_out(exc):
                    raise
                if shutdown.is_set():
                    return "worker shutting down"
                continue
            self._recovered()
            if reason:
                return reason

    def _through_outages(self, action):
        """`action()`, retried with backoff while the database or Redis is away; raises
        Superseded if the worker shuts down meanwhile."""
        while True:
            try:
                result = action()
            except Exception as exc:
                if not self._wait_out(exc):
                    raise
                if shutdown.is_set():
                    raise Superseded("worker shutting down") from exc
                continue
            self._recovered()
            return result

    def _wait_out(self, exc: Exception) -> bool:
        """If `exc` is an outage, note it, keep the lease and wait the backoff; True then."""
        what = outage_of(exc)
        if what is None or self.outage is None:
            return False
        delay = self.outage.failed(what, exc)
        self._gauges.update(self.outage.gauges())
        if what == DATABASE:
            # A broken connection is not reused: the next query connects afresh.
            connections.close_all()
        self.keepalive()
        self.wait(delay)  # a stop or a shutdown ends the wait early
        return True

    def _recovered(self) -> None:
        if self.outage is not None and self.outage.what is not None:
            self.outage.recovered()
            self._gauges.update(self.outage.gauges())

    def _one_iteration(self, lease: Lease, next_step: float) -> tuple[float, str]:
        """Check state, step if the tick is due, wait; returns (next_step, exit reason or "")."""
        if self.abandoned:
            raise Fenced("abandoned by the watchdog")
        if self.db_superseded:
            raise Fenced("database names another run")
        control = self._tick(lease)
        if control.run_id != self.run_id:
            raise Fenced(f"run {control.run_id[:8]} is now current")
        if shutdown.is_set():
            return next_step, "worker shutting down"
        if control.desired == Desired.STOPPED:
            self.on_stop()
            return next_step, "stop requested"
        paused = control.desired == Desired.PAUSED
        if paused != self.paused:
            # Noted only once done, so an outage half-way repeats it at the next try.
            self._set_status(Status.PAUSED if paused else Status.RUNNING)
            self.on_paused_changed(paused)
            self.paused = paused
        if control.config_rev and control.config_rev != self._config_rev:
            self._reload()
        now = time.monotonic()
        if now >= next_step:
            # How late this tick starts against its schedule: what capacity costs.
            self._gauges["tick_lag_ms"] = round((now - next_step) * 1000, 3)
            started = time.perf_counter()
            self._db_spent = 0.0
            self._step_started = now
            try:
                counters = self.step()
            finally:
                self._step_started = None
            if self.abandoned:
                raise Fenced("step returned after the watchdog abandoned it")
            elapsed_ms = (time.perf_counter() - started) * 1000
            self._count({"steps": 1, **counters})
            self._gauges["last_step_ms"] = round(elapsed_ms, 3)
            self._gauges["last_active"] = time.time()
            # Do not burst to catch up after a slow step: the next tick is a full
            # tick after the late one.
            next_step = max(next_step + self.tick_seconds, now)
        wait = next_step - time.monotonic()
        if wait > 0:
            self.wait(wait)
        return next_step, ""

    def wait(self, seconds: float) -> None:
        """Until a wake-up (a state change, shutdown) or `seconds`, whichever comes first."""
        self.wakeup.wait(seconds)
        self.wakeup.clear()

    def _tick(self, lease: Lease) -> Control:
        incr, self._pending_incr = self._pending_incr, {}
        try:
            mirrored = lease.tick(
                keys.heartbeat(self.kind, self.rid),
                keys.metrics(self.kind, self.rid),
                keys.flags(self.kind, self.rid),
                now=time.time(),
                heartbeat_ttl_s=int(settings.HEARTBEAT_STALE_SECONDS * 4),
                incr=incr,
                gauges=self._gauges,
            )
        except Fenced:
            # Redis may have restarted or been flushed (the lease is simply gone): take
            # the lease again if the database still names this run; else we are fenced.
            with self._fence_lock:
                if (
                    not self.abandoned
                    and lease.holder() is None
                    and self._control_from_db().run_id == self.run_id
                    and lease.acquire()
                ):
                    self.logger().warning("lease was lost (Redis restarted?); re-acquired")
                    self._pending_incr = incr
                    return self._tick(lease)
            raise
        if "desired" not in mirrored:
            # Redis lost the flags: the database decides. A paused session must never
            # resume because a key went missing.
            return self._control_from_db()
        return Control(mirrored["desired"], mirrored.get("run_id", ""), mirrored.get("config_rev", ""))

    def _reload(self) -> None:
        row = self._load()
        if row is None:
            raise Fenced("row deleted")
        self.tick_seconds = self.tick_for(row)
        self.reload(row)
        self._config_rev = self.config_rev(row)
        self.logger().info("config reloaded")

    def _count(self, counters: dict[str, int]) -> None:
        for k, v in counters.items():
            self._pending_incr[k] = self._pending_incr.get(k, 0) + int(v)

    def _safe_flush(self) -> None:
        try:
            self.flush()
        except Exception:  # log rows are best effort; never kill the loop over them
            log.exception("could not flush log entries")

    # --- the watchdog (agents.runtime.watchdog) --------------------------------------

    def step_overdue(self, now: float) -> float | None:
        """Seconds the step has run, less its waits on the database, once past the limit."""
        started = self._step_started
        if started is None or self.abandoned:
            return None
        since = self._db_since
        ran = now - started - self._db_spent - (now - since if since is not None else 0.0)
        return ran if ran > self.step_timeout else None

    def waiting_on_database(self, now: float) -> bool:
        """Called by the watchdog's thread: when a call to the database has not returned
        for a while, show the wait and keep the lease and heartbeat alive for the loop,
        whose own thread is blocked in that call. True while it waits."""
        since = self._db_since
        if since is None or now - since < DB_WAIT_NOTICE_SECONDS or self.outage is None:
            return False
        self.outage.noticed(DATABASE, time.time() - (now - since))
        if now - self._last_keepalive >= 1.0:
            self._last_keepalive = now
            self.keepalive()
        return True

    def keepalive(self) -> None:
        """Renew the lease and the Redis heartbeat, with the outage gauges, from any thread
        (a loop held up by an outage is alive, not lost)."""
        gauges = self.outage.gauges() if self.outage is not None else {}
        try:
            self.lease.tick(
                keys.heartbeat(self.kind, self.rid),
                keys.metrics(self.kind, self.rid),
                keys.flags(self.kind, self.rid),
                now=time.time(),
                heartbeat_ttl_s=int(settings.HEARTBEAT_STALE_SECONDS * 4),
                incr={},
                gauges=gauges,
            )
        except (Fenced, redis.RedisError):
            pass  # the loop's own next tick finds out

    def _timed_query(self, execute, sql, params, many, context):
        """Django's execute wrapper on the loop's thread: how long each query waited."""
        started = time.monotonic()
        self._db_since = started
        try:
            return execute(sql, params, many, context)
        finally:
            self._db_since = None
            self._db_spent += time.monotonic() - started

    def abandon(self, ran_for: float) -> None:
        """The step overran: error with the reason, and free the lease for a restart."""
        with self._fence_lock:
            self.abandoned = True
        heartbeats.unregister(self)
        message = f"step timed out after {ran_for:.1f} s (limit {self.step_timeout:g} s); abandoned"
        self.logger().error(message)
        # The lease first: whoever reads "error" may restart at once.
        self._release()
        self._set_status(Status.ERROR, message)

    def _release(self) -> None:
        """Give the lease up and say so, so a loop waiting for it starts now, not at its
        next look. Its heartbeat goes with it: a loop that ended is not stale
        (agents.runtime.staleness), one that stopped ticking without ending is."""
        try:
            self.lease.release(keys.heartbeat(self.kind, self.rid))
            lifecycle.wake(self.kind, self.rid, self.client)
        except redis.RedisError:
            pass  # it expires on its own

    # --- database ------------------------------------------------------------------

    @contextmanager
    def as_current_run(self) -> Iterator[None]:
        """A transaction in which the database still names this loop's run, its row locked
        until the commit; raises Fenced otherwise. Around the writes a superseded loop must
        never make (orders, equity points)."""
        with transaction.atomic():
            rows = self.model.objects.select_for_update().filter(pk=self.rid, run_id=self.run_id)
            if not rows.exists():
                raise Fenced("the database names another run")
            yield

    def _load(self):
        return self.model.objects.filter(pk=self.rid).first()

    def _control_from_db(self) -> Control:
        row = self.model.objects.filter(pk=self.rid).values("desired_state", "run_id").first()
        if row is None:
            raise Fenced("row deleted")
        return Control(row["desired_state"], row["run_id"])

    def _set_status(self, status: str, error: str | None = None) -> bool:
        """Write the observed status, only while this run is current (agents.runtime.lifecycle)."""
        return lifecycle.loop_status(
            self.model,
            self.rid,
            self.run_id,
            status,
            error,
            self.status_fields(status),
            kind=self.kind,
            client=self.client,
        )
