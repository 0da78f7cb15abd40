"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
# Build the HTTP app first: it sets Django up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from control.live.origin import SameOriginOnly  # noqa: E402
from control.live.routing import websocket_urlpatterns  # noqa: E402
from control.live.token_auth import TokenAuth  # noqa: E402
from tradingsite import http_limits  # noqa: E402

# Headers over daphne's limits answer 431 instead of a dropped connection.
http_limits.install()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Every socket route: the site's own origin only (scheme, host and port), then
        # the session cookie's user; /ws/events/ also takes an API token instead.
        "websocket": SameOriginOnly(AuthMiddlewareStack(TokenAuth(URLRouter(websocket_urlpatterns)))),
    }
)
