"""reengage settings: one module, read from the environment.

Every variable is listed in `.env.example` and docs/operations.md. Defaults run
locally; a malformed value stops start-up with a message naming the variable.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from reengage import esp
from reengage.env import (
    ConfigError,
    anymail_settings,
    database_config,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)
# The demo store at /demo/ (it mints valid user_hashes): default only with DEBUG.
DEMO_ENABLED = env_bool("DEMO_ENABLED", DEBUG)

# With DATABASE_URL / REDIS_URL unset, start (or join) the embedded development
# services under .data/. Production always sets both.
if not (env_str("DATABASE_URL") and env_str("REDIS_URL")) and env_bool(
    "REENGAGE_EMBEDDED_SERVICES", True
):
    from reengage import embedded

    try:
        embedded.configure_environment()
    except embedded.EmbeddedError as exc:
        raise ConfigError(str(exc)) from None

SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ConfigError("SECRET_KEY must be set when DEBUG is off (50+ random characters)")
    SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production-0123456789"  # noqa: S105

# Encrypts sites' secret keys at rest (reengage/encryption.py). Comma-separated:
# the first key encrypts, all of them decrypt, so it can be rotated. Losing it
# makes every site's secret key unreadable: back it up apart from the database.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEY", [])
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ConfigError(
            "FIELD_ENCRYPTION_KEY must be set when DEBUG is off (32+ random characters; "
            "it encrypts sites' secret keys, so back it up)"
        )
    FIELD_ENCRYPTION_KEYS = ["dev-only:" + SECRET_KEY]
if any(len(key) < 32 for key in FIELD_ENCRYPTION_KEYS):
    raise ConfigError("FIELD_ENCRYPTION_KEY: every comma-separated key needs 32+ characters")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The public URL of this reengage instance, used in snippets and email links. Unset, it is
# the local server's: on PORT, else on the port a running `make run` recorded (so commands
# in a second terminal print its URLs, reengage/dev_port.py), else 8000.
PUBLIC_URL = env_str("PUBLIC_URL", "").rstrip("/")
if not PUBLIC_URL:
    from reengage.dev_port import public_port

    PUBLIC_URL = f"http://127.0.0.1:{public_port(env_int('PORT', 0, minimum=1) or None)}"

INSTALLED_APPS = [
    "admin_interface",  # the admin theme (docs/admin.md); its templates come before admin's
    "colorfield",
    "reengage.security.apps.AdminConfig",  # django.contrib.admin with optional 2FA
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "anymail",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "csp",
    "reengage",
    "tracking",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "campaigns.email.body_limit.BodyLimitMiddleware",  # before anything reads a body (CSRF)
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into its response
]

ROOT_URLCONF = "reengage.urls"
WSGI_APPLICATION = "reengage.wsgi.application"
ASGI_APPLICATION = "reengage.asgi.application"

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

DATABASES = {"default": database_config("DATABASE_URL")}
# The flusher stages each pass in temporary tables (tracking/storage.py); with the default
# 8 MB of temp buffers a 20,000-event pass spills them to disk. Only sessions that use
# temporary tables allocate them.
_db_options = DATABASES["default"].setdefault("OPTIONS", {})
_db_options["options"] = f"{_db_options.get('options', '')} -c temp_buffers=128MB".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = redis_url("REDIS_URL")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "reengage",
    }
}

LANGUAGE_CODE = "en-us"
# One date format on every admin screen: 2026-12-02 18:09:26 (reengage/formats/en).
FORMAT_MODULE_PATH = ["reengage.formats"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- security (production) ---------------------------------------------------
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Celery ------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict = {}

# 1: log every Celery task run (received/succeeded) and every beat dispatch.
LOG_TASKS = env_bool("LOG_TASKS", False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        # One line per task run ("received", "succeeded", beat's "Sending due task"):
        # with the flusher every second that is ~3 lines a second of nothing. Failures
        # are still logged (ERROR); the flusher logs its own summary once a minute.
        **{
            name: {"level": "INFO" if LOG_TASKS else "WARNING"}
            for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat")
        },
    },
}

# Development admin created by `make run` (never in production).
DEV_ADMIN_USERNAME = "admin"
DEV_ADMIN_PASSWORD = "admin"  # noqa: S105

# --- ingest and tracking -------------------------------------------------------
# Seconds a Redis call on the ingest path may take before falling back to PostgreSQL.
INGEST_REDIS_TIMEOUT = env_int("INGEST_REDIS_TIMEOUT_MS", 1000, minimum=10) / 1000
# Events per minute one client IP may send (0 = unlimited); sites have their own limit.
INGEST_CLIENT_EVENTS_PER_MINUTE = env_int("INGEST_CLIENT_EVENTS_PER_MINUTE", 6000, minimum=0)
INGEST_KEY_CACHE_SECONDS = env_int("INGEST_KEY_CACHE_SECONDS", 30, minimum=0)
# Client IPs come from REMOTE_ADDR unless a trusted proxy header is configured,
# e.g. TRUSTED_PROXY_HEADER=HTTP_X_FORWARDED_FOR with TRUSTED_PROXY_COUNT=1 (the
# address the nearest proxy appended).
TRUSTED_PROXY_HEADER = env_str("TRUSTED_PROXY_HEADER", "")
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1, minimum=1)
# messageIds are deduplicated for this many days.
DEDUPE_WINDOW_DAYS = env_int("DEDUPE_WINDOW_DAYS", 35, minimum=1)
FLUSH_BUDGET_SECONDS = env_int("FLUSH_BUDGET_SECONDS", 20, minimum=1)
FLUSH_INTERVAL_SECONDS = env_int("FLUSH_INTERVAL_SECONDS", 1, minimum=1)
# Events per pass (one transaction): larger passes spread the per-transaction work
# (staging, statistics, a dozen set-based statements) over more events.
FLUSH_PASS_EVENTS = env_int("FLUSH_PASS_EVENTS", 50_000, minimum=1)
# A dead flusher's pending entries are reclaimed after this idle time, and its lock
# expires after FLUSH_LOCK_TTL_SECONDS (refreshed by a live flusher after every pass).
FLUSH_CLAIM_IDLE_MS = env_int("FLUSH_CLAIM_IDLE_MS", 30_000, minimum=1)
FLUSH_LOCK_TTL_SECONDS = env_int("FLUSH_LOCK_TTL_SECONDS", 15, minimum=1)
# Stream entries PostgreSQL refused are kept in a dead-letter stream of at most about
# this many entries (the oldest go first); see /healthz and `flush_events --dead-letters`.
FLUSH_DEAD_LETTERS_MAX = env_int("FLUSH_DEAD_LETTERS_MAX", 10_000, minimum=100)
# Test-only fault injection (seconds): see tests/tracking/test_ingest_faults.py.
FAULT_FLUSH_PAUSE_BEFORE_ACK = env_float("REENGAGE_FAULT_FLUSH_PAUSE_BEFORE_ACK", 0.0)

CELERY_BEAT_SCHEDULE.update(
    {
        "flush-events": {
            "task": "tracking.tasks.flush_events",
            "schedule": FLUSH_INTERVAL_SECONDS,
            "options": {"expires": 10},
        },
        "fold-dropped-counts": {"task": "tracking.tasks.fold_dropped_counts", "schedule": 60},
        "maintain-partitions": {"task": "tracking.tasks.maintain_partitions", "schedule": 3600},
    }
)

# --- audiences (retargeting: rules, expiry, webhooks, tags) ---------------------------
# Phone numbers without a country code are read in this region (ISO 3166 code, e.g.
# US); blank: only numbers with a country code are hashed.
AUDIENCE_PHONE_REGION = env_str("AUDIENCE_PHONE_REGION", "")
AUDIENCE_RULE_INTERVAL_SECONDS = env_int("AUDIENCE_RULE_INTERVAL_SECONDS", 900, minimum=60)
AUDIENCE_EXPIRY_INTERVAL_SECONDS = env_int("AUDIENCE_EXPIRY_INTERVAL_SECONDS", 300, minimum=10)
AUDIENCE_WEBHOOK_INTERVAL_SECONDS = env_int("AUDIENCE_WEBHOOK_INTERVAL_SECONDS", 10, minimum=1)
AUDIENCE_WEBHOOK_BATCH_SIZE = env_int("AUDIENCE_WEBHOOK_BATCH_SIZE", 500, minimum=1)
AUDIENCE_WEBHOOK_TIMEOUT_SECONDS = env_int("AUDIENCE_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
AUDIENCE_WEBHOOK_MAX_ATTEMPTS = env_int("AUDIENCE_WEBHOOK_MAX_ATTEMPTS", 10, minimum=1)
# First retry after this many seconds, doubling each time (at most 6 hours apart).
AUDIENCE_WEBHOOK_BACKOFF_SECONDS = env_int("AUDIENCE_WEBHOOK_BACKOFF_SECONDS", 30, minimum=1)

# --- outbound requests (reengage.outbound: webhooks, ad platforms) -------------------
# http:// destinations are refused unless this is on (default: only with DEBUG).
OUTBOUND_ALLOW_HTTP = env_bool("OUTBOUND_ALLOW_HTTP", DEBUG)
# Tests and development stand-ins only: let requests reach 127.0.0.0/8 and ::1.
# Off unless set explicitly, whatever DEBUG says; metadata and private addresses stay
# refused even then.
OUTBOUND_ALLOW_LOOPBACK = env_bool("OUTBOUND_ALLOW_LOOPBACK", False)
# At most this much of a reply is read (and dropped) before the connection is closed.
OUTBOUND_MAX_RESPONSE_BYTES = env_int("OUTBOUND_MAX_RESPONSE_BYTES", 65536, minimum=1024)

CELERY_BEAT_SCHEDULE.update(
    {
        "evaluate-audience-rules": {
            "task": "campaigns.tasks.audiences.evaluate_audience_rules",
            "schedule": AUDIENCE_RULE_INTERVAL_SECONDS,
        },
        "expire-audience-members": {
            "task": "campaigns.tasks.audiences.expire_audience_members",
            "schedule": AUDIENCE_EXPIRY_INTERVAL_SECONDS,
        },
        "fold-audience-days": {
            "task": "campaigns.tasks.audiences.fold_audience_days",
            "schedule": 3600,
        },
        "deliver-audience-changes": {
            "task": "campaigns.tasks.audiences.deliver_audience_changes",
            "schedule": AUDIENCE_WEBHOOK_INTERVAL_SECONDS,
            "options": {"expires": AUDIENCE_WEBHOOK_INTERVAL_SECONDS * 3},
        },
    }
)

# --- ad platforms: audience joins and leaves to Meta and Google (docs/audiences.md) -----
# Base URLs of the platforms' APIs (tests point them at local stand-ins).
META_GRAPH_URL = env_str("META_GRAPH_URL", "https://graph.facebook.com")
META_GRAPH_API_VERSION = env_str("META_GRAPH_API_VERSION", "v25.0")
GOOGLE_DATAMANAGER_URL = env_str("GOOGLE_DATAMANAGER_URL", "https://datamanager.googleapis.com")
GOOGLE_OAUTH_TOKEN_URL = env_str("GOOGLE_OAUTH_TOKEN_URL", "https://oauth2.googleapis.com/token")
GA4_MP_URL = env_str("GA4_MP_URL", "https://www.google-analytics.com")
AD_PLATFORM_INTERVAL_SECONDS = env_int("AD_PLATFORM_INTERVAL_SECONDS", 10, minimum=1)
AD_PLATFORM_TIMEOUT_SECONDS = env_int("AD_PLATFORM_TIMEOUT_SECONDS", 20, minimum=1)
# A claimed batch is another worker's to retry once this has passed (a killed worker).
AD_PLATFORM_LEASE_SECONDS = env_int("AD_PLATFORM_LEASE_SECONDS", 600, minimum=30)
# A send task keeps draining its destination's backlog for this long.
AD_PLATFORM_SEND_BUDGET_SECONDS = env_int("AD_PLATFORM_SEND_BUDGET_SECONDS", 50, minimum=1)
AD_PLATFORM_MAX_ATTEMPTS = env_int("AD_PLATFORM_MAX_ATTEMPTS", 10, minimum=1)
# First retry after this many seconds, doubling each time (at most 6 hours apart),
# unless the platform's Retry-After says otherwise.
AD_PLATFORM_BACKOFF_SECONDS = env_int("AD_PLATFORM_BACKOFF_SECONDS", 30, minimum=1)
# Changes per request, at most the APIs' own limits (1,000 events; 10,000 list rows).
META_CAPI_BATCH_SIZE = env_int("META_CAPI_BATCH_SIZE", 1000, minimum=1)
META_AUDIENCE_BATCH_SIZE = env_int("META_AUDIENCE_BATCH_SIZE", 10000, minimum=1)
GOOGLE_AUDIENCE_BATCH_SIZE = env_int("GOOGLE_AUDIENCE_BATCH_SIZE", 10000, minimum=1)
# GA4 takes one browser per request: a batch of this many changes is that many requests.
GA4_BATCH_SIZE = env_int("GA4_BATCH_SIZE", 100, minimum=1)

CELERY_BEAT_SCHEDULE.update(
    {
        "deliver-platform-changes": {
            "task": "campaigns.tasks.audiences.deliver_platform_changes",
            "schedule": AD_PLATFORM_INTERVAL_SECONDS,
            "options": {"expires": AD_PLATFORM_INTERVAL_SECONDS * 3},
        },
    }
)

# --- email: sending, feedback, unsubscribe (campaigns/email/sending.py, docs/email.md) ----
# Development default: a backend that stores each email in the database, shown in
# the admin's "Dev mailbox", so `make run` needs no ESP. Production sets any
# Django or Anymail backend, e.g. EMAIL_BACKEND=anymail.backends.postmark.EmailBackend
# with ANYMAIL_POSTMARK_SERVER_TOKEN.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "campaigns.email.devmail.EmailBackend")
if EMAIL_BACKEND == "campaigns.devmail.EmailBackend":  # its path before campaigns/email/
    EMAIL_BACKEND = "campaigns.email.devmail.EmailBackend"
# SMTP, for EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ConfigError("EMAIL_USE_TLS and EMAIL_USE_SSL are both on; choose one")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "reengage <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Every ANYMAIL_* variable, e.g. ANYMAIL_POSTMARK_SERVER_TOKEN, as Anymail's setting,
# typed as Anymail reads it (booleans, numbers, JSON objects: reengage/env.py).
ANYMAIL = anymail_settings()
if not DEBUG and not ANYMAIL.get("WEBHOOK_SECRET"):
    raise ConfigError(
        "ANYMAIL_WEBHOOK_SECRET must be set when DEBUG is off: a 'user:password' pair that "
        "the ESP's tracking webhooks send as HTTP Basic auth to /anymail/<esp>/tracking/"
    )
if ANYMAIL.get("WEBHOOK_SECRET"):
    # Comma-separated to rotate it: "new:pw,old:pw" accepts both until the ESP is switched
    # to the new pair, then drop the old one (Anymail takes a list).
    ANYMAIL["WEBHOOK_SECRET"] = [c.strip() for c in ANYMAIL["WEBHOOK_SECRET"].split(",")]
    if not all(":" in credential for credential in ANYMAIL["WEBHOOK_SECRET"]):
        raise ConfigError(
            "ANYMAIL_WEBHOOK_SECRET must look like user:password (comma-separated to rotate)"
        )
# A send run keeps going while there is work, up to this many messages or this many
# seconds, then queues the next run itself; beat starts one every interval as well.
EMAIL_SEND_BATCH = env_int("EMAIL_SEND_BATCH", 100_000, minimum=1)
EMAIL_SEND_BUDGET_SECONDS = env_int("EMAIL_SEND_BUDGET_SECONDS", 50, minimum=1)
EMAIL_SEND_INTERVAL_SECONDS = env_int("EMAIL_SEND_INTERVAL_SECONDS", 10, minimum=1)
# Emails in flight at once per worker process, and per site (0: the
# same); an ESP's 429 halves a site's share until it recovers.
EMAIL_SEND_CONCURRENCY = env_int("EMAIL_SEND_CONCURRENCY", 64, minimum=1)
EMAIL_SEND_SITE_CONCURRENCY = env_int("EMAIL_SEND_SITE_CONCURRENCY", 0, minimum=0)
# How they are in flight: "auto" sends through Anymail's HTTP backends from one event
# loop thread (campaigns/email/http_sending.py) and through the others (SMTP, Amazon
# SES) from threads; "threads" uses threads for every backend.
EMAIL_SEND_TRANSPORT = env_choice("EMAIL_SEND_TRANSPORT", "auto", ("auto", "threads"))
# The ESP account's sends per minute across all sites and workers (0: no limit of ours);
# each site's own limit is its email settings' "sends per minute".
EMAIL_ESP_SENDS_PER_MINUTE = env_int("EMAIL_ESP_SENDS_PER_MINUTE", 0, minimum=0)
# Transient ESP errors: retried with exponential backoff from this base, at most this often.
EMAIL_MAX_ATTEMPTS = env_int("EMAIL_MAX_ATTEMPTS", 5, minimum=1)
# The rendering budget of one email (preview, test send, send): output size and time.
EMAIL_RENDER_MAX_BYTES = env_int("EMAIL_RENDER_MAX_BYTES", 2_000_000, minimum=10_000)
EMAIL_RENDER_MAX_SECONDS = env_float("EMAIL_RENDER_MAX_SECONDS", 2.0)
EMAIL_RETRY_BASE_SECONDS = env_int("EMAIL_RETRY_BASE_SECONDS", 60, minimum=1)
# A message in `sending` longer than this was interrupted (worker killed): longer
# than any task may run, so its worker is surely gone.
EMAIL_INTERRUPTED_AFTER_SECONDS = env_int(
    "EMAIL_INTERRUPTED_AFTER_SECONDS", CELERY_TASK_TIME_LIMIT + 60, minimum=1
)
if EMAIL_INTERRUPTED_AFTER_SECONDS <= CELERY_TASK_TIME_LIMIT:
    raise ConfigError(
        "EMAIL_INTERRUPTED_AFTER_SECONDS must be longer than CELERY_TASK_TIME_LIMIT, or a "
        "message still being sent could be taken for an interrupted one"
    )
# Tags per email (campaign, step, site) and whether our message id goes along as
# metadata: the defaults follow the ESP (Postmark takes one tag, Postal and MailerSend
# no metadata; reengage/esp.py). An explicit value that the ESP would refuse is a
# start-up warning (reengage/checks.py), not a campaign of failed messages.
_esp_limits = esp.limits_for(EMAIL_BACKEND, ANYMAIL)
EMAIL_MAX_TAGS = env_int("EMAIL_MAX_TAGS", esp.default_max_tags(_esp_limits), minimum=0)
EMAIL_SEND_METADATA = env_bool("EMAIL_SEND_METADATA", _esp_limits.metadata)
UNSUBSCRIBE_LINK_MAX_AGE_DAYS = env_int("UNSUBSCRIBE_LINK_MAX_AGE_DAYS", 365, minimum=30)
# Click, open and view-in-browser links stop working after this many days.
EMAIL_TRACKING_LINK_MAX_AGE_DAYS = env_int("EMAIL_TRACKING_LINK_MAX_AGE_DAYS", 180, minimum=1)
# Click links in emails sent before click tokens carried a time: honoured (they do not
# expire) until this is switched off, EMAIL_TRACKING_LINK_MAX_AGE_DAYS after upgrading.
EMAIL_ACCEPT_UNDATED_CLICK_TOKENS = env_bool("EMAIL_ACCEPT_UNDATED_CLICK_TOKENS", True)

CELERY_BEAT_SCHEDULE.update(
    {
        "send-queued-email": {
            "task": "campaigns.tasks.email.send_queued_email",
            "schedule": EMAIL_SEND_INTERVAL_SECONDS,
            "options": {"expires": EMAIL_SEND_INTERVAL_SECONDS * 3},
        },
        "recover-interrupted-email": {
            "task": "campaigns.tasks.email.recover_interrupted_email",
            "schedule": 300,
        },
    }
)

# --- security: admin login throttling, two-factor, CSP (docs/security.md) -------------
# Failed admin logins are counted per username *and* client IP (django-axes); the
# client IP is the one ingest uses, from TRUSTED_PROXY_HEADER when configured.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ADMIN_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "tracking.keys.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
AXES_VERBOSE = False  # no start-up banner on every manage.py command
# Staff who enrolled a TOTP device must give a code at the admin login; with this
# on, every staff user must (enrol with `manage.py enroll_totp USERNAME`).
ADMIN_REQUIRE_2FA = env_bool("ADMIN_REQUIRE_2FA", False)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "reengage")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# The policy covers reengage's own pages (admin, unsubscribe, preferences). Styles
# may be inline because rendered emails (previews, "view in browser") carry inline
# CSS; scripts may not. Email previews show the shop's product images (https:).
# The demo store imitates a customer's site, whose loader snippet is inline.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/demo/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "https:"],
        "connect-src": ["'self'"],
        "frame-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600, minimum=60)

# --- campaign engine (campaigns.engine.enrollment, campaigns.engine.tick) --------------------
# Enrollments decided per claim (one transaction each).
ENGINE_BATCH_SIZE = env_int("ENGINE_BATCH_SIZE", 5000, minimum=1)
# How often beat starts a tick, and how long one tick may keep claiming batches.
ENGINE_TICK_SECONDS = env_int("ENGINE_TICK_SECONDS", 15, minimum=1)
ENGINE_TICK_BUDGET_SECONDS = env_int("ENGINE_TICK_BUDGET_SECONDS", 60, minimum=1)
# Trigger events older than this when stored (backfills, late offline queues) enroll no one.
ENGINE_MAX_TRIGGER_AGE_HOURS = env_int("ENGINE_MAX_TRIGGER_AGE_HOURS", 24, minimum=1)

CELERY_BEAT_SCHEDULE.update(
    {
        "engine-tick": {
            "task": "campaigns.tasks.engine.tick",
            "schedule": ENGINE_TICK_SECONDS,
            "options": {"expires": ENGINE_TICK_SECONDS},
        },
    }
)

# --- reports (campaigns.reports.snapshots) ------------------------------------------
# Campaigns with at least this many enrollments show a report computed by beat every
# REPORT_SNAPSHOT_SECONDS instead of aggregating on every view.
REPORT_SNAPSHOT_MIN_ENROLLMENTS = env_int("REPORT_SNAPSHOT_MIN_ENROLLMENTS", 50_000, minimum=1)
REPORT_SNAPSHOT_SECONDS = env_int("REPORT_SNAPSHOT_SECONDS", 300, minimum=10)
CELERY_BEAT_SCHEDULE.update(
    {
        "refresh-report-snapshots": {
            "task": "campaigns.tasks.reports.refresh_report_snapshots",
            "schedule": REPORT_SNAPSHOT_SECONDS,
            "options": {"expires": REPORT_SNAPSHOT_SECONDS},
        },
    }
)

# --- privacy: retention ----------------------------------------------------------------
# People not seen for this many days lose email, userId, traits and anonymous ids.
PROFILE_INACTIVE_DAYS = env_int("PROFILE_INACTIVE_DAYS", 395, minimum=1)
# Kept copies of sent emails (the dev mailbox) are deleted after this many days.
MESSAGE_BODY_DAYS = env_int("MESSAGE_BODY_DAYS", 30, minimum=1)
# Erasures' audience removal changes keep the person's browser ids and hashes (so
# destinations can remove them) for this many days after every webhook sent them.
ERASURE_CHANGE_DAYS = env_int("ERASURE_CHANGE_DAYS", 30, minimum=1)
CELERY_BEAT_SCHEDULE.update(
    {
        "anonymise-inactive-profiles": {
            "task": "campaigns.tasks.privacy.anonymise_inactive_profiles",
            "schedule": 6 * 3600,
        },
        "prune-message-bodies": {
            "task": "campaigns.tasks.privacy.prune_message_bodies",
            "schedule": 6 * 3600,
        },
        "blank-erasure-changes": {
            "task": "campaigns.tasks.privacy.blank_erasure_changes",
            "schedule": 6 * 3600,
        },
    }
)
