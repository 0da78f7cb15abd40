"""Which URLs an operator may make this server fetch: the one rule for every such URL.

A feed URL today, exchange base URLs and notification webhooks later: anything an
operator types that a worker will request goes through this module, so a panel user
cannot turn a worker into a probe of its own machine or network (SSRF).

The rule: `http` or `https` only; no user name or password in the URL (it would show in
logs); a host written the usual way (a DNS name, four decimal numbers, or a bracketed
IPv6 address, never `2130706433`, `0x7f.1` or `0177.0.0.1`); and every address it
names or resolves to is public (not loopback, private, link-local, multicast,
unspecified or reserved, nor an IPv6 form wrapping one of those). Hosts listed in the
`FETCH_ALLOWED_HOSTS` setting (`host` or `host:port`) are exempt from the address
check only, for feeds an operator runs on a private network on purpose.

`check_url` runs when a config is saved (text only: no DNS, so saving reveals nothing
about the network); `agents.net.fetch` checks again when it fetches, after resolving the
name, and connects to the address it checked.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass
from typing import Annotated

import idna
from pydantic import AfterValidator

from agents.net.redact import redact_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SCHEMES = {"http": 80, "https": 443}
MAX_URL_CHARS = 2000
# A DNS name as it goes on the wire (after IDNA): letters, digits, '-' and '_' in labels.
_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*")
# The WHATWG URL standard (what browsers and most libraries follow) reads a host whose
# last label is a number (decimal, or 0x hex) as an IPv4 address in any of the old
# spellings; we accept only the plain dotted-decimal one.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_DOTTED_QUAD = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
# IPv6 forms that carry an IPv4 address inside: checked by the address they carry.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")

ALLOWED_HOSTS_SETTING = "FETCH_ALLOWED_HOSTS"


class UrlRefused(ValueError):
    """A URL the policy does not allow; the message is a sentence saying why."""


@dataclass(frozen=True)
class Target:
    """A URL taken apart the one way this package reads it (and connects to)."""

    scheme: str
    host: str  # lower case, ASCII (IDNA), no trailing dot, IPv6 without brackets
    port: int
    path: str  # the request target: path and query, percent-encoded ASCII
    address: IPAddress | None  # set when the host is an address literal
    allowed_private: bool  # named in FETCH_ALLOWED_HOSTS: any address is fine

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == SCHEMES[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"


def parse(text: str, allowed: frozenset[tuple[str, int | None]] | None = None) -> Target:
    """`text` taken apart and checked as far as text allows; UrlRefused says why not."""
    if not isinstance(text, str):
        raise UrlRefused("must be text")
    text = text.strip()
    if not text:
        raise UrlRefused("a URL is required")
    if len(text) > MAX_URL_CHARS:
        raise UrlRefused(f"a URL is at most {MAX_URL_CHARS} characters")
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:  # e.g. an unclosed "[" in the host
        raise UrlRefused("the URL cannot be read: check its host") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UrlRefused("only http:// and https:// URLs are allowed (no local files or other schemes)")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c in '\\<>"' for c in text):
        raise UrlRefused("a URL has no spaces, control characters, backslashes, quotes or angle brackets")
    if "@" in parts.netloc:
        raise UrlRefused("a URL may not carry a user name or password (they would show in logs)")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    try:
        # (Not `parts.port or ...`: port 0 is falsy, and was read as the scheme's default.)
        port = SCHEMES[scheme] if parts.port is None else parts.port
    except ValueError:
        raise UrlRefused("the port must be a number from 1 to 65535") from None
    if port == 0:
        raise UrlRefused("the port must be a number from 1 to 65535")
    host, address = _host(parts.netloc, parts.hostname)
    allowed = allowed_hosts() if allowed is None else allowed
    is_allowed = (host, None) in allowed or (host, port) in allowed
    if not is_allowed:
        if address is None and (host == "localhost" or host.endswith(".localhost")):
            raise UrlRefused("localhost is not allowed: only public hosts, or those in FETCH_ALLOWED_HOSTS")
        if address is not None and not is_public(address):
            raise UrlRefused(
                f"{address} is not a public address: only public hosts, or those in FETCH_ALLOWED_HOSTS"
            )
    path = _quote(parts.path or "/") + (f"?{_quote(parts.query)}" if parts.query else "")
    return Target(scheme, host, port, path, address, is_allowed)


def _host(netloc: str, hostname: str) -> tuple[str, IPAddress | None]:
    """The host in its one canonical spelling, and its address when it is a literal."""
    if netloc.rsplit("@", 1)[-1].startswith("["):
        if "%" in hostname:
            raise UrlRefused("an IPv6 address with a zone (%...) is not allowed")
        try:
            address = ipaddress.IPv6Address(hostname)
        except ValueError:
            raise UrlRefused("the host is not a valid IPv6 address") from None
        return str(address), address  # one spelling: [0::1] is [::1]
    host = hostname
    if not host.isascii():
        try:
            # UTS 46, as browsers do: full-width digits and look-alike letters fold to
            # ASCII here, so "１２７.０.０.１" is checked as 127.0.0.1 and "ⓛocalhost" as localhost.
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise UrlRefused("the host is not a valid domain name") from None
    host = host.lower().removesuffix(".")
    labels = host.split(".")
    if labels and _NUMERIC_LABEL.fullmatch(labels[-1]):
        if not _DOTTED_QUAD.fullmatch(host):
            raise UrlRefused("write an IPv4 address as four decimal numbers (like 203.0.113.5)")
        try:
            return host, ipaddress.IPv4Address(host)
        except ValueError:
            raise UrlRefused("the host is not a valid IPv4 address") from None
    if not _NAME.fullmatch(host) or len(host) > 253:
        raise UrlRefused("the host is not a valid domain name")
    return host, None


def _quote(text: str) -> str:
    """Path or query as ASCII: other characters percent-encoded, existing escapes kept."""
    return urllib.parse.quote(text, safe="/%:@!$&'()*+,;=-._~?")


def is_public(address: IPAddress) -> bool:
    """True when `address` is on the public internet; IPv6 forms wrapping IPv4 by what they wrap."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return False
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            return is_public(address.sixtofour)
        if address.teredo is not None:
            return False  # a tunnel to an address we cannot see the far end of
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )


def address_refusal(target: Target, addresses: list[IPAddress]) -> str | None:
    """Why a name's resolved addresses may not be connected to (a sentence), or None. Every
    address counts, not just the first: a name may mix public and private ones."""
    if not addresses:
        return f"{target.host} has no address"
    if not target.allowed_private:
        for address in addresses:
            if not is_public(address):
                return f"{target.host} resolves to {address}"
    return None


def allowed_hosts() -> frozenset[tuple[str, int | None]]:
    """FETCH_ALLOWED_HOSTS as (host, port or None) pairs, each host spelt as parse() spells it."""
    try:
        from django.conf import settings

        entries = getattr(settings, ALLOWED_HOSTS_SETTING, [])
    except Exception:  # settings not configured (a script without Django): nothing allowed
        return frozenset()
    return frozenset(parse_allowed_host(entry) for entry in entries if entry.strip())


def parse_allowed_host(entry: str) -> tuple[str, int | None]:
    """One FETCH_ALLOWED_HOSTS entry, 'host' or 'host:port'; ValueError names a bad one."""
    entry = entry.strip()
    try:
        parts = urllib.parse.urlsplit(f"http://{entry}")
        if "@" in parts.netloc or parts.path or parts.query or not parts.hostname:
            raise ValueError
        port = parts.port
        host, _ = _host(parts.netloc, parts.hostname)
    except (ValueError, UrlRefused):
        raise ValueError(f"{ALLOWED_HOSTS_SETTING}: {entry!r} is not a host or host:port") from None
    return host, port


def check_url(text: str) -> str:
    """A pydantic validator for a URL field: the URL, trimmed, or ValueError with the reason."""
    parse(text)
    return text.strip()


# A config field an operator fills with a URL this server will fetch.
FetchableUrl = Annotated[str, AfterValidator(check_url)]


def display_url(text: str) -> str:
    """`text` fit for a log line or a page: no password (agents.net.redact's one rule), no
    control characters, not longer than a line."""
    shown = redact_url(text.strip())
    shown = "".join(c if c.isprintable() else "?" for c in shown)
    return shown if len(shown) <= 200 else shown[:199] + "…"
