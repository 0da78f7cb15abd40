"""The loop of one agent: builds its kind and steps it."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import redis

from agents.kinds import get_kind, validate_config
from agents.kinds.base import AgentKind, StepContext
from agents.models import Agent
from agents.runtime import keys
from agents.runtime.bus import InputMessage, InputReader, edge_counts, newest_messages
from agents.runtime.logs import agent_logger, flush_log_entries
from agents.runtime.loop import Loop

# Streams are capped (approximately) so Redis memory stays bounded.
STREAM_MAXLEN = 10_000
SUMMARY_EVERY_SECONDS = 10.0
# Gauges a kind may report (StepResult.gauges) that the card shows: cleared when a kind is
# set up, so a note of the last config or run (an exchange feed's degraded state) does
# not outlive it.
KIND_GAUGES = ("degraded", "degraded_since", "last_price_at")


class AgentLoop(Loop):
    kind = "agent"
    model = Agent

    def __init__(self, rid: str, run_id: str) -> None:
        super().__init__(rid, run_id)
        self.worker: AgentKind | None = None
        self._log = agent_logger(rid)
        self._stream = keys.stream(self.kind, rid)
        self._last_summary = float("-inf")
        self._reader: InputReader | None = None
        self._edge_counts: dict[str, int] = {}
        self._steps = 0

    def logger(self) -> logging.Logger:
        return self._log

    def setup(self, row: Agent) -> None:
        # Also the reload (Loop.reload: teardown, then setup from the row read again) when
        # config_version moves: kind, config, symbols and inputs are all read here, and
        # the input cursors stay in Redis, so an edit applies in the same run.
        kind = get_kind(row.kind)
        config = validate_config(row.kind, row.config)
        self.tick_seconds = config.tick_seconds
        inputs = sorted(row.inputs_from.values_list("agent_id", flat=True))
        self._reader = InputReader(self.client, row.agent_id, inputs)
        ctx = StepContext(
            agent_id=row.agent_id,
            symbols=list(row.symbols or []),
            publish=self._publish,
            last_published=self._last_published,
            recent_published=self._recent_published,
            log=self._log,
            read_inputs=self._read_inputs,
            inputs=inputs,
            current_run=self.as_current_run,
            report_status=self._report_status,
        )
        # A new run (or a reload) starts without problems; the kind reports its own.
        self.client.delete(keys.status(self.kind, row.agent_id))
        self.worker = kind(ctx, config)
        self._gauges.update(dict.fromkeys(KIND_GAUGES, ""))

    def step(self) -> dict[str, int]:
        assert self.worker is not None
        result = self.worker.step()
        if result.summary and result.did_work:
            # Every step at DEBUG; a summary at INFO now and then, so the log a person
            # tails shows the agent at work without a line per tick.
            now = time.monotonic()
            if now - self._last_summary >= SUMMARY_EVERY_SECONDS:
                self._last_summary = now
                self._log.info("%s (%d steps so far)", result.summary, self._steps + 1)
            else:
                self._log.debug(result.summary)
        self._steps += 1
        self._gauges.update(result.gauges)
        counters = {"published": result.published, **result.counters, **self._edge_counts}
        self._edge_counts = {}
        return counters

    def _read_inputs(self) -> list[InputMessage]:
        messages = self._reader.read() if self._reader is not None else []
        for name, n in edge_counts(messages).items():
            self._edge_counts[name] = self._edge_counts.get(name, 0) + n
        return messages

    def teardown(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        try:
            # What a stopped agent reported no longer holds; a new run reports afresh.
            self.client.delete(keys.status(self.kind, self.rid))
        except redis.RedisError:
            pass  # Redis is down: the next run's setup deletes it

    def flush(self) -> None:
        flush_log_entries()

    def tick_for(self, row: Agent) -> float:
        return float((row.config or {}).get("tick_seconds", 1.0))

    def step_timeout_for(self, row: Agent) -> float:
        own = (row.config or {}).get("step_timeout_seconds")
        return float(own) if own else super().step_timeout_for(row)

    def config_rev(self, row: Agent) -> str:
        return str(row.config_version)

    def heartbeat_fields(self) -> dict[str, Any]:
        last_active = self._gauges.get("last_active")
        return {"last_active": datetime.fromtimestamp(last_active, tz=UTC)} if last_active else {}

    def _report_status(self, status: dict[str, Any] | None) -> None:
        key = keys.status(self.kind, self.rid)
        if status:
            self.client.set(key, json.dumps(status))
        else:
            self.client.delete(key)

    def _publish(self, payload: dict[str, Any]) -> str:
        return self.lease.publish(self._stream, payload, STREAM_MAXLEN)

    def _last_published(self) -> dict[str, Any] | None:
        newest = self._recent_published(1)
        return newest[0] if newest else None

    def _recent_published(self, count: int) -> list[dict[str, Any]]:
        return newest_messages(self.client, [self.rid], count)[self.rid]
