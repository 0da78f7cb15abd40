"""An aiohttp session under url_policy's rule, for libraries that talk over aiohttp (ccxt.pro's websockets).

agents.net.fetch is the one way workers make HTTP requests; a websocket library brings
its own client, so this module applies the same rule to it at the two places aiohttp
lets us:

* every request (a websocket's opening handshake is one) has its URL checked as text
  when it starts (scheme, no credentials, no `localhost` or private address literal
  unless allowed): aiohttp does not resolve an address literal, so this is where a
  literal is refused;
* every name is resolved once by PolicyResolver, each address checked, and only checked
  addresses handed to the connector, which connects to one of them: a DNS answer that
  changes after the check changes nothing (DNS rebinding).

No proxy from the environment (trust_env False): it would connect on our behalf without
the check. Certificates are verified against certifi's roots, as fetch does.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from types import SimpleNamespace
from typing import Any

import aiohttp
import certifi
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from agents.net.fetch import REFUSED, TIMEOUT_SECONDS, Resolver, system_resolver
from agents.net.url_policy import UrlRefused, address_refusal, parse

# Websocket schemes are checked as the HTTP ones they upgrade from.
_AS_HTTP = {"ws": "http", "wss": "https"}


class PolicyRefused(aiohttp.ClientConnectionError):
    """A connection the URL policy refused; str() is fetch's REFUSED sentence, `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(REFUSED)
        self.reason = reason


def check_url(url: str) -> None:
    """PolicyRefused unless `url` (http, https, ws or wss) passes url_policy as text."""
    scheme, sep, rest = url.partition("://")
    try:
        parse(f"{_AS_HTTP.get(scheme.lower(), scheme)}{sep}{rest}")
    except UrlRefused as exc:
        raise PolicyRefused(str(exc)) from None


class PolicyResolver(AbstractResolver):
    """Resolves a name once and returns only the addresses url_policy allows (all of them
    must be allowed: a name that mixes public and private addresses is refused)."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        self._resolver = resolver or system_resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            target = parse(f"http://{host}:{port or 80}/")
        except UrlRefused as exc:
            raise PolicyRefused(str(exc)) from None
        if target.address is not None:
            addresses = [target.address]
        else:
            try:
                addresses = await asyncio.get_running_loop().run_in_executor(
                    None, self._resolver, target.host, target.port
                )
            except Exception:
                raise PolicyRefused(f"{host} does not resolve") from None
        refusal = address_refusal(target, addresses)
        if refusal:
            raise PolicyRefused(refusal)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


async def _check_request(session: Any, context: SimpleNamespace, params: Any) -> None:
    check_url(str(params.url))


async def _check_redirect(session: Any, context: SimpleNamespace, params: Any) -> None:
    location = params.response.headers.get("Location")
    if location:
        check_url(str(params.url.join(yarl.URL(location))))


def policy_session(resolver: Resolver | None = None) -> aiohttp.ClientSession:
    """A ClientSession whose every connection obeys the URL policy; call inside the event loop."""
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_check_request)
    trace.on_request_redirect.append(_check_redirect)
    connector = aiohttp.TCPConnector(
        resolver=PolicyResolver(resolver),
        use_dns_cache=False,  # the policy is applied at every connection
        ssl=ssl.create_default_context(cafile=certifi.where()),
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        trace_configs=[trace],
        # A request, or a websocket's opening handshake, ends within fetch's limit
        # (aiohttp's default is five minutes); an open websocket is not cut by it.
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
    )
