"""Every HTTP route of the URLconf and every websocket route, as concrete paths.

Read from django.urls.get_resolver() and control.live.routing, not listed by hand, so a route
added later is tested without anyone remembering to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern

from control.web.dashboard import SESSION_ACTIONS

AGENT_ID = "feed"
SESSION_ID = "runner"
# Values for path parameters; every other parameter gets "1".
PARAMETER_VALUES = {"agent_id": [AGENT_ID], "session_id": [SESSION_ID], "action": sorted(SESSION_ACTIONS)}
CONVERTER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
# A named group in an admin regex: its first alternative, else "1".
NAMED_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^()]*)\)")


@dataclass(frozen=True)
class Route:
    path: str
    name: str  # the URL name with its namespace, or the view's name
    view: object

    def __str__(self) -> str:
        return self.path


def _patterns(patterns: list, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, URLPattern, str]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _patterns(entry.url_patterns, prefix + _pattern_text(entry.pattern), ns)
        else:
            yield prefix + _pattern_text(entry.pattern), entry, namespace


def _pattern_text(pattern) -> str:
    if isinstance(pattern, RoutePattern):
        return str(pattern)
    assert isinstance(pattern, RegexPattern), pattern
    return "re:" + pattern._regex


def _group_sample(match: re.Match) -> str:
    body = match["body"]
    return body.split("|")[0] if "|" in body or body.isidentifier() else "1"


def _fill(text: str) -> list[str]:
    """Concrete paths for one pattern (one per value of a parameter with several)."""
    if "re:" in text:
        text = text.replace("re:", "").replace("^", "").replace("$", "")
        return ["/" + NAMED_GROUP.sub(_group_sample, text)]
    paths = ["/" + text]
    for match in CONVERTER.finditer(text):
        values = PARAMETER_VALUES.get(match["name"], ["1"])
        paths = [p.replace(match[0], v, 1) for p in paths for v in values]
    return paths


def http_routes() -> list[Route]:
    routes: dict[str, Route] = {}
    for text, pattern, namespace in _patterns(get_resolver().url_patterns):
        name = f"{namespace}{pattern.name}" if pattern.name else getattr(pattern.callback, "__name__", text)
        for path in _fill(text):
            # The concrete path must reach the pattern it was made from (ninja makes one
            # pattern per method of a path: the path is tested once, with every method).
            route = text.replace("re:^", "").replace("re:", "")
            assert resolve(path).route == route, f"{path} does not resolve to {text}"
            routes.setdefault(path, Route(path, name, pattern.callback))
    return list(routes.values())


def websocket_paths() -> list[str]:
    from control.live.routing import websocket_urlpatterns

    return [path for pattern in websocket_urlpatterns for path in _fill(str(pattern.pattern))]
