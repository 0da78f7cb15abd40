"""Settings, all read from the environment with safe development defaults.

Every variable is documented where it is read; docs/operations.md lists them for
deployments.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from tradingsite.private_files import private_dir, private_sqlite

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Everything this checkout writes (the SQLite database, the development secret key, logs,
# beat's schedule): var/ unless VAR_DIR says otherwise (a second stack on one checkout).
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
# Readable by this user only (tradingsite.private_files): the database, keys, logs.
private_dir(VAR_DIR)

# --- Core -------------------------------------------------------------------
# DEBUG defaults on for a developer's checkout; production sets DEBUG=0.
DEBUG = env.bool("DEBUG", default=True)
# A development key is generated into var/ on first use so nothing secret is committed.
# With DEBUG=0 the key must be given: a generated one differs between machines (a login
# on one web process is unknown to the next) and is lost with var/; so refuse to start.
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY and not DEBUG:
    raise ImproperlyConfigured(
        "DEBUG=0 needs SECRET_KEY: set it to a long random value, the same on every process "
        "(for example the output of: python -c 'import secrets; print(secrets.token_urlsafe(50))'). "
        "A generated development key is used only with DEBUG=1."
    )
if not SECRET_KEY:
    from tradingsite.devsecret import development_secret_key

    SECRET_KEY = development_secret_key(VAR_DIR)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
# Behind a proxy that terminates TLS: the site's https origins (CSRF checks the Origin of
# every form and htmx post against them), and trust its X-Forwarded-Proto.
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    # A plain-HTTP request that reaches the site through the proxy is sent to https; the
    # liveness probe is exempt (load balancers call it over plain HTTP from inside).
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# HSTS: browsers then refuse plain HTTP to this host for that many seconds. Set it once
# the site is served over HTTPS only, for good: browsers remember it, it is hard to undo.
SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", default=0)
# The same for every subdomain, and consent to the browsers' preload list: opt in only
# when every subdomain is HTTPS too.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("HSTS_PRELOAD", default=False)
# The web port, used by `make run` and printed in its banner.
PORT = env.int("PORT", default=8000)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # Listed so its Swagger UI is served from our static files, not a CDN.
    "ninja",
    "django_htmx",
    "template_partials",
    "agents",
    "sessions.apps.TradingSessionsConfig",
    "control",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "control.middleware.ContentSecurityPolicy",
    # Every error under /api/ as the API's JSON (404, 405, 500...), whatever answered it.
    "control.middleware.ApiJsonErrors",
    # Oversized bodies (413) and NUL bytes in the URL (400), before anything reads them.
    "control.middleware.RequestLimits",
    # daphne serves no static files; WhiteNoise does, in development and production.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Reads wait seconds, not the busy timeout, for a locked database; an outage is a 503.
    "control.db_outage.DatabaseOutage",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "control.middleware.LoginRequired",
    # With DEBUG on, the URL list of Django's technical 404 for staff only.
    "control.middleware.PlainNotFoundUnlessStaff",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "tradingsite.urls"
ASGI_APPLICATION = "tradingsite.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Request limits and login throttling -----------------------------------
# The largest request body accepted (bytes); larger ones get 413. A session, a config or
# the order of 1,000 cards is a few KB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=256 * 1024)
# Password guessing (control.throttle): after this many failed logins for one username,
# or from one address, within the window, logins are refused (429) until it passes...
LOGIN_THROTTLE_FAILURES = env.int("LOGIN_THROTTLE_FAILURES", default=5)
LOGIN_THROTTLE_ADDRESS_FAILURES = env.int("LOGIN_THROTTLE_ADDRESS_FAILURES", default=20)
LOGIN_THROTTLE_WINDOW_SECONDS = env.int("LOGIN_THROTTLE_WINDOW_SECONDS", default=900)
# ...and after this many unknown bearer tokens from one address, the API answers 429.
TOKEN_THROTTLE_FAILURES = env.int("TOKEN_THROTTLE_FAILURES", default=20)

# --- URLs an operator gives (feeds; later exchanges, webhooks) ----------------
# Workers fetch only public http(s) hosts (agents/net/url_policy.py); hosts listed here,
# comma-separated `host` or `host:port`, may also be private or loopback addresses.
FETCH_ALLOWED_HOSTS = env.list("FETCH_ALLOWED_HOSTS", default=[])
# --- Content-Security-Policy (control.middleware.ContentSecurityPolicy) ------
# Everything from this site only: no inline or eval'd script (htmx's eval is off in
# templates/base.html, no page uses hx-on or inline handlers), so injected markup cannot
# run script. Styles allow inline: the templates use a few style attributes and the log
# viewer a <style> block, and htmx and Bootstrap set styles; CSS runs no script. Images
# allow data: (Bootstrap's icons in its CSS are data: SVGs). 'self' in connect-src covers
# the site's own ws:/wss: (the live page, the log tail).
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# --- Database ---------------------------------------------------------------
# SQLite file under var/ by default; DATABASE_URL=postgres://... for PostgreSQL.
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# Each test run names its own test database (tests/isolation.py sets TEST_RUN_ID), so
# concurrent runs on one machine do not collide.
_test_run = env.str("TEST_RUN_ID", default="")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web process read while a worker writes; the busy timeout makes a
        # writer wait for the lock instead of failing with "database is locked"; IMMEDIATE
        # takes the write lock at BEGIN so two read-then-write transactions cannot
        # deadlock on lock upgrade.
        "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;",
        "timeout": env.int("SQLITE_TIMEOUT", default=20),
        "transaction_mode": "IMMEDIATE",
    }
    if DATABASES["default"]["NAME"] and DATABASES["default"]["NAME"] != ":memory:":
        private_sqlite(Path(DATABASES["default"]["NAME"]))
    # Tests need a file (not :memory:) so worker processes see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{_test_run or 'db'}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 0)
    if _test_run:
        DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{_test_run}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: flags, leases, streams, broker, change announcements -------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Every key this project writes starts with this prefix (Celery's too), so
# several installs or test runs can share one Redis and clean up only their own keys.
REDIS_PREFIX = env.str("REDIS_PREFIX", default="pt:")

# No CHANNEL_LAYERS: no consumer sends through one. Each web process's live hub learns of
# changes from Redis pub/sub and reads the database itself (control/live), so every
# process's sockets get every push without a layer between them.

# --- Celery -----------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_PREFIX}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
# Short tasks (the reconciler) get hard limits; the endless loops opt out per task.
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 100
# Short control tasks (the reconciler) go here, away from the loops.
CELERY_TASK_DEFAULT_QUEUE = env.str("CONTROL_QUEUE", default="control")
# The queue the endless loops go to (a worker pool sized for hundreds of idle loops).
LOOP_QUEUE = env.str("LOOP_QUEUE", default="loops")
CELERY_BEAT_SCHEDULE = {
    "reconcile": {
        "task": "control.tasks.reconcile",
        "schedule": env.float("RECONCILE_SECONDS", default=5.0),
        "options": {"expires": 10},
    },
}

# --- Runtime ----------------------------------------------------------------
# Per-agent log files live here; the log tail refuses any path outside it.
LOG_DIR = Path(env.str("LOG_DIR", default=str(VAR_DIR / "logs"))).resolve()
# Modules of agent kinds beyond the built-in ones, imported at start so they register
# themselves (comma-separated dotted paths; docs/agent-kinds.md).
AGENT_KIND_MODULES = env.list("AGENT_KIND_MODULES", default=[])
private_dir(LOG_DIR)
# CSV files the market_data agent may replay must lie under this folder.
MARKET_DATA_DIR = Path(env.str("MARKET_DATA_DIR", default=str(VAR_DIR / "market_data"))).resolve()
# A loop writes last_heartbeat/metrics to the database at most this often (Redis every tick).
HEARTBEAT_DB_SECONDS = env.float("HEARTBEAT_DB_SECONDS", default=5.0)
# A loop's lease lives 2 ticks plus this long: how fast a crashed loop is replaced.
LEASE_EXTRA_SECONDS = env.float("LEASE_EXTRA_SECONDS", default=10.0)
# Session loops: seconds between steps, and between equity points while equity moves.
SESSION_TICK_SECONDS = env.float("SESSION_TICK_SECONDS", default=1.0)
SESSION_EQUITY_SECONDS = env.float("SESSION_EQUITY_SECONDS", default=5.0)
# A running loop whose Redis heartbeat is older than this is considered lost.
HEARTBEAT_STALE_SECONDS = env.float("HEARTBEAT_STALE_SECONDS", default=15.0)
# How long a stop may take to be confirmed before the loop is fenced.
STOP_GRACE_SECONDS = env.float("STOP_GRACE_SECONDS", default=15.0)
# How long a queued start may wait for a worker before the reconciler sends it again.
START_GRACE_SECONDS = env.float("START_GRACE_SECONDS", default=60.0)
# A step running longer than this puts the runnable in error (agents may set their own
# `step_timeout_seconds`); the stuck step is abandoned and its loop fenced. A loop's lease
# always outlives its step timeout, so the watchdog, not a takeover, handles a hung step.
STEP_TIMEOUT_SECONDS = env.float("STEP_TIMEOUT_SECONDS", default=10.0)

# --- Static files -----------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
# WhiteNoise warns on every request-handler start when STATIC_ROOT is missing.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve straight from the apps' and project's static folders, so `make run` needs no
# collectstatic; a deployment may run collectstatic and turn this off.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

# --- I18N -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging ----------------------------------------------------------------
# Error reports (DEBUG pages, error mails) mask URL passwords in settings and frames, and
# DEBUG's technical error pages are shown to staff users only.
DEFAULT_EXCEPTION_REPORTER_FILTER = "agents.net.redact.RedactingExceptionReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "agents.net.redact.StaffOnlyExceptionReporter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # URL passwords (REDIS_URL, DATABASE_URL) are masked in every console line.
    "formatters": {
        "plain": {
            "()": "agents.net.redact.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Agent loggers write to their own files (agents.runtime.logs), not the console.
    "loggers": {
        "agents.agent": {"handlers": [], "propagate": False},
        # Celery logs every task received/succeeded at INFO: the reconciler's every 5 s.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
    },
}
