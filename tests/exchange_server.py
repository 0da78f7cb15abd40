"""A local stand-in for Binance's public REST API, for tests: no test reaches the internet.

Serves `exchangeInfo` from tests/fixtures/exchange/binance/ and `klines` built from the
fixture candles re-stamped to the present: the candle that opens at time t is fixture row
(t / interval) mod rows, so every interval Binance offers (1s for fast tests) has candles,
new ones close as time passes, and the answer ends with the candle still forming, as
Binance's does. Point ccxt at it with the market_data config's `base_url` (and allow
127.0.0.1 in FETCH_ALLOWED_HOSTS).

Fault switches (`server.fault`): "down" (the connection is dropped without an answer),
"slow" (answers after `slow_seconds`), "429" (Binance's error body), "500" (a proxy's
HTML error page), "malformed" (HTTP 200 with a body that is not JSON). `missing` holds candle
open times (ms) the server leaves out, to make a gap.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "exchange" / "binance"
INTERVALS_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
FAULTS = (None, "down", "slow", "429", "500", "malformed")


class ExchangeServer:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.fault: str | None = None
        self.slow_seconds = 3.0
        self.missing: set[int] = set()
        self.requests: list[str] = []  # paths with query, in order
        self.info = json.loads((FIXTURES / "exchangeInfo.json").read_text())
        self.rows = {
            path.stem.split("_")[1]: json.loads(path.read_text())
            for path in FIXTURES.glob("klines_*_1m.json")
        }
        server = self
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="exchange-server", daemon=True)

    @property
    def port(self) -> int:
        return self._http.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ExchangeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> ExchangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def klines_count(self) -> int:
        return sum("/klines" in path for path in self.requests)

    # --- answers ---

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/api/v3/exchangeInfo":
            return 200, {**self.info, "serverTime": int(self.clock() * 1000)}
        if path == "/api/v3/time":
            return 200, {"serverTime": int(self.clock() * 1000)}
        if path == "/api/v3/ping":
            return 200, {}
        if path == "/api/v3/klines":
            return self._klines(query)
        return 404, {"code": -1000, "msg": f"no such endpoint {path} in the test server"}

    def _klines(self, query: dict[str, str]) -> tuple[int, Any]:
        rows = self.rows.get(query.get("symbol", ""))
        if rows is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        interval = INTERVALS_MS.get(query.get("interval", ""))
        if interval is None:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        limit = min(int(query.get("limit", 500)), 1000)
        now = int(self.clock() * 1000)
        current = now // interval * interval  # the candle still forming
        end = min(int(query.get("endTime", now)), now) // interval * interval
        start = int(query["startTime"]) if "startTime" in query else end - (limit - 1) * interval
        first = -(-start // interval) * interval  # the first open time at or after start
        out = []
        t = first
        while t <= min(end, current) and len(out) < limit:
            if t not in self.missing:
                out.append(_restamp(rows[(t // interval) % len(rows)], t, interval))
            t += interval
        return 200, out


def _restamp(row: list[Any], open_ms: int, interval: int) -> list[Any]:
    return [open_ms, *row[1:6], open_ms + interval - 1, *row[7:]]


def _handler(server: ExchangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            server.requests.append(self.path)
            fault = server.fault
            if fault == "down":
                # Dropped without a word, as a host that resets connections.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault == "slow":
                time.sleep(server.slow_seconds)
            if fault == "429":
                return self._send(429, b'{"code":-1003,"msg":"Too many requests; current limit is 6000."}')
            if fault == "500":
                # What a load balancer in front of an exchange answers: not the API's JSON.
                return self._send(500, b"<html><body><h1>500 Internal Server Error</h1></body></html>")
            if fault == "malformed":
                return self._send(200, b'{"symbols": [{"symbol": "BTCUSDT", "status"')
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            status, body = server.answer(url.path, query)
            self._send(status, json.dumps(body, separators=(",", ":")).encode())

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler
