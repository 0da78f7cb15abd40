"""The session details page (/sessions/<id>/), its htmx partials and its chart data
(/sessions/<id>/chart.json), through Django's test client.

The ledger is made by the real paper broker (place_order + fill_market_order); market
data are bar messages XADDed to the stream of the execution agent's market input, under
this run's Redis prefix (tests/conftest.py deletes them after each test).
"""

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from html import escape

import pytest
from django.template.defaultfilters import floatformat
from django.urls import reverse

from agents.runtime import keys
from agents.states import Desired, Status
from control import presenters
from control.web import session as session_pages
from control.web import session_market
from sessions import broker
from sessions.metrics import session_metrics
from sessions.models import Fill, TradingSession

pytestmark = pytest.mark.django_db

D = Decimal
T0 = 1_700_000_000  # a multiple of 10 (and of 5): candle boundaries fall on it


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def iso(seconds: float) -> str:
    return at(seconds).isoformat()


@pytest.fixture
def graph(make_agent):
    feed = make_agent("feed", symbols=["BTC-USD", "ETH-USD"])
    execution = make_agent("broker", kind="execution", role="execution", symbols=[], config={})
    execution.inputs_from.set([feed])
    decision = make_agent("decider", kind="decision", role="decision", symbols=["BTC-USD"], config={})
    return {"feed": feed, "execution": execution, "decision": decision}


@pytest.fixture
def session(graph):
    return TradingSession.objects.create(
        session_id="alpha",
        name="Alpha <b>bold</b> & co",
        symbols=["BTC-USD", "ETH-USD"],
        decision_agent=graph["decision"],
        execution_agent=graph["execution"],
        starting_cash=D("10000"),
        fee_bps=D("10"),
        slippage_bps=D("5"),
        status=Status.RUNNING,
        desired_state=Desired.RUNNING,
        run_id="r1",
    )


def trade(session_id, side, qty, mark, symbol="BTC-USD", ts=None) -> Fill:
    order = broker.place_order(session_id, symbol, side, D(str(qty)))
    outcome = broker.fill_market_order(order.pk, D(str(mark)), ts=ts)
    assert outcome.filled, outcome.reason
    return outcome.fill


@pytest.fixture
def traded(session):
    """A buy of 0.015 BTC at T0+3 and a sell of 0.005 at T0+15, then a mark at T0+16 below
    the buy (an unrealized loss larger than the sell's gain)."""
    buy = trade(session.pk, "buy", "0.015", "60000", ts=at(3))
    sell = trade(session.pk, "sell", "0.005", "60500", ts=at(15))
    broker.mark_to_market(session.pk, {"BTC-USD": D("59000")}, ts=at(16))
    return {"buy": buy, "sell": sell}


def xadd(redis_client, producer: str, message: dict) -> None:
    redis_client.xadd(keys.stream("agent", producer), {"data": json.dumps(message)})


def bar(ts: float, o, h, low, c, symbol="BTC-USD", source="simulated") -> dict:
    return {
        "type": "bar", "ts": iso(ts), "symbol": symbol, "open": o, "high": h, "low": low, "close": c,
        "volume": 1.0, "price": c, "source": source,
    }  # fmt: skip


@pytest.fixture
def bars(redis_client):
    """Known OHLC: two BTC candles of 10 s (T0 and T0+10) and one ETH candle, plus noise."""
    for message in (
        bar(1, 100, 105, 99, 101),
        bar(1, 3000, 3010, 2990, 3005, symbol="ETH-USD"),
        {"type": "news", "ts": iso(2), "symbol": "BTC-USD", "headline": "x", "source": "simulated"},
        bar(4, 101, 110, 100, 108),
        bar(9, 108, 109, 95, 96),
        bar(10, 50, 51, 49, 50, symbol="DOGE-USD"),  # not a symbol of the session
        bar(12, 96, 97, 90, 92),
    ):
        xadd(redis_client, "feed", message)
    redis_client.xadd(keys.stream("agent", "feed"), {"data": "not json"})


def page_url(session_id="alpha", **params):
    url = reverse("session-detail", args=[session_id])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def chart_url(session_id="alpha", **params):
    url = reverse("session-chart", args=[session_id])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def between(html: str, element_id: str) -> str:
    """The HTML from the element with this id to the end of its <section>/<div> (roughly)."""
    start = html.index(f'id="{element_id}"')
    end = html.find("</section>", start)
    return html[start : end if end != -1 else len(html)]


# --- the page ----------------------------------------------------------------------------


def test_the_page_shows_the_ledger_numbers_of_a_session_that_traded(viewer_client, traded):
    response = viewer_client.get(page_url())

    assert response.status_code == 200
    html = response.content.decode()
    values = session_metrics("alpha")
    metrics = presenters.metrics_dict(values)
    assert values["trades"] == 2
    # Every card shows the ledger's number rounded for people, with the exact one in its title.
    for key in ("equity", "cash", "fees", "realized_pnl", "unrealized_pnl"):
        assert f'title="{metrics[key]}"' in html or f'{metrics[key]}"' in html, key
        assert floatformat(metrics[key], "2g") in html, key
    # P&L: negative, in red, with its sign (colour is never the only carrier).
    assert values["pnl"] < 0
    pnl = between(html, "metric-pnl")
    assert "pnl-neg" in pnl and floatformat(metrics["pnl"], "2g") in pnl and "-" in pnl
    pct = between(html, "metric-pnl-pct")
    assert f">-{abs(metrics['pnl_pct']):.2f} %<" in pct and "pnl-neg" in pct
    assert re.search(r'id="metric-trades">\s*2\s*<', html)
    # Win rate: the one sell made money net of fees or not; either way it is a percentage.
    assert f"{floatformat(metrics['win_rate'] * 100, 1)} %" in html
    # The position left: 0.01 BTC at its last mark.
    positions = between(html, "session-positions")
    assert "BTC-USD" in positions and ">0.01<" in positions
    assert floatformat("59000", "2g") in positions
    # The fills table, newest first, with B/S sides as text.
    fills = between(html, "session-fills")
    rows = re.findall(r'<tr class="fill-row" id="fill-([^"]+)"', fills)
    assert rows == [traded["sell"].fill_id, traded["buy"].fill_id]
    assert "0.015" in fills and "0.005" in fills and "> sell</span>" in fills and "> buy</span>" in fills


@pytest.mark.parametrize(
    "value, text",
    [(2.3, "+2.30 %"), (-12.345, "-12.35 %"), (0.0, "0.00 %"), (-0.0048, "-0.0048 %"), (None, "–")],
)
def test_pnl_percent_keeps_its_sign_even_when_small(value, text):
    assert session_pages._signed_pct(value) == text


def test_the_header_shows_status_agents_and_a_way_back(viewer_client, traded):
    TradingSession.objects.filter(pk="alpha").update(started_at=at(0))
    html = viewer_client.get(page_url()).content.decode()

    badge = '<span class="status-badge status-running"><i class="bi bi-play-circle-fill" aria-hidden="true">'
    assert badge + "</i> running</span>" in html
    assert "Back to the panel" in html and f'href="{reverse("index")}"' in html
    assert "<code>decider</code>" in html and "<code>broker</code>" in html
    assert f'<time data-ago datetime="{at(0).isoformat()}' in html
    # No control buttons here: the main page owns them.
    assert "hx-post" not in html


def test_user_data_is_escaped(viewer_client, session):
    html = viewer_client.get(page_url()).content.decode()

    assert "Alpha &lt;b&gt;bold&lt;/b&gt; &amp; co" in html
    assert "<b>bold</b>" not in html


def test_an_unknown_session_is_a_404_page(viewer_client, db):
    response = viewer_client.get(page_url("no-such-session"))

    assert response.status_code == 404
    html = response.content.decode()
    assert "Session not found" in html and "<code>no-such-session</code>" in html
    assert "Back to the panel" in html
    assert "sessions/not_found.html" in [t.name for t in response.templates]


def test_an_unknown_session_in_chart_json_is_a_json_404(viewer_client, db):
    response = viewer_client.get(chart_url("no-such-session"))

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("url", [page_url(), page_url(partial="live"), chart_url()])
def test_login_is_required(client, session, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_page_loads_its_own_script_and_passes_only_urls(viewer_client, session):
    html = viewer_client.get(page_url()).content.decode()

    assert "js/session_detail.js" in html and "lightweight-charts-5.2.1.standalone.production.js" in html
    assert f'data-chart-url="{reverse("session-chart", args=["alpha"])}?interval=10"' in html
    # No inline script at all (the Content-Security-Policy would refuse it).
    assert len(re.findall(r"<script>", html)) == 0
    # A chart container per symbol, and the equity chart.
    assert re.findall(r'data-chart="candles" data-symbol="([^"]+)"', html) == ["BTC-USD", "ETH-USD"]
    assert 'data-chart="equity"' in html


# --- the partials -------------------------------------------------------------------------


def test_the_live_partial_swaps_status_metrics_positions_and_orders_out_of_band(viewer_client, traded):
    broker.place_order("alpha", "BTC-USD", "sell", D("0.002"), "limit", D("99999"))  # stays open

    response = viewer_client.get(page_url(partial="live"), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    for element_id in ("session-status", "session-metrics", "session-positions", "session-orders"):
        assert re.search(rf'id="{element_id}"[^>]*hx-swap-oob="true"', html), element_id
    orders = between(html, "session-orders")
    assert "limit" in orders and "0.002" in orders and floatformat("99999", "2g") in orders


def test_the_page_polls_its_tables_and_metrics_every_2_seconds(viewer_client, traded):
    html = viewer_client.get(page_url()).content.decode()

    poller = re.search(r'<div id="session-live-poll"[^>]*>', html).group(0)
    assert f'hx-get="{page_url(partial="live")}"' in poller and 'hx-swap="none"' in poller
    assert "every 2s" in poller
    fills = re.search(r'<section id="session-fills"[^>]*>', html, re.S).group(0)
    assert f'hx-get="{page_url(partial="fills")}"' in fills and "every 2s" in fills
    # The full page does not swap itself out of band.
    assert "hx-swap-oob" not in html


def test_fills_are_paged_newest_first_with_a_load_older_link(viewer_client, traded, monkeypatch):
    monkeypatch.setattr(session_pages, "FILLS_PAGE", 1)

    first = viewer_client.get(page_url(partial="fills"), HTTP_HX_REQUEST="true").content.decode()
    assert re.findall(r'id="fill-([^"]+)"', first) == [traded["sell"].fill_id]
    assert "Load older" in first and f'hx-get="{escape(page_url(partial="fills", offset=1))}"' in first
    assert f'href="{page_url(offset=1)}"' in first
    assert "1–1 of 2" in first

    older = viewer_client.get(page_url(partial="fills", offset=1), HTTP_HX_REQUEST="true").content.decode()
    assert re.findall(r'id="fill-([^"]+)"', older) == [traded["buy"].fill_id]
    assert "Load older" not in older and "Newest fills" in older
    # An older page holds still (no polling); the newest one follows new fills.
    assert "every 2s" not in older and "every 2s" in first

    # The full page honours ?offset= too (the link works without JavaScript).
    page = viewer_client.get(page_url(offset=1)).content.decode()
    assert re.findall(r'id="fill-([^"]+)"', page) == [traded["buy"].fill_id]


def test_a_poll_for_a_deleted_session_stops_polling(viewer_client, session):
    session.delete()

    response = viewer_client.get(page_url(partial="live"), HTTP_HX_REQUEST="true")

    assert response.status_code == 286  # htmx stops polling on 286
    assert response["HX-Reswap"] == "none"
    assert json.loads(response["HX-Trigger"])["toast"]["level"] == "warning"


def test_an_unknown_partial_is_refused_as_plain_text(viewer_client, session):
    response = viewer_client.get(page_url(partial="<script>"))

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")


# --- chart.json -----------------------------------------------------------------------------


def test_chart_json_has_candles_markers_and_equity(viewer_client, traded, bars):
    response = viewer_client.get(chart_url())

    assert response.status_code == 200
    body = response.json()
    assert body["session_id"] == "alpha" and body["interval"] == 10 and body["full"] is True
    assert body["symbols"] == ["BTC-USD", "ETH-USD"]
    assert body["simulated"] is True and body["sources"] == ["simulated"]
    assert body["warning"] is None
    # 10 s candles: open of the first bar, close of the last, extremes of all.
    assert body["candles"]["BTC-USD"] == [
        {"time": T0, "open": 100, "high": 110, "low": 95, "close": 96},
        {"time": T0 + 10, "open": 96, "high": 97, "low": 90, "close": 92},
    ]
    assert body["candles"]["ETH-USD"] == [
        {"time": T0, "open": 3000, "high": 3010, "low": 2990, "close": 3005}
    ]
    assert "DOGE-USD" not in body["candles"]
    # A marker per fill, at its candle: buys below with an arrow up, sells above, arrow down.
    assert body["markers"]["BTC-USD"] == [
        {
            "id": traded["buy"].fill_id, "time": T0, "side": "buy", "position": "belowBar",
            "shape": "arrowUp", "color": session_pages.BUY_COLOR, "text": "B 0.015",
            "price": presenters.amount(traded["buy"].price),
        },
        {
            "id": traded["sell"].fill_id, "time": T0 + 10, "side": "sell", "position": "aboveBar",
            "shape": "arrowDown", "color": session_pages.SELL_COLOR, "text": "S 0.005",
            "price": presenters.amount(traded["sell"].price),
        },
    ]  # fmt: skip
    assert body["markers"]["ETH-USD"] == []
    # The equity curve: the mark at T0+16, as a number per second.
    expected = session_metrics("alpha")["equity"]
    assert body["equity"] == [{"time": T0 + 16, "value": float(expected)}]


def test_chart_json_takes_the_interval(viewer_client, traded, bars):
    body = viewer_client.get(chart_url(interval=5)).json()

    assert body["interval"] == 5
    assert body["candles"]["BTC-USD"] == [
        {"time": T0, "open": 100, "high": 110, "low": 99, "close": 108},
        {"time": T0 + 5, "open": 108, "high": 109, "low": 95, "close": 96},
        {"time": T0 + 10, "open": 96, "high": 97, "low": 90, "close": 92},
    ]
    assert [m["time"] for m in body["markers"]["BTC-USD"]] == [T0, T0 + 15]


@pytest.mark.parametrize(
    "params", [{"interval": "0"}, {"interval": "abc"}, {"interval": "86401"}, {"since": "-1"}]
)
def test_chart_json_refuses_bad_parameters(viewer_client, session, params):
    response = viewer_client.get(chart_url(**params))

    assert response.status_code == 400
    assert response.json()["code"] == "bad_request" and " " in response.json()["detail"]


def test_chart_json_since_returns_only_what_changed(viewer_client, traded, bars):
    body = viewer_client.get(chart_url(since=T0 + 10)).json()

    assert body["full"] is False
    assert body["candles"]["BTC-USD"] == [{"time": T0 + 10, "open": 96, "high": 97, "low": 90, "close": 92}]
    assert body["candles"]["ETH-USD"] == []
    assert [p["time"] for p in body["equity"]] == [T0 + 16]
    # Markers still cover the whole window: the page replaces its markers each time.
    assert [m["text"] for m in body["markers"]["BTC-USD"]] == ["B 0.015", "S 0.005"]

    later = viewer_client.get(chart_url(since=T0 + 20)).json()
    assert later["candles"]["BTC-USD"] == [] and later["equity"] == []


def test_chart_json_keeps_the_newest_candles_read_in_chunks(
    viewer_client, session, redis_client, monkeypatch
):
    """Reading newest first in chunks stops once there are enough candles; the oldest,
    perhaps partial, candle is left out, the others are exactly those of all the bars."""
    monkeypatch.setattr(session_market, "MAX_CANDLES", 3)
    monkeypatch.setattr(session_market, "READ_CHUNK", 7)
    prices = [100 + (i * 7) % 13 for i in range(61)]
    for i, price in enumerate(prices):  # a bar a second for a minute
        xadd(redis_client, "feed", bar(i, price, price + 2, price - 1, price + 1))

    body = viewer_client.get(chart_url()).json()

    candles = body["candles"]["BTC-USD"]
    assert [c["time"] for c in candles] == [T0 + 40, T0 + 50, T0 + 60]
    for candle in candles:
        start = candle["time"] - T0
        window = prices[start : start + 10]
        assert candle == {
            "time": candle["time"],
            "open": window[0],
            "high": max(window) + 2,
            "low": min(window) - 1,
            "close": window[-1] + 1,
        }


def test_csv_prices_are_not_labelled_simulated(viewer_client, session, redis_client):
    xadd(redis_client, "feed", bar(1, 100, 101, 99, 100, source="csv"))

    body = viewer_client.get(chart_url()).json()
    html = viewer_client.get(page_url()).content.decode()

    assert body["simulated"] is False and body["sources"] == ["csv"]
    assert re.search(r'id="simulated-badge" hidden', html)


def test_simulated_prices_show_the_badge(viewer_client, session, redis_client):
    xadd(redis_client, "feed", bar(1, 100, 101, 99, 100))

    html = viewer_client.get(page_url()).content.decode()

    assert re.search(r'id="simulated-badge"\s*title=', html)
    assert "Simulated market data" in html


def test_a_session_without_market_data_has_empty_series_and_says_why(viewer_client, graph):
    TradingSession.objects.create(
        session_id="lonely",
        name="Lonely",
        symbols=["BTC-USD"],
        starting_cash=D("100"),
        decision_agent=graph["decision"],
    )

    body = viewer_client.get(chart_url("lonely")).json()

    assert body["candles"] == {"BTC-USD": []} and body["markers"] == {"BTC-USD": []} and body["equity"] == []
    assert "no execution agent" in body["warning"]
    assert viewer_client.get(page_url("lonely")).status_code == 200


# --- where prices come from ---------------------------------------------------------------


def prices_fact(html: str) -> list[str]:
    found = re.search(r'<dd id="session-prices"[^>]*>(.*?)</dd>', html, re.S)
    assert found, "the page has no Prices fact"
    return re.findall(r'<span class="badge[^"]*">([^<]*)</span>', found.group(1))


def test_the_page_says_which_source_the_session_trades_on(viewer_client, session):
    html = viewer_client.get(page_url()).content.decode()

    assert prices_fact(html) == ["Simulated"]
    assert '<span id="chart-prices">Simulated</span>' in html


def test_the_prices_fact_lists_every_market_data_agent_upstream_of_the_decision_and_execution(
    viewer_client, session, graph, make_agent, settings, tmp_path
):
    """The execution agent fills at an accelerated simulation; the decision agent's signals
    come, through a technical agent, from a replayed file. Both are named, once each."""
    settings.MARKET_DATA_DIR = tmp_path
    graph["feed"].config = {"source": "simulated", "speed": 60}
    graph["feed"].save()
    replay = make_agent("replay", config={"source": "csv", "csv_path": "btc-2024.csv"})
    technical = make_agent("tech", kind="technical", role="specialized_technical", config={})
    technical.inputs_from.set([replay])
    graph["decision"].inputs_from.set([technical, graph["feed"]])

    html = viewer_client.get(page_url()).content.decode()

    assert prices_fact(html) == ["Replay: btc-2024.csv", "Simulated, 60x"]


def test_a_session_without_a_market_data_agent_says_so(viewer_client, session, graph):
    graph["execution"].inputs_from.clear()

    html = viewer_client.get(page_url()).content.decode()

    assert prices_fact(html) == []
    assert "no market data agent" in html


def test_chart_json_labels_the_prices_it_charts(viewer_client, session, redis_client):
    xadd(redis_client, "feed", bar(1, 100, 101, 99, 100) | {"speed": 60, "interval_seconds": 60})
    xadd(redis_client, "feed", bar(2, 100, 101, 99, 100, source="exchange") | {"exchange": "binance"})

    body = viewer_client.get(chart_url()).json()

    assert body["prices"] == ["Live: Binance", "Simulated, 60x"]


def test_an_accelerated_markets_fills_and_equity_stand_on_its_market_time(
    viewer_client, session, redis_client
):
    """Bars a minute of market time apart arrive a second apart (60x), ahead of the clock:
    a fill made between two arrivals stands on the candle of the bar it was priced at, and
    so does the equity, instead of at a wall time the chart's axis does not have."""
    wall0 = T0 - 100_000  # the wall clock, far behind the market's T0
    for i in range(5):
        message = bar(60 * i, 100 + i, 101 + i, 99 + i, 100 + i) | {"speed": 60, "interval_seconds": 60}
        redis_client.xadd(
            keys.stream("agent", "feed"), {"data": json.dumps(message)}, id=f"{(wall0 + i) * 1000}-0"
        )
    wall = lambda seconds: datetime.fromtimestamp(wall0 + seconds, UTC)  # noqa: E731
    trade(session.pk, "buy", "0.01", "102", ts=wall(2.5))  # after bar 2 arrived, before bar 3
    broker.mark_to_market(session.pk, {"BTC-USD": D("103")}, ts=wall(3.2))

    body = viewer_client.get(chart_url(interval=20)).json()

    assert [c["time"] for c in body["candles"]["BTC-USD"]] == [T0 + 60 * i for i in range(5)]
    assert [m["time"] for m in body["markers"]["BTC-USD"]] == [T0 + 120]
    assert [p["time"] for p in body["equity"]] == [T0 + 180]  # the mark, after bar 3 arrived
    # A poll from the newest candle on keeps the markers of the whole window.
    later = viewer_client.get(chart_url(interval=20, since=T0 + 240)).json()
    assert [m["time"] for m in later["markers"]["BTC-USD"]] == [T0 + 120]
    assert later["equity"] == []
