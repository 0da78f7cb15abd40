from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from control import log_pages, session_pages, views
from control.api import api

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("system/agents/<str:agent_id>/logs", views.agent_logs, name="agent-logs"),
    path("system/agents/<str:agent_id>/logs/view", log_pages.agent_log_viewer, name="agent-log-viewer"),
    path("system/agents/<path:rest>", views.agent_logs_unknown_path),
    path("sessions/<str:session_id>/", session_pages.session_detail, name="session-detail"),
    path("sessions/<str:session_id>/chart.json", session_pages.session_chart, name="session-chart"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]
