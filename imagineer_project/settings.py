"""Imagineer settings: one module, driven by environment variables.

Everything has an embedded default (SQLite under var/, media under var/media/, the
ORM broker), so `make run` works on a fresh machine. See docs/configuration.md for
every variable. A `.env` file beside manage.py is read when present; real
environment variables win over it.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from imagineer_project.lib.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env", override=False)

# A relative IMAGINEER_VAR_DIR (`var/demo`) is taken from the project folder.
VAR_DIR = BASE_DIR / env_str("IMAGINEER_VAR_DIR", "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)
ENVIRONMENT = env_str("IMAGINEER_ENVIRONMENT", "development" if DEBUG else "production")


def _development_secret_key() -> str:
    """A per-install key kept in var/, so sessions survive restarts in development."""
    path = VAR_DIR / "secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if DEBUG:
    SECRET_KEY = SECRET_KEY or _development_secret_key()
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1", "[::1]", "testserver"]
else:
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure"):
        raise ImproperlyConfigured(
            "DEBUG is off: set SECRET_KEY to a random string of 50+ characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DEBUG is off: set ALLOWED_HOSTS (comma-separated).")
    if not env_str("DATABASE_URL"):
        raise ImproperlyConfigured(
            "DEBUG is off: set DATABASE_URL (postgres://... in production)."
        )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "imagineer_project.apps.ImagineerAdminConfig",  # django.contrib.admin, our site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "ninja",
    "imagineer_project.apps.ImagineerConfig",
    "albums",
    "labeling",
    "scraping",
    "training",
    "legacy",
]

MIDDLEWARE = [
    "imagineer_project.middleware.TraceIdMiddleware",
    # django-ninja's plain-text 405 in the API's JSON error shape.
    "imagineer_project.middleware.ApiMethodNotAllowedMiddleware",
    # Requests by route and status, with latency (GET /metrics).
    "imagineer_project.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "imagineer_project.middleware.ApiTokenMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "imagineer_project.urls"
WSGI_APPLICATION = "imagineer_project.wsgi.application"

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

# --- Database -------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'imagineer.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE takes the
    # write lock up front so two writers queue instead of failing with "locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
# The pages' hot queries are prepared on PostgreSQL, planned once per connection
# (imagineer_project/lib/prepared.py). Off behind a pooler in transaction mode
# that does not track them (PgBouncer before 1.21 or without max_prepared_statements).
DB_PREPARED = env_bool("IMAGINEER_DB_PREPARED", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and queue ------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
    # Rate-limit counters: shared by every web process and host.
    CACHES["ratelimit"] = CACHES["default"]
else:
    # A file cache, not the per-process default: the web process reads the worker
    # cluster's liveness stats from here (django-q2 keeps them in the cache).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        },
        # Rate-limit counters in the database: atomic increments shared by every
        # web process (its table is made on migrate: createcachetable).
        "ratelimit": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "imagineer_ratelimit_cache",
        },
    }

Q_CLUSTER = {
    "name": "imagineer",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    # Bulk uploads and crawls are long; `retry` must exceed `timeout` or a running
    # task would be handed to a second worker.
    "timeout": env_int("Q_TIMEOUT", 3600, minimum=10),
    "retry": env_int("Q_TIMEOUT", 3600, minimum=10) + 300,
    "max_attempts": 3,
    "catch_up": False,
    "poll": 0.5,
    "save_limit": 1000,
    "sync": env_bool("Q_SYNC", False),
    "orm": "default",
}
if REDIS_URL:
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = REDIS_URL

# A run whose heartbeat is older than this is presumed dead (worker killed).
RUN_STALE_AFTER_SECONDS = env_int("IMAGINEER_RUN_STALE_AFTER", 600, minimum=30)
# A running run's worker refreshes its heartbeat at least this often, even in
# long steps without progress (loading a model, copying a dataset).
RUN_HEARTBEAT_SECONDS = env_int(
    "IMAGINEER_RUN_HEARTBEAT",
    env_int("TRAINING_HEARTBEAT_SECONDS", 60, minimum=1),
    minimum=1,
)

# --- Storage --------------------------------------------------------------------
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on every request without it
STATICFILES_DIRS = [BASE_DIR / "static"]

S3_BUCKET = env_str("S3_BUCKET")
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "region_name": env_str("S3_REGION") or None,
            "access_key": env_str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY") or None,
            "location": env_str("S3_PREFIX"),
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": True,
        },
    }
else:
    _default_storage = {
        "BACKEND": "imagineer_project.lib.storage.AtomicFileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": MEDIA_URL},
    }
# A bulk upload makes each batch of files durable with one syncfs(2) of the
# media filesystem (Linux). syncfs also waits for every other program's dirty
# pages there: where others write a lot to that filesystem, turn it off and the
# batch's files and folders are fsynced concurrently instead.
STORAGE_SYNCFS = env_bool("IMAGINEER_STORAGE_SYNCFS", True)
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Image ingest limits ----------------------------------------------------------
IMAGINEER_MAX_UPLOAD_BYTES = env_int("IMAGINEER_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
IMAGINEER_MAX_REQUEST_BYTES = env_int("IMAGINEER_MAX_REQUEST_BYTES", 1024 * 1024 * 1024)
# Below Pillow's own bomb threshold (89.5 MP); checked from the header before decoding.
IMAGINEER_MAX_IMAGE_PIXELS = env_int("IMAGINEER_MAX_IMAGE_PIXELS", 80_000_000)
IMAGINEER_MAX_ZIP_MEMBERS = env_int("IMAGINEER_MAX_ZIP_MEMBERS", 20_000)
# CPU seconds one upload run (bulk upload, zip, folder import) may spend; the
# files left when it is spent are reported as not imported (code `budget`).
IMAGINEER_UPLOAD_RUN_CPU_SECONDS = env_int(
    "IMAGINEER_UPLOAD_RUN_CPU_SECONDS", 1800, minimum=1
)
# A file sent to POST /api/images/upload whose header claims more pixels than
# this (width × height × frames) is decoded by the worker (an upload run, 202),
# not inside the request.
IMAGINEER_UPLOAD_INLINE_PIXELS = env_int(
    "IMAGINEER_UPLOAD_INLINE_PIXELS", 40_000_000, minimum=1
)
# And all of one request's files together: past this many pixels decoded, the
# rest of the request's files go to the worker too (a hundred 30 MP photos are
# each light, but not together).
IMAGINEER_UPLOAD_REQUEST_PIXELS = env_int(
    "IMAGINEER_UPLOAD_REQUEST_PIXELS", 200_000_000, minimum=1
)
IMAGINEER_THUMBNAIL_SIZES = (256, 512)
# Made during ingest (galleries need them at once); the others on first request.
IMAGINEER_INGEST_THUMBNAIL_SIZES = (256,)
# Bits (of 64) within which two perceptual hashes are the same picture: uploads,
# bulk uploads and folder imports report a file this close to a library image as
# `near_duplicate` (a scrape job has its own near_duplicate_distance option).
IMAGINEER_NEAR_DUPLICATE_DISTANCE = env_int(
    "IMAGINEER_NEAR_DUPLICATE_DISTANCE", 6, minimum=0
)
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("IMAGINEER_MAX_FILES_PER_REQUEST", 1000)

# --- Auth, sessions, security -----------------------------------------------------
_VALIDATORS = "django.contrib.auth.password_validation"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"{_VALIDATORS}.UserAttributeSimilarityValidator"},
    {"NAME": f"{_VALIDATORS}.MinimumLengthValidator"},
    {"NAME": f"{_VALIDATORS}.CommonPasswordValidator"},
    {"NAME": f"{_VALIDATORS}.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/"
# /api/health writes a tiny file to check storage; it does so at most once per
# this many seconds per process and reports the last result in between.
HEALTH_STORAGE_PROBE_SECONDS = env_int("HEALTH_STORAGE_PROBE_SECONDS", 60, minimum=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    # Opt-in: includeSubDomains binds every host under this domain to HTTPS, and
    # preload (once a browser list holds it) cannot be taken back for months.
    # Django's deploy check asks for both; off by choice, its warnings are off too.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SILENCED_SYSTEM_CHECKS = [
        *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
        *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
    ]
    if env_bool("SECURE_PROXY_SSL", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging (docs/operations.md, "Logs") -------------------------------------------
LOG_LEVEL = env_str("IMAGINEER_LOG_LEVEL", "INFO").upper()
# "json" (one object per line; the production default) or "text".
LOG_FORMAT = env_str("IMAGINEER_LOG_FORMAT", "text" if DEBUG else "json").lower()
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(
        f"IMAGINEER_LOG_FORMAT must be json or text, not {LOG_FORMAT!r}"
    )
# Prompts, captions, keys, tokens, cookies, passwords and query strings are
# masked in every log line (on whenever DEBUG is off).
LOG_REDACT = env_bool("IMAGINEER_LOG_REDACT", not DEBUG)
# Per-logger levels: "django.db.backends=DEBUG,scraping=WARNING".
LOG_LEVELS = env_list("IMAGINEER_LOG_LEVELS")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "trace_id": {"()": "imagineer_project.logging.TraceIdFilter"},
        "redact": {"()": "imagineer_project.logredact.RedactFilter"},
    },
    "formatters": {
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [trace=%(trace_id)s] "
            "%(message)s"
        },
        "json": {"()": "imagineer_project.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": sys.stderr,
            "filters": ["trace_id", "redact"],
            "formatter": LOG_FORMAT,
        },
        # Each request's recent records, for bug reports (docs/bug-reports.md).
        "trace_logs": {
            "class": "imagineer_project.logcapture.TraceLogHandler",
            "filters": ["trace_id", "redact"],
        },
    },
    "root": {"handlers": ["console", "trace_logs"], "level": LOG_LEVEL},
    "loggers": {
        # django-q2 logs one INFO line per enqueued task.
        "django-q": {"level": "WARNING"},
        "PIL": {"level": "WARNING"},
        # One INFO line per request; the crawl log already records each URL.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},  # the anthropic SDK's copy of httpx
        # Django's own console handler (DEFAULT_LOGGING, DEBUG only) would print
        # django.* lines a second time, unformatted and unredacted.
        "django": {"handlers": [], "level": "INFO"},
    },
}
for _entry in LOG_LEVELS:
    _name, _, _level = _entry.partition("=")
    if not _name.strip() or not _level.strip():
        raise ImproperlyConfigured(
            f"IMAGINEER_LOG_LEVELS entries read logger=LEVEL, not {_entry!r}"
        )
    LOGGING["loggers"].setdefault(_name.strip(), {})["level"] = _level.strip().upper()

IMAGINEER_VERSION = __import__("imagineer_project").__version__

# --- Scraping -----------------------------------------------------------------------
# Private and loopback targets are refused unless this is on (local use, tests);
# link-local metadata addresses (169.254.169.254...) stay refused even then.
SCRAPER_ALLOW_PRIVATE_ADDRESSES = env_bool("SCRAPER_ALLOW_PRIVATE_ADDRESSES", False)
SCRAPER_USER_AGENT = env_str(
    "SCRAPER_USER_AGENT",
    f"ImagineerBot/{IMAGINEER_VERSION} (+self-hosted dataset builder)",
)
SCRAPER_REQUEST_TIMEOUT = float(env_int("SCRAPER_REQUEST_TIMEOUT", 20, minimum=1))
SCRAPER_RENDER_TIMEOUT = float(env_int("SCRAPER_RENDER_TIMEOUT", 30, minimum=5))
SCRAPER_MAX_CONCURRENCY = env_int("SCRAPER_MAX_CONCURRENCY", 16, minimum=1)
# The adaptive politeness (scraping.throttle) never waits less than this between
# requests to one host, whatever the server's pace (Crawl-delay always wins).
SCRAPER_MIN_DELAY = env_float("SCRAPER_MIN_DELAY", 0.0, minimum=0)

# --- labeling (Claude through the anthropic SDK) ------------------------------------
# The SDK's own variables: ANTHROPIC_API_KEY, and ANTHROPIC_BASE_URL for a proxy or
# a local fake. Without a key, labeling jobs refuse to start with a clear error.
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL")
# The SDK retries 408/409/429/5xx/529 with exponential backoff, honouring
# retry-after; this many times per request.
ANTHROPIC_MAX_RETRIES = env_int("ANTHROPIC_MAX_RETRIES", 4, minimum=0)
ANTHROPIC_TIMEOUT = env_float("ANTHROPIC_TIMEOUT", 120.0, minimum=1)
LABELING_MODEL = env_str("LABELING_MODEL", "claude-sonnet-5-5")
# USD per million tokens, for the cost estimate and per-job budgets. Set them
# to your model's list price (the defaults are Sonnet-class prices).
LABELING_PRICE_INPUT_PER_MTOK = env_float(
    "LABELING_PRICE_INPUT_PER_MTOK", 3.0, minimum=0
)
LABELING_PRICE_OUTPUT_PER_MTOK = env_float(
    "LABELING_PRICE_OUTPUT_PER_MTOK", 15.0, minimum=0
)
# Requests in flight at once per labeling job.
LABELING_CONCURRENCY = env_int("LABELING_CONCURRENCY", 4, minimum=1)
LABELING_MAX_TOKENS = env_int("LABELING_MAX_TOKENS", 1024, minimum=128)
# Images go to the API no larger than this (cost control; Claude's own limits).
LABELING_MAX_EDGE = env_int("LABELING_MAX_EDGE", 1568, minimum=64)
LABELING_MAX_PIXELS = env_int("LABELING_MAX_PIXELS", 1_150_000, minimum=4096)
# The lowest rating that sets image.is_nsfw (SAFE, SUGGESTIVE, ADULT, EXPLICIT).
LABELING_NSFW_THRESHOLD = env_str("LABELING_NSFW_THRESHOLD", "ADULT").upper()
if LABELING_NSFW_THRESHOLD not in ("SAFE", "SUGGESTIVE", "ADULT", "EXPLICIT"):
    raise ImproperlyConfigured(
        "LABELING_NSFW_THRESHOLD must be SAFE, SUGGESTIVE, ADULT or EXPLICIT"
    )
# A job gives up when this many requests in a row fail at the API level
# (network, overload after retries): the service is down, not the image.
LABELING_MAX_CONSECUTIVE_API_ERRORS = env_int(
    "LABELING_MAX_CONSECUTIVE_API_ERRORS", 5, minimum=1
)
# Below this many captioned images an album is not ready to train.
TRAINING_MIN_CAPTIONED = env_int("TRAINING_MIN_CAPTIONED", 20, minimum=1)

# --- training (LoRA runs on the gpu cluster) -----------------------------------------
# Fewer captioned images than this draws a warning on a dataset version.
TRAINING_WARN_CAPTIONED = env_int("TRAINING_WARN_CAPTIONED", 50, minimum=1)
# A local diffusers folder or a hub id; what a new run trains on unless told.
TRAINING_BASE_MODEL = env_str(
    "TRAINING_BASE_MODEL", "stable-diffusion-v1-5/stable-diffusion-v1-5"
)
# "auto" takes cuda, then mps, then cpu; the worker's own machine decides.
TRAINING_DEVICE = env_str("TRAINING_DEVICE", "auto")
# Each run works in <TRAINING_WORK_DIR>/run-<id>/ (the dataset copy, checkpoints,
# the LoRA and samples before they go to storage). On the GPU worker's machine.
TRAINING_WORK_DIR = Path(env_str("TRAINING_WORK_DIR", str(VAR_DIR / "training")))
# A run's config: defaults, and the range the API and admin accept (inclusive).
# `manage.py train` may go below the minimum steps and resolution, with a warning.
TRAINING_DEFAULTS = {
    "steps": env_int("TRAINING_STEPS", 1500, minimum=1),
    "rank": 8,
    "alpha": 32.0,
    "learning_rate": 1e-4,
    "warmup_steps": 100,
    "gradient_accumulation": 4,
    "batch_size": 1,
    # The base model's family's size (SD 1.5 512, SD 2.x 768, SDXL 1024) when a
    # request leaves it unset; this one when the family cannot be read.
    "resolution": 512,
    "random_flip": True,
    "center_crop": True,
    "mixed_precision": env_str("TRAINING_MIXED_PRECISION", "bf16"),
    "seed": 0,
    "checkpoint_every": 250,
    "gradient_checkpointing": False,
    "sample_steps": 20,
    # network
    "lora_targets": "transformer",
    "conv_rank": 4,
    "conv_alpha": 1.0,
    "train_text_encoder": False,
    "text_encoder_lr": 5e-5,
    # data and captions
    "bucketing": True,
    "bucket_min_side": 0,
    "bucket_max_side": 0,
    "bucket_step": 64,
    "shuffle_tags": False,
    "keep_tokens": 0,
    "caption_dropout": 0.0,
    "reg_album": 0,
    "reg_weight": 1.0,
    "validation_split": 0.0,
    # optimisation
    "optimizer": "adamw",
    "lr_scheduler": "constant_with_warmup",
    "lr_cycles": 1,
    "loss_type": "l2",
    "huber_c": 0.1,
    "min_snr_gamma": 0.0,
    "noise_offset": 0.0,
    "compile_unet": False,
}
TRAINING_RANGES = {
    "steps": (500, 5000),
    "rank": (4, 32),
    "alpha": (1.0, 128.0),
    # AdamW's. "<field>@<optimizer>": that optimizer's range instead: Prodigy
    # finds its own step size and wants learning rates of about 1.0.
    "learning_rate": (1e-6, 1e-2),
    "learning_rate@prodigy": (0.1, 2.0),
    "warmup_steps": (0, 1000),
    "gradient_accumulation": (1, 64),
    "batch_size": (1, 32),
    "resolution": (256, 1536),
    "seed": (0, 2**31 - 1),
    "checkpoint_every": (0, 5000),
    "sample_steps": (1, 100),
    "conv_rank": (1, 64),
    "conv_alpha": (0.1, 128.0),
    "text_encoder_lr": (1e-7, 1e-2),
    "text_encoder_lr@prodigy": (0.1, 2.0),
    "bucket_min_side": (0, 2048),
    "bucket_max_side": (0, 2048),
    "bucket_step": (8, 256),
    "keep_tokens": (0, 32),
    "caption_dropout": (0.0, 0.5),
    "reg_weight": (0.0, 2.0),
    "validation_split": (0.0, 0.5),
    "lr_cycles": (1, 50),
    "huber_c": (0.001, 1.0),
    "min_snr_gamma": (0.0, 20.0),
    "noise_offset": (0.0, 0.5),
}
# A training task may run this long before django-q2 stops it; `retry` is longer,
# or a run still training would be handed to the worker a second time.
TRAINING_TIMEOUT = env_int("TRAINING_TIMEOUT", 24 * 3600, minimum=60)
# The `gpu` cluster: one worker, so one run at a time per GPU. Start it with
# `Q_CLUSTER_NAME=gpu manage.py qcluster` (`manage.py serve` does).
Q_CLUSTER["ALT_CLUSTERS"] = {
    "gpu": {
        "workers": 1,
        "timeout": TRAINING_TIMEOUT,
        "retry": TRAINING_TIMEOUT + 600,
    },
}

# --- generation (runs on the `gpu` cluster) -------------------------------------------
# The base model when a request names none (else TRAINING_BASE_MODEL, else the
# tiny demo model once `make demo` built it).
GENERATION_BASE_MODEL = env_str("GENERATION_BASE_MODEL")
GENERATION_DEVICE = env_str("GENERATION_DEVICE")  # empty: TRAINING_DEVICE
GENERATION_MIXED_PRECISION = env_str("GENERATION_MIXED_PRECISION", "fp16")
GENERATION_MAX_PROMPT_CHARS = env_int("GENERATION_MAX_PROMPT_CHARS", 1000, minimum=1)
GENERATION_MIN_SIZE = env_int("GENERATION_MIN_SIZE", 64, minimum=8)
GENERATION_MAX_SIZE = env_int("GENERATION_MAX_SIZE", 1024, minimum=8)
GENERATION_MAX_STEPS = env_int("GENERATION_MAX_STEPS", 150, minimum=1)
GENERATION_MAX_IMAGES = env_int("GENERATION_MAX_IMAGES", 8, minimum=1)
GENERATION_MAX_LORAS = env_int("GENERATION_MAX_LORAS", 8, minimum=1)
GENERATION_GUIDANCE_RANGE = (0.0, env_float("GENERATION_MAX_GUIDANCE", 30.0, minimum=0))
# Images a user may ask for per window, counted per image (a job of 4 images
# counts 4, a 54-card set 54): "200/hour", "20/minute", or "off".
GENERATION_RATE_LIMIT = env_str("GENERATION_RATE_LIMIT", "200/hour")
GENERATION_RATE_LIMIT_EXEMPT_STAFF = env_bool(
    "GENERATION_RATE_LIMIT_EXEMPT_STAFF", False
)
GENERATION_DEFAULT_ALBUM = env_str("GENERATION_DEFAULT_ALBUM") or "Generated"
# The visibility of the albums generation and sets make (and so of the images in
# them): "private" (the default) or "public". An album a user picks keeps its own.
GENERATED_VISIBILITY = env_str("GENERATED_VISIBILITY", "private").lower()
if GENERATED_VISIBILITY not in ("private", "public"):
    raise ImproperlyConfigured("GENERATED_VISIBILITY must be private or public")
# Where LoRA files from non-local storage (S3) are copied for the gpu worker.
GENERATION_LORA_CACHE_DIR = env_str(
    "GENERATION_LORA_CACHE_DIR", str(VAR_DIR / "lora-cache")
)
# Message Batches (a labeling job's `use_batch`): images per batch; how often the
# scheduled poller asks whether the batches of waiting jobs have ended; how often
# `manage.py label --batch` asks while it waits in the foreground.
LABELING_BATCH_SIZE = env_int("LABELING_BATCH_SIZE", 200, minimum=1)
LABELING_BATCH_POLL_MINUTES = env_int("LABELING_BATCH_POLL_MINUTES", 1, minimum=1)
LABELING_BATCH_POLL_SECONDS = env_float("LABELING_BATCH_POLL_SECONDS", 30.0, minimum=0)
LABELING_BATCH_DISCOUNT = env_float("LABELING_BATCH_DISCOUNT", 0.5, minimum=0)

# --- legacy import --------------------------------------------------------------------
# The folders (comma-separated) the API and the admin may import the old
# system's outputs and image packs from, and below; empty: only the
# `import_legacy` command imports. Never echoed: callers see paths relative to
# these.
LEGACY_IMPORT_ROOTS = env_list("LEGACY_IMPORT_ROOTS")

# --- bug reports (docs/bug-reports.md) ------------------------------------------------
# Resolved and won't-fix reports older than this many days are purged nightly;
# open ones never are.
BUG_REPORT_RETENTION_DAYS = env_int("BUG_REPORT_RETENTION_DAYS", 30, minimum=1)
# How often one user may file a report ("N/unit", as GENERATION_RATE_LIMIT).
BUG_REPORT_RATE_LIMIT = env_str("BUG_REPORT_RATE_LIMIT", "20/hour")
# The log lines a report captures: the last records of each of the most recent
# traces, kept in each process's memory (and in the cache for failed requests).
BUG_REPORT_LOG_TRACES = env_int("BUG_REPORT_LOG_TRACES", 500, minimum=1)
BUG_REPORT_LOG_RECORDS = env_int("BUG_REPORT_LOG_RECORDS", 100, minimum=1)

# --- maintenance (docs/operations.md, "Maintenance") ----------------------------------
# Every scheduled pass only reports what it would remove.
MAINTENANCE_DRY_RUN = env_bool("MAINTENANCE_DRY_RUN", False)
# Crawl log rows of finished scrape jobs older than this many days are purged.
CRAWL_LOG_RETENTION_DAYS = env_int("CRAWL_LOG_RETENTION_DAYS", 90, minimum=1)
# Work dirs of failed, cancelled and deleted training runs go after this many
# days; a succeeded run's keeps only its final checkpoint (all of it with
# TRAINING_WORKDIR_KEEP_SUCCEEDED on).
TRAINING_WORKDIR_RETENTION_DAYS = env_int(
    "TRAINING_WORKDIR_RETENTION_DAYS", 14, minimum=0
)
TRAINING_WORKDIR_KEEP_SUCCEEDED = env_bool("TRAINING_WORKDIR_KEEP_SUCCEEDED", False)
# A stored file no row references is deleted only once it is this old, so a
# file written by an ingest still in flight is never touched.
STORAGE_ORPHAN_GRACE_HOURS = env_int("STORAGE_ORPHAN_GRACE_HOURS", 24, minimum=0)

# --- disk (docs/disk.md) ------------------------------------------------------------
# /api/health turns degraded (and the admin shows a banner) when a filesystem
# we write to has less free space than this percentage or this many bytes (0: off).
DISK_FREE_ALERT_PERCENT = env_float("DISK_FREE_ALERT_PERCENT", 10.0, minimum=0)
DISK_FREE_ALERT_BYTES = env_int("DISK_FREE_ALERT_BYTES", 0, minimum=0)
# Below this many free bytes, training runs and bulk uploads refuse to start.
DISK_FREE_FLOOR_BYTES = env_int("DISK_FREE_FLOOR_BYTES", 1024**3, minimum=0)

# --- rate limits (docs/api.md, "Rate limits") -----------------------------------------
# One setting for every limit, per user (per IP for anonymous callers):
# "generate=200/h,upload_files=2000/h,upload_bytes=2GB/h,train=5/h,..."; a name
# left out keeps its default (imagineer_project.ratelimit), "off" turns one off.
# GENERATION_RATE_LIMIT and BUG_REPORT_RATE_LIMIT above are read as the defaults
# of `generate`, `set_generate` and `bug_report`. Names and values are checked
# at start: a bad one refuses to boot.
RATE_LIMITS = env_str("IMAGINEER_RATE_LIMITS")
# The limits staff skip: "generate,upload_files" (empty: staff are limited too;
# GENERATION_RATE_LIMIT_EXEMPT_STAFF adds `generate` and `set_generate`).
RATE_LIMITS_STAFF_EXEMPT = env_list("IMAGINEER_RATE_LIMITS_STAFF_EXEMPT")

# --- metrics (docs/operations.md, "Metrics") ------------------------------------------
# GET /metrics answers a Bearer token equal to this, or a staff session; 404
# while it is empty.
METRICS_TOKEN = env_str("IMAGINEER_METRICS_TOKEN")

# --- production serving (docs/deploy.md) ----------------------------------------------
# `manage.py serve --production`: gunicorn worker processes (0: 2 per core + 1).
WEB_WORKERS = env_int("IMAGINEER_WEB_WORKERS", 0, minimum=0)
