"""Fetching an operator's URL under the policy of url_policy, with a size and a time limit.

Each hop (the URL, then every redirect) is parsed and checked, its name resolved once,
every address checked, and the connection made to a checked address: the name is never
looked up a second time, so a DNS answer that changes between the check and the
connection (DNS rebinding) changes nothing. HTTPS still verifies the certificate against
the host name. No proxy from the environment is used (it would fetch on our behalf
without the check).

Errors are FetchError with a short sentence safe to show a viewer. Every refusal by
policy, and a name that does not resolve, reads the same (REFUSED), so a log line
cannot tell an operator whether an internal address or name exists.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_match_hostname import CertificateError

from agents.net.url_policy import IPAddress, Target, UrlRefused, address_refusal, parse

# Whole fetch, redirects included (not per read): a server that trickles bytes is cut off.
TIMEOUT_SECONDS = 5.0
MAX_BYTES = 5_000_000
MAX_REDIRECTS = 5
# Of an error answer, only this much is read: enough for an API's error code and message.
ERROR_BODY_BYTES = 65_536
REDIRECTS = (301, 302, 303, 307, 308)
REFUSED = (
    "refused by policy: the URL does not lead to a public address this server may fetch "
    "(private hosts must be listed in FETCH_ALLOWED_HOSTS)"
)

Resolver = Callable[[str, int], list[IPAddress]]


class FetchError(Exception):
    """A fetch that failed; str() is a sentence fit for a log line a viewer reads."""


class FetchRefused(FetchError):
    """Refused by the URL policy. str() is always REFUSED; `reason` (never shown) says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(REFUSED)
        self.reason = reason


class FetchTooLarge(FetchError):
    pass


class FetchTimeout(FetchError):
    pass


class FetchStatus(FetchError):
    """The server answered with an HTTP status that is not a success; `status` says which
    (callers that retry tell a 429 or a 5xx from a 404 by it), `headers` and `body` (its
    first ERROR_BODY_BYTES) what it said (an API's error code)."""

    def __init__(self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> None:
        super().__init__(f"the server answered HTTP {status}")
        self.status = status
        self.headers = headers or {}
        self.body = body


@dataclass(frozen=True)
class Response:
    status: int  # 2xx, or 304 (not modified)
    headers: Mapping[str, str]
    body: bytes
    url: str  # after redirects


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host`, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def fetch(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT_SECONDS,
    resolver: Resolver | None = None,
    allowed: frozenset[tuple[str, int | None]] | None = None,
) -> Response:
    """GET `url` under the policy; FetchError (FetchRefused before any connection) if it cannot."""
    deadline = time.monotonic() + timeout
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            target = parse(current, allowed)
        except UrlRefused as exc:
            raise FetchRefused(str(exc)) from None
        addresses = _resolve(target, resolver or system_resolver, deadline)
        response, location = _get(target, addresses, dict(headers or {}), max_bytes, deadline, timeout)
        if location is None:
            return response
        current = urllib.parse.urljoin(target.url, location)
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def _resolve(target: Target, resolver: Resolver, deadline: float) -> list[IPAddress]:
    """The target's addresses, each checked; FetchRefused if any is not allowed."""
    if target.address is not None:
        addresses = [target.address]
    else:
        try:
            addresses = _before(deadline, lambda: resolver(target.host, target.port))
        except FetchTimeout:
            raise
        except Exception:  # does not resolve: reported like a refusal, see the module doc
            raise FetchRefused(f"{target.host} does not resolve") from None
    refusal = address_refusal(target, addresses)
    if refusal:
        raise FetchRefused(refusal)
    return addresses


def _before(deadline: float, work: Callable[[], Any]) -> Any:
    """work() if it finishes before the deadline (getaddrinfo has no timeout of its own)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="fetch-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise FetchTimeout("the host name took too long to resolve")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class _Watched:
    """Mixin: remembers the raw socket, so the deadline can cut any wait on it short."""

    def __init__(self, *args: Any, sockets: list[socket.socket], **kwargs: Any) -> None:
        self.sockets = sockets  # shared with the deadline's timer
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        self.sockets.append(sock)
        return sock


class _HTTP(_Watched, HTTPConnection):
    pass


class _HTTPS(_Watched, HTTPSConnection):
    pass


def _connection(
    target: Target, address: IPAddress, per_wait: float, sockets: list[socket.socket]
) -> _HTTP | _HTTPS:
    """A connection to `address` (already checked) that speaks to the host by its name."""
    if target.scheme == "https":
        return _HTTPS(
            str(address),
            target.port,
            timeout=per_wait,
            sockets=sockets,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    return _HTTP(str(address), target.port, timeout=per_wait, sockets=sockets)


def _get(
    target: Target,
    addresses: list[IPAddress],
    headers: dict[str, str],
    max_bytes: int,
    deadline: float,
    timeout: float,
) -> tuple[Response, str | None]:
    """One GET of `target` at the first address that connects; (response, redirect location)."""
    too_slow = FetchTimeout(f"took longer than {timeout:g} s")
    # At the deadline every socket of this hop is shut down, which ends any wait on it
    # (TLS handshake, headers, a body trickling in) at once: the limit is on the total.
    sockets: list[socket.socket] = []
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        for sock in list(sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), cut)
    timer.daemon = True
    timer.start()
    try:
        conn = _connect(target, addresses, sockets, deadline, expired)
        if conn is None:
            raise (
                too_slow
                if expired.is_set() or time.monotonic() >= deadline
                else FetchError("could not connect to the server")
            )
        return _exchange(conn, target, headers, max_bytes, expired, too_slow)
    finally:
        timer.cancel()


def _connect(
    target: Target,
    addresses: list[IPAddress],
    sockets: list[socket.socket],
    deadline: float,
    expired: threading.Event,
) -> _HTTP | _HTTPS | None:
    """A connection to the first of `addresses` that accepts one, or None."""
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        candidate = _connection(target, address, remaining, sockets)
        try:
            candidate.connect()
        except (OSError, urllib3.exceptions.HTTPError, CertificateError) as exc:
            candidate.close()
            if _is_tls_failure(exc) and not expired.is_set():
                raise FetchError("the server's TLS certificate could not be verified") from None
            continue
        return candidate
    return None


def _exchange(
    conn: _HTTP | _HTTPS,
    target: Target,
    headers: dict[str, str],
    max_bytes: int,
    expired: threading.Event,
    too_slow: FetchTimeout,
) -> tuple[Response, str | None]:
    """Send the GET on `conn` and read the answer within the limits; closes `conn`."""
    try:
        conn.request(
            "GET",
            target.path,
            headers={**headers, "Host": target.host_header},
            preload_content=False,
        )
        answer = conn.getresponse()
        if answer.status in REDIRECTS:
            location = answer.headers.get("Location")
            if not location:
                raise FetchError(f"the server answered HTTP {answer.status} without a Location")
            return Response(answer.status, answer.headers, b"", target.url), location
        if answer.status == 304:
            return Response(304, answer.headers, b"", target.url), None
        if not 200 <= answer.status < 300:
            said = answer.read(ERROR_BODY_BYTES, decode_content=True)
            raise FetchStatus(answer.status, answer.headers, said)
        too_large = FetchTooLarge(f"the response is larger than {max_bytes} bytes")
        declared = answer.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
            raise too_large
        chunks, size = [], 0
        for chunk in answer.stream(65_536, decode_content=True):
            size += len(chunk)
            if size > max_bytes:
                raise too_large
            chunks.append(chunk)
        if expired.is_set():
            raise too_slow
        return Response(answer.status, answer.headers, b"".join(chunks), target.url), None
    except FetchError:
        raise
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        # The socket's own timeout (set to the time left) may fire a moment before the
        # deadline's timer does: that too is the server being too slow, not a failure.
        if expired.is_set() or isinstance(exc, TimeoutError | urllib3.exceptions.TimeoutError):
            raise too_slow from None
        if _is_tls_failure(exc):
            raise FetchError("the server's TLS certificate could not be verified") from None
        raise FetchError("the connection failed before the whole answer arrived") from None
    finally:
        conn.close()


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | urllib3.exceptions.SSLError | CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
