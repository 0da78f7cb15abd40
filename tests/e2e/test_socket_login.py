"""An open panel follows its login: when the login ends elsewhere (a logout in another
tab, a password change, a deactivation), the page's socket is closed by the server
within seconds (control.live.socket_auth) and the page goes to the login form."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

LOGIN_URL = re.compile(r"/login/(\?next=/)?$")
# The server re-checks every 2 s; the page reloads at once on 4401.
WITHIN_MS = 10_000


def test_a_logout_in_another_tab_ends_the_open_panel(logged_in_page):
    page = logged_in_page
    other = page.context.new_page()
    other.goto("/")
    other.get_by_role("button", name="Log out").click()
    expect(other).to_have_url(LOGIN_URL)
    expect(page).to_have_url(LOGIN_URL, timeout=WITHIN_MS)


@pytest.mark.parametrize("change", ["password", "deactivate"])
def test_a_password_change_or_deactivation_ends_the_open_panel(logged_in_page, operator, change):
    page = logged_in_page
    if change == "password":
        operator.set_password("a-new-password")
    else:
        operator.is_active = False
    operator.save()  # committed: the server is another process
    expect(page).to_have_url(LOGIN_URL, timeout=WITHIN_MS)


def test_a_login_that_ends_while_the_socket_is_down_sends_the_page_to_the_login_form(
    logged_in_page, operator
):
    """The page reconnects after a drop; if the login ended meanwhile, the server's answer
    to the reconnect (4401) must send the page to the login form, not keep it retrying."""
    page = logged_in_page
    live, down = [], [False]

    def route(ws) -> None:
        if down[0]:
            ws.close(code=1012, reason="still down")
            return
        ws.connect_to_server()
        live.append(ws)

    page.route_web_socket("**/ws/control/", route)
    page.goto("/")
    expect(page.locator("#live-indicator")).to_have_text("Live", timeout=WITHIN_MS)
    down[0] = True
    live[-1].close(code=1012, reason="network drop")
    expect(page.locator("#live-indicator")).to_contain_text("Reconnecting", timeout=WITHIN_MS)
    operator.set_password("changed-while-away")
    operator.save()
    down[0] = False
    expect(page).to_have_url(LOGIN_URL, timeout=WITHIN_MS * 2)
