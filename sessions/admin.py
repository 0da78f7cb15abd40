"""Admin for sessions and their ledger.

A session's configuration is editable; its observed state (status, heartbeat...) and its
money are not: the loop writes the one, the broker the other, and desired_state changes
only through control.services (whose actions control registers). Orders, fills and
positions are a ledger: they are read here, never added, changed or deleted.
"""

from __future__ import annotations

from django.contrib import admin

from agents.admin import ChangedFieldsOnlyAdmin
from agents.models import RUNNABLE_STATE_FIELDS
from sessions.models import Fill, Order, Position, TradingSession

OBSERVED = (
    *RUNNABLE_STATE_FIELDS,
    "started_at",
    "paused_at",
    "stopped_at",
    "cash",
    "created_at",
    "updated_at",
)


class ReadOnlyAdminMixin:
    """The ledger is written by the broker alone."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PositionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Position
    fields = ("symbol", "quantity", "avg_cost", "cost_basis", "realized_pnl", "last_mark", "updated_at")
    readonly_fields = fields
    extra = 0


@admin.register(TradingSession)
class TradingSessionAdmin(ChangedFieldsOnlyAdmin):
    list_display = (
        "session_id",
        "name",
        "status",
        "desired_state",
        "cash",
        "decision_agent",
        "last_heartbeat",
    )
    list_filter = ("status", "desired_state")
    search_fields = ("session_id", "name")
    inlines = [PositionInline]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return OBSERVED
        # Cash started from starting_cash and has moved since; changing either now would
        # break the ledger (cash + cost basis - realized P&L = starting cash).
        return ("session_id", "starting_cash", *OBSERVED)


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("order_id", "session", "symbol", "side", "order_type", "quantity", "status", "created_at")
    list_filter = ("status", "side", "order_type")
    search_fields = ("order_id", "session__session_id", "symbol", "directive_ref")
    date_hierarchy = "created_at"


@admin.register(Fill)
class FillAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("ts", "session", "symbol", "side", "quantity", "price", "fee", "slippage", "realized_pnl")
    list_filter = ("side",)
    search_fields = ("fill_id", "order__order_id", "session__session_id", "symbol")
    date_hierarchy = "ts"
