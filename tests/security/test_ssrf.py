"""Every URL an operator gives is fetched only under agents.net's policy (issue 10, item 7).

No test here reaches past loopback: names resolve through a fake DNS table (getaddrinfo
is patched), and every socket connect is recorded; only the test's own servers on
127.0.0.1 are really connected to. A refusal is checked to happen before any connect.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agents.kinds import ConfigError, validate_config
from agents.kinds.base import StepContext
from agents.kinds.feeds import FeedConfig
from agents.kinds.sentiment import Sentiment
from agents.net import fetch as fetch_module
from agents.net.fetch import REFUSED, FetchRefused, FetchTimeout, FetchTooLarge, fetch
from agents.net.url_policy import check_url, display_url, is_public, parse_allowed_host

PUBLIC = "93.184.215.14"  # a public address; never really connected to (the guard refuses it)

NOT_HTTP = [
    "file:///etc/shadow",
    "FILE:///etc/passwd",
    "file://localhost/etc/passwd",
    "/etc/passwd",
    "etc/passwd",
    "~/.ssh/id_rsa",
    "C:\\Windows\\win.ini",
    "ftp://example.com/feed.xml",
    "gopher://example.com:70/_x",
    "dict://example.com:11211/stat",
    "data:text/xml,<rss/>",
    "javascript:alert(1)",
    "//example.com/feed",
]

FORBIDDEN_LITERALS = [
    # loopback, including the Redis port the report probed
    "http://127.0.0.1/",
    "http://127.0.0.1:6379/",
    "http://127.255.255.254/",
    "http://[::1]/",
    # unspecified
    "http://0.0.0.0/",
    "http://[::]/",
    # private
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://100.64.0.1/",  # carrier-grade NAT
    # link-local, the cloud metadata address among them
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fec0::1]/",  # deprecated site-local
    # multicast and broadcast
    "http://224.0.0.1/",
    "http://239.255.255.250:1900/",
    "http://255.255.255.255/",
    "http://[ff02::1]/",
    # reserved and documentation ranges
    "http://240.0.0.1/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    "http://[2001:db8::1]/",
    # IPv6 forms carrying a forbidden IPv4 address
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[64:ff9b:1::a00:1]/",  # local-use NAT64
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[2002:c0a8:101::1]/",  # 6to4 of 192.168.1.1
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
]

ODD_SPELLINGS = [
    "http://2130706433/",
    "http://017700000001/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://0x7f.0x0.0x0.0x1/",
    "http://0177.0.0.1/",
    "http://127.000.000.001/",
    "http://127.1/",
    "http://127.0.1/",
    "http://0/",
    "http://127.0.0.1./",
    "http://169.254.169.254.:80/",
    "http://localhost/",
    "http://localhost./",
    "http://LOCALHOST:8000/",
    "http://feeds.localhost/",
    "http://ⓛocalhost/",  # folds to localhost under IDNA (UTS 46)
    "http://１２７.０.０.１/",  # full-width digits fold to 127.0.0.1
    "http://[::ffff:127.0.0.1%25lo]/",
    "http://%31%32%37.0.0.1/",
    "http://evil.example\\@127.0.0.1/",
    "http://127.0.0.1 /",
    "http://[::1/",
]

CREDENTIALS = [
    "http://user:hunter2@feeds.example.com/rss",
    "https://:hunter2@feeds.example.com/",
    "http://u@127.0.0.1/",
]

# Names and what the fake DNS answers for them.
DNS: dict[str, list[str]] = {
    "loopback.example.com": ["127.0.0.1"],
    "redis.example.com": ["127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "intranet.example.com": ["10.1.2.3"],
    "v6-loopback.example.com": ["::1"],
    "mapped.example.com": ["::ffff:192.168.0.10"],
    "mixed.example.com": [PUBLIC, "10.0.0.7"],  # one private answer is enough to refuse
    "public.example.com": [PUBLIC],
}
RESOLVES_TO_FORBIDDEN = [
    "http://loopback.example.com/",
    "http://redis.example.com:6379/",
    "http://metadata.example.com/latest/meta-data/",
    "https://intranet.example.com/rss",
    "http://v6-loopback.example.com/",
    "http://mapped.example.com/",
    "http://mixed.example.com/",
    "http://nowhere.example.com/",  # does not resolve: reported the same way
]


class Guard:
    """Records every connect and every name lookup; connects only to allowed local ports."""

    def __init__(self) -> None:
        self.connects: list[Any] = []
        self.lookups: list[str] = []
        self.local_ports: set[int] = set()


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> Guard:
    guard = Guard()
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        guard.connects.append(address)
        if address[0] == "127.0.0.1" and address[1] in guard.local_ports:
            return real_connect(sock, address)
        raise ConnectionRefusedError("the test guard refuses every other address")

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        guard.lookups.append(name)
        if name in DNS:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in DNS[name]
            ]
        try:  # an address literal: answered without any DNS
            return real_getaddrinfo(host, port, *args, flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            raise socket.gaierror(socket.EAI_NONAME, "not in the test's DNS table") from None

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return guard


def refused_before_connecting(guard: Guard, url: str, **kwargs: Any) -> FetchRefused:
    with pytest.raises(FetchRefused) as caught:
        fetch(url, **kwargs)
    assert guard.connects == [], f"{url} connected to {guard.connects}"
    # One sentence for every refusal: the log cannot tell what exists behind it.
    assert str(caught.value) == REFUSED
    return caught.value


# --- refused at fetch time, before any connection ---


@pytest.mark.parametrize("url", NOT_HTTP)
def test_local_files_and_other_schemes_are_refused(guard: Guard, url: str) -> None:
    exc = refused_before_connecting(guard, url)
    assert "http" in exc.reason
    assert guard.lookups == []


@pytest.mark.parametrize("url", FORBIDDEN_LITERALS)
def test_every_forbidden_address_class_is_refused(guard: Guard, url: str) -> None:
    refused_before_connecting(guard, url)


@pytest.mark.parametrize("url", ODD_SPELLINGS)
def test_odd_spellings_of_local_addresses_are_refused(guard: Guard, url: str) -> None:
    refused_before_connecting(guard, url)


@pytest.mark.parametrize("url", RESOLVES_TO_FORBIDDEN)
def test_a_name_is_checked_by_every_address_it_resolves_to(guard: Guard, url: str) -> None:
    exc = refused_before_connecting(guard, url)
    assert guard.lookups, "the name was resolved"
    assert "resolve" in exc.reason


@pytest.mark.parametrize("url", CREDENTIALS)
def test_urls_with_credentials_are_refused_and_never_shown(guard: Guard, url: str) -> None:
    exc = refused_before_connecting(guard, url)
    assert "hunter2" not in str(exc) and "hunter2" not in display_url(url)


def test_the_name_is_resolved_once_and_the_checked_address_is_the_one_connected(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers a public address first, then 127.0.0.1."""
    answers = iter([[PUBLIC], ["127.0.0.1"], ["127.0.0.1"]])
    guarded = socket.getaddrinfo

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example.com":
            DNS[host] = next(answers)
        return guarded(host, port, *args, **kwargs)

    monkeypatch.setitem(DNS, "rebind.example.com", [])
    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(fetch_module.FetchError, match="could not connect"):
        fetch("http://rebind.example.com/rss")
    names = [n for n in guard.lookups if not n.replace(".", "").isdigit()]
    assert names == ["rebind.example.com"]  # once: the connect looked up only the address
    assert guard.connects == [(PUBLIC, 80)]  # refused by the guard: nothing left the machine


def test_an_injected_resolver_is_checked_like_the_system_one(guard: Guard) -> None:
    import ipaddress

    calls: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[Any]:
        calls.append((host, port))
        return [ipaddress.ip_address("169.254.169.254")]

    refused_before_connecting(guard, "https://cdn.example.net/feed", resolver=resolver)
    assert calls == [("cdn.example.net", 443)] and guard.lookups == []


# --- checked when a config is saved ---


def feed_refusal(url: str) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_config("sentiment", {"sources": ["rss"], "feeds": [{"url": url}]})
    errors = dict(caught.value.errors)
    assert list(errors) == ["feeds.0.url"], errors
    return errors["feeds.0.url"]


@pytest.mark.parametrize("url", NOT_HTTP + FORBIDDEN_LITERALS + ODD_SPELLINGS + CREDENTIALS)
def test_the_sentiment_config_refuses_the_url_with_a_reason(guard: Guard, url: str) -> None:
    reason = feed_refusal(url)
    assert len(reason) > 20 and "hunter2" not in reason
    assert guard.lookups == [] and guard.connects == []  # saving looks nothing up


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file:///etc/shadow", "only http:// and https://"),
        ("/etc/passwd", "only http:// and https://"),
        ("http://169.254.169.254/", "not a public address"),
        ("http://[::ffff:10.0.0.1]/", "not a public address"),
        ("http://2130706433/", "four decimal numbers"),
        ("http://localhost./", "localhost is not allowed"),
        ("http://user:pw@example.com/", "user name or password"),
    ],
)
def test_the_reason_names_what_is_wrong(url: str, words: str) -> None:
    assert words in feed_refusal(url)


def test_a_public_name_saves_without_any_lookup(guard: Guard) -> None:
    config = validate_config(
        "sentiment", {"sources": ["rss"], "feeds": [{"url": " https://feeds.example.com/rss "}]}
    )
    assert config.feeds[0].url == "https://feeds.example.com/rss"
    assert guard.lookups == []


def test_allowed_hosts_let_a_private_host_be_saved_host_or_host_and_port(settings: Any) -> None:
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1:8080", "feeds.internal", "[::1]"]
    for url in ("http://127.0.0.1:8080/rss", "http://feeds.internal:9000/rss", "http://[::1]/rss"):
        assert check_url(url) == url
    assert "not a public address" in feed_refusal("http://127.0.0.1:6379/")  # another port
    assert "not a public address" in feed_refusal("http://[::ffff:127.0.0.1]:8080/")  # another spelling
    assert "only http" in feed_refusal("file://127.0.0.1:8080/etc/passwd")  # still no files


@pytest.mark.parametrize("entry", ["http://x/", "a b", "user@host", "host/path", "0x7f.1", "[::1", "h:99999"])
def test_a_malformed_allowed_host_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="FETCH_ALLOWED_HOSTS"):
        parse_allowed_host(entry)


def test_the_address_rule_itself() -> None:
    import ipaddress

    public = [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::",
    ]
    assert all(is_public(ipaddress.ip_address(a)) for a in public)
    assert not any(
        is_public(ipaddress.ip_address(a)) for a in ["127.0.0.1", "::1", "10.0.0.1", "fe80::1", "ff02::1"]
    )


# --- local test servers (127.0.0.1, allowed through the setting) ---


Handler = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def server(guard: Guard, settings: Any) -> Iterator[Callable[[dict[str, Handler]], str]]:
    """Starts an HTTP server on 127.0.0.1 answering `routes`; returns its base URL."""
    running: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(routes: dict[str, Handler]) -> str:
        class Routed(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            def log_message(self, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Routed)
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        running.append((httpd, thread))
        port = httpd.server_address[1]
        guard.local_ports.add(port)
        settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
        return f"http://127.0.0.1:{port}"

    yield start
    for httpd, thread in running:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def redirect_to(location: str) -> Handler:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return answer


def body(data: bytes, length: bool = True) -> Handler:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        if length:
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return answer


def test_an_allowed_local_server_is_fetched_and_local_redirects_followed(server: Any, guard: Guard) -> None:
    base = server({"/feed": body(b"<rss/>"), "/moved": redirect_to("/feed")})
    response = fetch(f"{base}/moved")
    assert (response.status, response.body, response.url) == (200, b"<rss/>", f"{base}/feed")


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://[::1]/",
        "http://2130706433/",
        "http://metadata.example.com/",
        "http://127.0.0.1:6379/",  # the same host on a port the setting does not allow
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
    ],
)
def test_a_redirect_to_a_forbidden_address_is_refused_before_connecting(
    server: Any, guard: Guard, settings: Any, location: str
) -> None:
    base = server({"/feed": redirect_to(location)})
    port = int(base.rsplit(":", 1)[1])
    settings.FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]  # only the test server itself
    with pytest.raises(FetchRefused) as caught:
        fetch(f"{base}/feed")
    assert str(caught.value) == REFUSED
    assert guard.connects == [("127.0.0.1", port)], "only the first hop connected"


def test_redirect_loops_end(server: Any) -> None:
    base = server({"/a": redirect_to("/b"), "/b": redirect_to("/a")})
    with pytest.raises(fetch_module.FetchError, match="redirects"):
        fetch(f"{base}/a")


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_size_limit_is_cut_with_a_clear_error(server: Any, declared: bool) -> None:
    base = server({"/big": body(b"x" * 50_000, length=declared)})
    with pytest.raises(FetchTooLarge, match="larger than 10000 bytes"):
        fetch(f"{base}/big", max_bytes=10_000)
    assert fetch(f"{base}/big", max_bytes=50_000).body == b"x" * 50_000


def trickle(headers_done: bool) -> Handler:
    """Sends a byte every 50 ms (each read is quick: only the total is too long)."""

    def answer(h: BaseHTTPRequestHandler) -> None:
        if headers_done:
            h.send_response(200)
            h.end_headers()
        else:
            h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        try:
            for _ in range(400):  # 20 s at most, then it ends by itself
                h.wfile.write(b"X-Slow: 1\r\n" if not headers_done else b"x")
                h.wfile.flush()
                time.sleep(0.05)  # the server's pace, not a test synchronisation
        except OSError:
            pass  # the client hung up: the point of the test

    return answer


@pytest.mark.parametrize("headers_done", [True, False])
def test_a_server_that_trickles_bytes_is_cut_at_the_total_time_limit(server: Any, headers_done: bool) -> None:
    base = server({"/slow": trickle(headers_done)})
    started = time.monotonic()
    with pytest.raises(FetchTimeout, match="took longer than 1 s"):
        fetch(f"{base}/slow", timeout=1.0)
    assert time.monotonic() - started < 2.5


def test_feedparser_gets_bytes_and_reads_no_external_entity(server: Any, tmp_path: Path) -> None:
    from agents.kinds.feeds import FeedState
    from agents.kinds.feeds import fetch as fetch_feed

    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY s SYSTEM "file://{secret}">]>'
        "<rss version='2.0'><channel><title>t</title><item><title>a &s; b</title></item></channel></rss>"
    ).encode()
    base = server({"/rss": body(xml)})
    entries, _ = fetch_feed(FeedState(FeedConfig(url=f"{base}/rss")))
    assert "TOPSECRET" not in repr(entries)


# --- the sentiment agent ---


class Context(StepContext):
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        super().__init__(
            agent_id="ssrf",
            symbols=["BTC-USD"],
            publish=lambda m: self.published.append(m) or "1-0",
            last_published=lambda: None,
            log=logging.getLogger("tests.ssrf"),
            read_inputs=lambda: [],
            inputs=[],
        )


def test_the_agent_logs_one_sentence_for_a_refused_feed_whatever_is_behind_it(
    guard: Guard, caplog: pytest.LogCaptureFixture
) -> None:
    # Names pass when saved (no DNS then); at fetch time they resolve to internal
    # addresses, one of them "existing" (Redis), one not, one not even in DNS.
    urls = [
        "http://redis.example.com:6379/",
        "http://intranet.example.com/none",
        "http://nowhere.example.com/",
    ]
    config = validate_config("sentiment", {"sources": ["rss"], "feeds": [{"url": u} for u in urls]})
    kind = Sentiment(Context(), config)
    with caplog.at_level(logging.WARNING, logger="tests.ssrf"):
        results = [kind.step() for _ in urls]
    assert [r.counters["feed_errors"] for r in results] == [1, 1, 1]
    assert guard.connects == []
    lines = [r.getMessage() for r in caplog.records if r.name == "tests.ssrf"]
    assert lines == [f"feed {u} failed: {REFUSED}" for u in urls]


def test_a_stored_url_with_a_password_is_refused_and_logged_without_it(
    guard: Guard, caplog: pytest.LogCaptureFixture
) -> None:
    config = validate_config(
        "sentiment", {"sources": ["rss"], "feeds": [{"url": "http://public.example.com/"}]}
    )
    # As if saved before the rule existed: built without validation.
    config.feeds[0] = FeedConfig.model_construct(
        url="http://reader:hunter2@public.example.com/rss", symbols=[]
    )
    kind = Sentiment(Context(), config)
    with caplog.at_level(logging.WARNING, logger="tests.ssrf"):
        assert kind.step().counters["feed_errors"] == 1
    assert guard.connects == []
    text = caplog.text
    assert "hunter2" not in text and "***@public.example.com" in text


def test_the_rule_is_applied_again_at_fetch_time(server: Any, guard: Guard, settings: Any) -> None:
    """The setting changed after the config was saved: the worker refuses it too."""
    base = server({"/rss": body(b"<rss version='2.0'><channel><title>t</title></channel></rss>")})
    config = validate_config("sentiment", {"sources": ["rss"], "feeds": [{"url": f"{base}/rss"}]})
    settings.FETCH_ALLOWED_HOSTS = []
    kind = Sentiment(Context(), config)
    assert kind.step().counters["feed_errors"] == 1
    assert guard.connects == []
    settings.FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    kind = Sentiment(Context(), config)
    assert kind.step().counters["feed_errors"] == 0 and len(guard.connects) == 1


# --- the API and the admin refuse it before a worker sees it ---

HOSTILE_CONFIGS = [
    "file:///etc/shadow",
    "/etc/passwd",
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:6379/",
    "http://0x7f.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost./",
    "http://user:hunter2@example.com/rss",
]


@pytest.fixture
def news_agent(make_agent) -> Any:
    return make_agent("news", kind="sentiment", role="specialized_sentiment", config={"tick_seconds": 1.0})


@pytest.mark.django_db
@pytest.mark.parametrize("url", HOSTILE_CONFIGS)
def test_the_api_refuses_a_hostile_feed_url_with_the_field_and_the_reason(
    client: Any, operator: Any, news_agent: Any, guard: Guard, url: str
) -> None:
    from control.models import ApiToken

    bearer = {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(operator)[1]}"}
    config = {"sources": ["rss"], "feeds": [{"url": url}]}
    response = client.post("/api/agents/news/config", config, content_type="application/json", **bearer)
    assert response.status_code == 422, response.content[:300]
    assert "feeds.0.url" in response.json()["detail"] and b"hunter2" not in response.content
    news_agent.refresh_from_db()
    assert "feeds" not in news_agent.config
    assert guard.connects == [] and guard.lookups == []


@pytest.mark.django_db
@pytest.mark.parametrize("url", HOSTILE_CONFIGS[:4])
def test_the_admin_refuses_a_hostile_feed_url(
    client: Any, admin_user: Any, news_agent: Any, url: str
) -> None:
    client.force_login(admin_user)
    form = {
        "agent_id": "news",
        "name": "News",
        "kind": "sentiment",
        "role": "specialized_sentiment",
        "enabled": "on",
        "symbols": '["BTC-USD"]',
        "config": json.dumps({"sources": ["rss"], "feeds": [{"url": url}]}),
        "position_x": "",
        "position_y": "",
    }
    response = client.post("/admin/agents/agent/news/change/", form)
    assert response.status_code == 200  # the form again, with the reason
    assert "feeds.0.url" in response.content.decode()
    news_agent.refresh_from_db()
    assert "feeds" not in news_agent.config


# --- HTTPS: connected to the checked address, the certificate checked against the name ---


def make_certificates(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A test CA, and a certificate for `name` signed by it: (ca.pem, cert.pem, key.pem)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(
        build("Test CA", ca_key, "Test CA", ca_key, True).public_bytes(serialization.Encoding.PEM)
    )
    paths[1].write_bytes(build(name, key, "Test CA", ca_key, False).public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture
def tls_server(guard: Guard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 with a certificate for feeds.example.com, trusted by the fetcher."""
    import ssl

    ca, cert, key = make_certificates(tmp_path, "feeds.example.com")
    monkeypatch.setattr(fetch_module.certifi, "where", lambda: str(ca))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body(f"host={self.headers['Host']}".encode())(self)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    guard.local_ports.add(httpd.server_address[1])
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_https_connects_to_the_checked_address_and_verifies_the_name(
    tls_server: int, guard: Guard, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(DNS, "feeds.example.com", ["127.0.0.1"])
    monkeypatch.setitem(DNS, "other.example.com", ["127.0.0.1"])
    settings.FETCH_ALLOWED_HOSTS = ["feeds.example.com", "other.example.com"]
    response = fetch(f"https://feeds.example.com:{tls_server}/rss")
    assert response.body == f"host=feeds.example.com:{tls_server}".encode()
    assert guard.connects == [("127.0.0.1", tls_server)]
    # The same address under a name its certificate does not carry: refused by TLS.
    with pytest.raises(fetch_module.FetchError, match="TLS certificate could not be verified"):
        fetch(f"https://other.example.com:{tls_server}/rss")


def test_a_server_that_never_finishes_the_tls_handshake_is_cut_at_the_time_limit(
    guard: Guard, settings: Any
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    guard.local_ports.add(port)
    settings.FETCH_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]
    try:
        started = time.monotonic()
        with pytest.raises(FetchTimeout):
            fetch(f"https://127.0.0.1:{port}/", timeout=0.5)  # accepted by the backlog, never answered
        assert time.monotonic() - started < 2
    finally:
        listener.close()


def test_an_ipv6_allowed_host_matches_however_the_address_is_written(settings: Any) -> None:
    settings.FETCH_ALLOWED_HOSTS = ["[::1]:8080"]
    assert check_url("http://[0:0:0:0:0:0:0:1]:8080/rss")
    assert "not a public address" in feed_refusal("http://[::1]:8081/rss")
