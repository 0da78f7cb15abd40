"""Filters of the control panel's templates: status icons and money as people read it."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from control.web.dashboard_context import status_icon as _status_icon

register = template.Library()

CHECK_LABELS = {
    "database": "Database",
    "redis": "Redis",
    "workers": "Workers",
}
# As django.utils.html.json_script does: JSON that cannot close the <script> it sits in.
_JSON_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


@register.filter
def status_icon(status: str) -> str:
    return _status_icon(status)


@register.filter
def ago(when: datetime | None) -> str:
    """ "5 s ago": the same words static/js/app.js ticks on from there."""
    if when is None:
        return "never"
    seconds = max(0, int((timezone.now() - when).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


@register.filter
def check_label(name: str) -> str:
    return CHECK_LABELS.get(name, name.replace("_", " ").title())


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None


@register.filter
def money(value: Any) -> str:
    """12345.678 -> "12,345.68" (display only; the ledger keeps every digit)."""
    number = _decimal(value)
    return "–" if number is None else f"{number:,.2f}"


@register.filter
def signed_money(value: Any) -> str:
    number = _decimal(value)
    return "–" if number is None else f"{number:+,.2f}"


@register.filter
def signed_pct(value: Any) -> str:
    number = _decimal(value)
    return "–" if number is None else f"{number:+.2f} %"


@register.filter
def with_class(field, css: str):
    """Render a form field with Bootstrap classes, marked invalid (with its error tied to
    it for screen readers) when it has errors."""
    attrs = {"class": css + (" is-invalid" if field.errors else "")}
    if field.errors:
        attrs["aria-invalid"] = "true"
        attrs["aria-describedby"] = f"{field.id_for_label}-error"
    return field.as_widget(attrs=attrs)


@register.filter
def json_script_safe(value: Any) -> SafeString:
    return mark_safe(json.dumps(value, cls=DjangoJSONEncoder).translate(_JSON_ESCAPES))
