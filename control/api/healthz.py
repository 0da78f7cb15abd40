"""/healthz: the liveness probe, open without a login (outside /api/)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from control import health


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """No auth: 200 {"ok": true} when the database and Redis answer, else 503 {"ok": false}."""
    ok = health.liveness()
    return JsonResponse({"ok": ok}, status=200 if ok else 503)
