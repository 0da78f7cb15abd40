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

Binance's kline websocket too, on the same port at /ws/<n> (ccxt.pro's URL once rebased):
a client sends {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1s"], "id": 1}, gets
{"result": null, "id": 1}, then every `ws_interval` seconds the forming candle of each
stream it subscribed (x false) and, when a candle closes, its final state first (x true),
as Binance does. Switches (`server.ws_fault`): "refuse" (the upgrade is answered 403),
"drop" (connections are cut), "garbage" (frames that are not JSON instead of candles),
"silent" (connected and subscribed, then nothing), "bad_prices" (candles whose close is
"NaN"). A minimal RFC 6455 server by hand (no
extensions, text frames), enough for aiohttp's client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
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
WS_FAULTS = (None, "refuse", "drop", "garbage", "silent", "bad_prices")
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ExchangeServer:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.fault: str | None = None
        self.slow_seconds = 3.0
        self.missing: set[int] = set()
        self.requests: list[str] = []  # paths with query, in order
        self.ws_fault: str | None = None
        self.ws_interval = 0.2
        self.ws_connections: list[_WsConnection] = []  # open ones
        self.ws_accepted = 0  # upgrades answered 101
        self.ws_subscriptions: list[str] = []  # every stream subscribed, in order
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
        for connection in list(self.ws_connections):
            connection.cut()
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

    def kline(self, stream: str, open_ms: int, closed: bool) -> dict[str, Any] | None:
        """Binance's kline event for `stream` ("btcusdt@kline_1s") at the candle opening at open_ms."""
        market, _, interval_name = stream.partition("@kline_")
        rows = self.rows.get(market.upper())
        interval = INTERVALS_MS.get(interval_name)
        if rows is None or interval is None or open_ms in self.missing:
            return None
        row = _restamp(rows[(open_ms // interval) % len(rows)], open_ms, interval)
        k = {"t": open_ms, "T": row[6], "s": market.upper(), "i": interval_name, "o": row[1], "h": row[2]}
        k |= {"l": row[3], "c": row[4], "v": row[5], "n": row[8], "x": closed, "q": row[7]}
        return {"e": "kline", "E": int(self.clock() * 1000), "s": market.upper(), "k": k}


class _WsConnection:
    """One websocket client: the handler's thread reads its frames, a thread sends candles."""

    def __init__(self, server: ExchangeServer, sock: socket.socket, rfile: Any) -> None:
        self.server = server
        self.sock = sock
        self.rfile = rfile
        self.streams: dict[str, int] = {}  # stream -> open time of the last candle sent
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def send(self, text: str | bytes, opcode: int = 1) -> None:
        data = text.encode() if isinstance(text, str) else text
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([n])
        elif n < 65536:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        with self.lock:
            try:
                self.sock.sendall(head + data)
            except OSError:
                self.closed.set()

    def cut(self) -> None:
        """Drop the connection without a closing handshake, as a network failure does."""
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def read_frames(self) -> None:
        while not self.closed.is_set():
            try:
                head = self.rfile.read(2)
                if len(head) < 2:
                    break
                opcode, n = head[0] & 0x0F, head[1] & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self.rfile.read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self.rfile.read(8))[0]
                mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            except (OSError, struct.error):
                break
            if opcode == 0x8:  # close: answer it and end
                self.send(data[:2], opcode=0x8)
                break
            if opcode == 0x9:
                self.send(data, opcode=0xA)
            elif opcode == 0x1:
                self.on_text(data.decode("utf-8", errors="replace"))
        self.cut()

    def on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        params = [p for p in message.get("params", []) if isinstance(p, str)]
        if message.get("method") == "SUBSCRIBE":
            for stream in params:
                self.streams.setdefault(stream, 0)
                self.server.ws_subscriptions.append(stream)
        elif message.get("method") == "UNSUBSCRIBE":
            for stream in params:
                self.streams.pop(stream, None)
        self.send(json.dumps({"result": None, "id": message.get("id")}))

    def push(self) -> None:
        server = self.server
        while not self.closed.wait(server.ws_interval):
            fault = server.ws_fault
            if fault == "drop":
                self.cut()
                return
            if fault == "silent":
                continue
            if fault == "garbage":
                self.send("<html>502 Bad Gateway</html>")
                continue
            bad = fault == "bad_prices"
            now = int(server.clock() * 1000)
            for stream, last in list(self.streams.items()):
                interval = INTERVALS_MS.get(stream.partition("@kline_")[2], 60_000)
                current = now // interval * interval
                events = []
                if last and current > last:
                    events.append(server.kline(stream, last, closed=True))
                events.append(server.kline(stream, current, closed=False))
                self.streams[stream] = current
                for event in events:
                    if event is not None:
                        if bad:
                            event["k"]["c"] = "NaN"
                        self.send(json.dumps(event, separators=(",", ":")))


def _restamp(row: list[Any], open_ms: int, interval: int) -> list[Any]:
    return [open_ms, *row[1:6], open_ms + interval - 1, *row[7:]]


def _handler(server: ExchangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            server.requests.append(self.path)
            if self.headers.get("Upgrade", "").lower() == "websocket":
                return self._websocket()
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

        def _websocket(self) -> None:
            if server.ws_fault == "refuse" or not self.path.startswith("/ws"):
                self.close_connection = True
                return self._send(403, b'{"code":-1,"msg":"websocket refused by the test server"}')
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            server.ws_accepted += 1
            connection = _WsConnection(server, self.connection, self.rfile)
            server.ws_connections.append(connection)
            pusher = threading.Thread(target=connection.push, name="exchange-server-ws", daemon=True)
            pusher.start()
            try:
                connection.read_frames()
            finally:
                connection.cut()
                server.ws_connections.remove(connection)
                self.close_connection = True

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
