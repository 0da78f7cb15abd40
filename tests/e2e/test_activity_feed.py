"""The activity feed in real Chromium: its filters hold for live entries, session entries
name their session, and "Load older" brings older entries."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from agents.models import LogEntry
from control.demo import seed_agents, seed_sessions
from control.web.dashboard_context import FEED_PAGE
from sessions.models import TradingSession

LIVE = 10_000  # ms


@pytest.fixture
def demo(live_stack):
    seed_agents()
    seed_sessions()


@pytest.fixture
def history(demo):
    """More entries than a page shows, written before the page (and its hub) start: older
    than what the hub will push."""
    LogEntry.objects.bulk_create(
        LogEntry(source="control", level=20, message=f"entry {i:03d}") for i in range(FEED_PAGE + 30)
    )


def test_load_older_adds_the_entries_before_the_oldest_shown(history, logged_in_page):
    page = logged_in_page
    page.goto("/")
    items = page.locator("#feed-items .feed-item")
    expect(items).to_have_count(FEED_PAGE)
    expect(items.first).to_contain_text("entry 030")
    page.get_by_role("button", name="Load older").click()
    expect(items).to_have_count(FEED_PAGE + 30)
    expect(items.first).to_contain_text("entry 000")
    expect(items.nth(29)).to_contain_text("entry 029")
    expect(items.nth(30)).to_contain_text("entry 030")
    page.get_by_role("button", name="Load older").click()
    expect(page.locator("#feed-older")).to_have_text("No older activity")
    expect(items).to_have_count(FEED_PAGE + 30)


def choose(page, select: str, value: str) -> None:
    """Pick a filter and wait for the filtered list the page asks for."""
    with page.expect_response(lambda r: "/ui/feed" in r.url):
        page.locator(select).select_option(value)


def entry(**fields) -> LogEntry:
    return LogEntry.objects.create(**{"source": "control", "level": 20, **fields})


def test_live_entries_follow_the_source_filter(demo, logged_in_page):
    page = logged_in_page
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    choose(page, "#feed-source", "session")
    expect(page.locator("#feed-items .feed-item:not([hidden])")).to_have_count(0)
    hidden = entry(message="a person did something")
    wanted = entry(source="session", session_id="btc-strategy-test", message="bought 0.1 BTC")
    # The session entry arrives; the other one (older, same or earlier sweep) never does.
    shown = page.locator(f'#feed-items .feed-item[data-id="{wanted.id}"]')
    expect(shown).to_be_visible(timeout=LIVE)
    expect(page.locator(f'#feed-items .feed-item[data-id="{hidden.id}"]')).to_have_count(0)
    # Back to every source: new entries of any source come again.
    choose(page, "#feed-source", "")
    later = entry(message="a person did something else")
    expect(page.locator(f'#feed-items .feed-item[data-id="{later.id}"]')).to_be_visible(timeout=LIVE)


def test_live_entries_follow_the_severity_filter(demo, logged_in_page):
    page = logged_in_page
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    choose(page, "#feed-level", "error")
    info = entry(message="routine")
    warning = entry(source="reconciler", level=30, message="slow")
    error = entry(source="session", level=40, session_id="btc-strategy-test", message="broke")
    expect(page.locator(f'#feed-items .feed-item[data-id="{error.id}"]')).to_be_visible(timeout=LIVE)
    for other in (info, warning):
        expect(page.locator(f'#feed-items .feed-item[data-id="{other.id}"]')).to_have_count(0)


def test_the_filter_survives_a_reconnection(demo, logged_in_page):
    page = logged_in_page
    sockets = []

    def through(ws) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket("**/ws/control/", through)
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    choose(page, "#feed-source", "session")
    sockets[-1].close(code=1012, reason="service restart")
    expect(page.locator("#live-indicator")).to_contain_text("Reconnecting", timeout=LIVE)
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    hidden = entry(message="a person did something")
    wanted = entry(source="session", session_id="btc-strategy-test", message="sold 0.1 BTC")
    expect(page.locator(f'#feed-items .feed-item[data-id="{wanted.id}"]')).to_be_visible(timeout=LIVE)
    expect(page.locator(f'#feed-items .feed-item[data-id="{hidden.id}"]')).to_have_count(0)


@pytest.fixture
def session_history(demo) -> tuple[LogEntry, LogEntry]:
    """A session entry a page older than the first render, and one in it."""
    old = entry(source="session", session_id="btc-strategy-test", message="an old one")
    LogEntry.objects.bulk_create(
        LogEntry(source="control", level=20, message=f"filler {i}") for i in range(FEED_PAGE)
    )
    first = entry(source="session", session_id="btc-strategy-test", message="on first render")
    return old, first


def test_session_entries_name_their_session_live_first_and_older(session_history, logged_in_page):
    name = TradingSession.objects.get(pk="btc-strategy-test").name
    old, first = session_history
    page = logged_in_page
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=LIVE)
    live = entry(source="session", session_id="btc-strategy-test", message="pushed live")
    gone = entry(source="session", session_id="deleted-one", message="of a session since deleted")
    for item in (first, live, gone):
        expect(page.locator(f'#feed-items .feed-item[data-id="{item.id}"]')).to_be_visible(timeout=LIVE)
    page.get_by_role("button", name="Load older").click()
    expect(page.locator(f'#feed-items .feed-item[data-id="{old.id}"]')).to_be_attached(timeout=LIVE)
    for item in (old, first, live):
        link = page.locator(f'#feed-items .feed-item[data-id="{item.id}"] a.feed-session')
        expect(link).to_contain_text(name)
        expect(link).to_contain_text("btc-strategy-test")
        expect(link).to_have_attribute("href", "/sessions/btc-strategy-test/")
    gone_link = page.locator(f'#feed-items .feed-item[data-id="{gone.id}"] a.feed-session')
    expect(gone_link).to_contain_text("deleted-one")


def test_load_older_works_again_after_a_filter_showed_nothing(history, logged_in_page):
    page = logged_in_page
    page.goto("/")
    items = page.locator("#feed-items .feed-item")
    expect(items).to_have_count(FEED_PAGE)
    older = page.locator("#feed-older")
    page.locator("#feed-level").select_option("error")  # no errors at all
    expect(items).to_have_count(0)
    older.click()
    expect(older).to_have_text("No older activity")
    page.locator("#feed-level").select_option("")
    expect(items).to_have_count(FEED_PAGE)
    older.click()
    expect(items).to_have_count(FEED_PAGE + 30)
    expect(items.first).to_contain_text("entry 000")
