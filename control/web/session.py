"""The session details page (/sessions/<id>/) and its chart data (/sessions/<id>/chart.json).

The page is server-rendered from control.presenters (the API's own numbers and formats),
and its live parts are named partials of templates/sessions/detail.html, refreshed by
htmx every 2 s:

* `?partial=live`: the header's status, the metric cards, positions and open orders, as
  out-of-band swaps from one read (so the cards and tables come from the same moment);
* `?partial=fills&offset=N`: one page of the fills, newest first (FILLS_PAGE at a time).

The charts are drawn by static/js/session_detail.js from chart.json: OHLC candles built
(control.web.session_market) from the bar messages in the streams of the execution agent's market inputs (the
prices the paper broker fills at), buy/sell markers at the fills, and the equity curve.
Times are unix seconds (UTC), as lightweight-charts expects.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import redis
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseStopPolling, reswap, trigger_client_event

from agents.runtime.redis import get_redis
from agents.validators import stored_symbols
from control import presenters
from control.errors import NotFound, json_error
from control.query import BadParameter, decimal_param, int_param
from control.web import session_market
from control.web.dashboard_context import status_icon
from control.web.session_market import (
    Bar,
    MarketTimeline,
    build_candles,
    market_producers,
    price_labels,
    producers_simulated,
    read_bars,
)
from sessions.models import EquityPoint, Fill, Side, TradingSession

FILLS_PAGE = 50
DEFAULT_INTERVAL = 10  # seconds per candle
MAX_INTERVAL = 86_400
MAX_FILLS_OFFSET = 10_000_000
MAX_SINCE = 253_402_300_799  # 9999-12-31 23:59:59 UTC
INTERVAL_CHOICES = [(5, "5 s"), (10, "10 s"), (30, "30 s"), (60, "1 min"), (300, "5 min")]
MAX_MARKERS = 1000  # the newest fills marked per symbol
MAX_EQUITY_POINTS = presenters.MAX_EQUITY_POINTS

BUY_COLOR = "#26a69a"
SELL_COLOR = "#ef5350"


# --- the page ----------------------------------------------------------------------------


@require_GET
def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    """The page, or one of its live partials (`?partial=live` / `?partial=fills`)."""
    session = (
        TradingSession.objects.select_related("decision_agent", "execution_agent")
        .filter(pk=session_id)
        .first()
    )
    partial = request.GET.get("partial")
    if session is None:
        return _gone(session_id) if partial else _not_found(request, session_id)
    try:
        return _render_detail(request, session, partial)
    except NotFound:  # deleted between the lookup and the read
        return _gone(session_id) if partial else _not_found(request, session_id)


def _gone(session_id: str) -> HttpResponse:
    """A poll for a session deleted meanwhile: htmx stops polling on 286; the page is left
    as it is, and says why once."""
    response = reswap(HttpResponseStopPolling(), "none")
    return trigger_client_event(
        response, "toast", {"level": "warning", "message": f"Session {session_id} no longer exists."}
    )


def _not_found(request: HttpRequest, session_id: str) -> HttpResponse:
    return render(request, "sessions/not_found.html", {"session_id": session_id}, status=404)


def _render_detail(request: HttpRequest, session: TradingSession, partial: str | None) -> HttpResponse:
    try:
        offset = int_param(request.GET, "offset", default=0, high=MAX_FILLS_OFFSET)
    except BadParameter as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    try:
        interval = _interval(request.GET)
        interval_error = ""
    except BadParameter as exc:
        interval, interval_error = DEFAULT_INTERVAL, str(exc)

    if partial == "fills":
        return render(request, "sessions/detail.html#fills", _fills_context(session, offset, interval))
    if partial == "live":
        context = {**_live_context(session), "oob": True}
        return render(request, "sessions/detail.html#live", context)
    if partial:
        return HttpResponse(
            f"Unknown partial {partial!r}: use 'live' or 'fills'.", status=400, content_type="text/plain"
        )

    producers = market_producers(session)
    chart_query = urlencode({"interval": interval})
    context = {
        **_live_context(session),
        **_fills_context(session, offset, interval),
        "decision_agent": session.decision_agent,
        "execution_agent": session.execution_agent,
        "producers": producers,
        "simulated": producers_simulated(producers),
        "prices": price_labels(session),
        "interval": interval,
        "interval_error": interval_error,
        "interval_choices": [
            (seconds, label, f"?{urlencode({'interval': seconds})}") for seconds, label in INTERVAL_CHOICES
        ],
        "chart_url": f"{reverse('session-chart', args=[session.session_id])}?{chart_query}",
        "live_url": _page_url(session, partial="live"),
    }
    return render(request, "sessions/detail.html", context)


def _page_url(session: TradingSession, **params: Any) -> str:
    base = reverse("session-detail", args=[session.session_id])
    return f"{base}?{urlencode(params)}" if params else base


def _interval(query: Mapping[str, str]) -> int:
    """?interval=: seconds per candle."""
    return int_param(query, "interval", default=DEFAULT_INTERVAL, low=1, high=MAX_INTERVAL)


def _sign(value: Any) -> int:
    """-1, 0 or 1 for an amount as the presenters give it (a decimal string or a number)."""
    if value is None:
        return 0
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return 0
    return (number > 0) - (number < 0)


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else fraction * 100


def _signed_pct(value: float | None) -> str:
    """2.3 -> "+2.30 %", -0.0048 -> "-0.0048 %" (a small move is not shown as 0.00)."""
    if value is None:
        return "–"
    if value == 0:
        return "0.00 %"
    sign = "+" if value > 0 else "-"
    size = abs(value)
    return f"{sign}{size:.2f} %" if size >= 0.005 else f"{sign}{size:.2g} %"


def _live_context(session: TradingSession) -> dict[str, Any]:
    """Status, metrics, positions and open orders, read in one transaction by the API's
    presenter (so they reconcile with each other and with GET /api/.../sessions/<id>).
    Raises NotFound if the session was deleted meanwhile."""
    detail = presenters.session_detail(session.session_id)
    m = detail["metrics"]
    return {
        "session": detail,
        "status_icon": status_icon(detail["status"]),
        "metrics": m,
        "signs": {key: _sign(m.get(key)) for key in ("pnl", "pnl_pct", "realized_pnl", "unrealized_pnl")},
        "pnl_pct_text": _signed_pct(m.get("pnl_pct")),
        "percents": {
            "win_rate": _percent(m.get("win_rate")),
            "max_drawdown": _percent(m.get("max_drawdown")),
            "exposure": _percent(m.get("exposure")),
        },
        "positions": [{**p, "unrealized_sign": _sign(p["unrealized_pnl"])} for p in detail["positions"]],
        "open_orders": detail["open_orders"],
    }


@dataclass(frozen=True)
class PageLink:
    """A link to another page of fills: `href` for the browser, `hx` for htmx's swap."""

    href: str
    hx: str


def _fills_context(session: TradingSession, offset: int, interval: int) -> dict[str, Any]:
    page = presenters.session_trades(session.session_id, FILLS_PAGE, offset)
    items = [{**f, "realized_sign": _sign(f["realized_pnl"])} for f in page["items"]]
    count = page["count"]
    keep = {"interval": interval} if interval != DEFAULT_INTERVAL else {}

    def link(at: int) -> PageLink:
        href = _page_url(session, **({"offset": at} if at else {}), **keep)
        return PageLink(href=href, hx=_page_url(session, partial="fills", offset=at, **keep))

    return {
        "fills": {
            "items": items,
            "count": count,
            "offset": offset,
            "first": offset + 1 if items else 0,
            "last": offset + len(items),
            "older": link(offset + FILLS_PAGE) if offset + FILLS_PAGE < count else None,
            "newest": link(0) if offset > 0 else None,
            # Only the newest page follows new fills: an older one would shift under the reader.
            "poll_url": _page_url(session, partial="fills", **keep) if offset == 0 else "",
        }
    }


# --- chart.json ----------------------------------------------------------------------------


@require_GET
def session_chart(request: HttpRequest, session_id: str) -> JsonResponse:
    """Candles and fill markers per symbol, and the equity curve.

    ?interval= seconds per candle (1..86400, default 10). ?since= unix seconds: only the
    candles and equity points from then on (`full` false: the page updates its series
    with them); without it the newest MAX_CANDLES candles and MAX_EQUITY_POINTS points
    (`full` true). Markers always cover the candle window: the page replaces its markers.
    """
    session = (
        TradingSession.objects.filter(pk=session_id).only("session_id", "symbols", "execution_agent").first()
    )
    if session is None:
        return json_error(404, f"There is no session with id {session_id!r}.", "not_found")
    try:
        interval = _interval(request.GET)
        since = _since(request.GET)
    except BadParameter as exc:
        return json_error(400, str(exc), "bad_request")
    symbols = stored_symbols(session.symbols)
    producers = market_producers(session)

    bars: list[Bar] = []
    sources: set[str] = set()
    labels: set[str] = set()
    complete = True
    warning = ""
    timeline = None
    try:
        client = get_redis()
        fast = False
        for producer in producers:
            result = read_bars(client, producer, set(symbols), interval, since)
            bars += result.bars
            sources |= result.sources
            labels |= result.labels
            complete = complete and result.complete
            fast = fast or result.accelerated
        if fast:
            # Fills and equity happen on the wall clock; the candles of an accelerated
            # market stand on market time. The timeline places the first on the second,
            # over the whole candle window (a poll's bars cover only its newest part).
            window = bars
            if since is not None:
                reads = [read_bars(client, p, set(symbols), interval, None) for p in producers]
                window = [b for read in reads for b in read.bars]
            timeline = MarketTimeline(window)
    except redis.RedisError:
        warning = "Market data is unavailable: Redis does not answer."
    if not producers:
        warning = (
            "This session has no execution agent with a market data input: there are no prices to chart."
        )
    candles = build_candles(bars, interval, drop_oldest=not complete and since is None, since=since)

    windows = {}
    for symbol in symbols:
        rows = candles.get(symbol) or []
        if since is not None:
            windows[symbol] = since - session_market.MAX_CANDLES * interval
        elif rows:
            windows[symbol] = rows[0]["time"]
    return JsonResponse(
        {
            "session_id": session.session_id,
            "interval": interval,
            "full": since is None,
            "symbols": symbols,
            "simulated": "simulated" in sources,
            "sources": sorted(sources),
            # Where the charted prices come from, as the page says it ("Simulated, 60x"...):
            # the candles are drawn at the bars' own (market) times.
            "prices": sorted(labels),
            "candles": {symbol: candles.get(symbol, []) for symbol in symbols},
            "markers": fill_markers(session.session_id, symbols, interval, windows, timeline),
            "equity": equity_points(session.session_id, since, timeline),
            "warning": warning or None,
            "generated_at": time.time(),
        }
    )


def _since(query: Mapping[str, str]) -> int | None:
    """?since=: unix seconds, up to the last second a datetime holds."""
    value = decimal_param(query, "since", high=MAX_SINCE, what="unix seconds")
    return None if value is None else int(value)


def fill_markers(
    session_id: str,
    symbols: list[str],
    interval: int,
    windows: dict[str, int],
    timeline: MarketTimeline | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """A marker per fill in each symbol's candle window, at its candle: buys an arrow up
    below the bar, sells an arrow down above it, labelled "B 0.015" / "S 0.015".

    With a `timeline` (an accelerated market), a fill stands at the market time of the
    newest bar that had arrived when it was made."""
    out: dict[str, list[dict[str, Any]]] = {symbol: [] for symbol in symbols}
    for symbol, start in windows.items():
        if timeline is not None:
            wall_start = timeline.wall_time(start, symbol)
            if wall_start is None:
                continue  # no bar of the window has arrived: nothing to stand on
            start = int(wall_start)
        fills = (
            Fill.objects.filter(
                session_id=session_id, symbol=symbol, ts__gte=datetime.fromtimestamp(start, UTC)
            )
            .order_by("-ts", "-fill_id")
            .values_list("fill_id", "side", "quantity", "price", "ts")[:MAX_MARKERS]
        )
        markers = []
        for fill_id, side, qty, price, ts in reversed(list(fills)):
            at = ts.timestamp() if timeline is None else timeline.market_time(ts.timestamp(), symbol)
            if at is None:
                continue
            buy = side == Side.BUY
            markers.append(
                {
                    "id": fill_id,
                    "time": int(at // interval) * interval,
                    "side": side,
                    "position": "belowBar" if buy else "aboveBar",
                    "shape": "arrowUp" if buy else "arrowDown",
                    "color": BUY_COLOR if buy else SELL_COLOR,
                    "text": f"{'B' if buy else 'S'} {presenters.quantity(qty)}",
                    "price": presenters.amount(price),
                }
            )
        out[symbol] = markers
    return out


def equity_points(
    session_id: str, since: int | None, timeline: MarketTimeline | None = None
) -> list[dict[str, float]]:
    """The equity curve, oldest first, one point per second (the last of that second):
    the newest MAX_EQUITY_POINTS, or those from `since` on. With a `timeline` (an
    accelerated market) on market time, like the candles (see fill_markers)."""
    rows = EquityPoint.objects.filter(session_id=session_id)
    if since is not None:
        start = since if timeline is None else timeline.wall_time(since)
        if start is None:
            return []
        rows = rows.filter(ts__gte=datetime.fromtimestamp(start, UTC))
    newest = rows.order_by("-ts", "-id").values_list("ts", "equity")[:MAX_EQUITY_POINTS]
    by_second: dict[int, float] = {}
    for ts, equity in reversed(list(newest)):
        at = ts.timestamp() if timeline is None else timeline.market_time(ts.timestamp())
        if at is not None:
            by_second[int(at)] = float(equity)
    return [{"time": t, "value": v} for t, v in sorted(by_second.items())]
