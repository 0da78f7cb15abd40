from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import path
from django.views.decorators.http import require_safe
from django.views.generic import RedirectView

from control.api import healthz, log_tail
from control.api.app import api
from control.throttle import throttled_login
from control.web import dashboard, log_viewer, session

urlpatterns = [
    # Browsers ask for /favicon.ico on pages that name no icon (the admin, the API docs).
    path(
        "favicon.ico",
        login_not_required(require_safe(RedirectView.as_view(url=static("favicon.svg"), permanent=True))),
        name="favicon",
    ),
    # The page changes nothing: other methods are 405 (a POST rendered it with 200).
    path("", require_safe(dashboard.index), name="index"),
    # The panel's htmx endpoints (HTML fragments; programs use /api/).
    path("ui/system/start", dashboard.system_start, name="ui-system-start"),
    path("ui/system/stop", dashboard.system_stop, name="ui-system-stop"),
    path("ui/sessions/pause-all", dashboard.sessions_pause_all, name="ui-sessions-pause-all"),
    path("ui/sessions/resume-all", dashboard.sessions_resume_all, name="ui-sessions-resume-all"),
    path("ui/sessions/new", dashboard.session_new, name="ui-session-new"),
    path("ui/sessions/<str:session_id>/<str:action>", dashboard.session_action, name="ui-session-action"),
    path("ui/agents/order", dashboard.agents_order, name="ui-agents-order"),
    path("ui/agents/<str:agent_id>/start", dashboard.agent_start, name="ui-agent-start"),
    path("ui/agents/<str:agent_id>/stop", dashboard.agent_stop, name="ui-agent-stop"),
    path("ui/feed", dashboard.feed, name="ui-feed"),
    path("ui/panel", dashboard.panel, name="ui-panel"),
    path("healthz", healthz.healthz, name="healthz"),
    path("system/agents/<str:agent_id>/logs", log_tail.agent_logs, name="agent-logs"),
    path("system/agents/<str:agent_id>/logs/view", log_viewer.agent_log_viewer, name="agent-log-viewer"),
    path("system/agents/<path:rest>", log_tail.agent_logs_unknown_path),
    path("sessions/<str:session_id>/", session.session_detail, name="session-detail"),
    path("sessions/<str:session_id>/chart.json", session.session_chart, name="session-chart"),
    # Both login forms are throttled against password guessing (control.throttle); the
    # admin's is taken over here, ahead of admin.site.urls.
    path("login/", throttled_login(auth_views.LoginView.as_view()), name="login"),
    path("admin/login/", throttled_login(admin.site.login), name="admin-login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
