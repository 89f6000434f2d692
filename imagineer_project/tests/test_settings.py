"""Settings come from the environment; each case runs in a fresh interpreter
because Django reads settings once per process."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROD = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(60),
    "ALLOWED_HOSTS": "imagineer.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/imagineer",
}
PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "from django.core.files.storage import storages; d = storages['default']; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
    "'name': s.DATABASES['default']['NAME'], 'storage': type(d).__name__, "
    "'broker': 'redis' if 'redis' in s.Q_CLUSTER else 'orm', "
    "'cache': s.CACHES['default']['BACKEND']}))"
)


def run(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DEBUG",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
            "DATABASE_URL",
            "S3_BUCKET",
            "REDIS_URL",
        }
    }
    full = (
        clean
        | {
            "DJANGO_SETTINGS_MODULE": "imagineer_project.settings",
            "IMAGINEER_VAR_DIR": str(tmp_path / "var"),
        }
        | env
    )
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def probe(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    result = run(["-c", PROBE], env, tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_embedded_defaults_are_sqlite_local_media_and_orm_broker(tmp_path) -> None:
    assert probe({}, tmp_path) == {
        "engine": "django.db.backends.sqlite3",
        "name": str(tmp_path / "var" / "imagineer.sqlite3"),
        "storage": "AtomicFileSystemStorage",
        "broker": "orm",
        "cache": "django.core.cache.backends.filebased.FileBasedCache",
    }


def test_environment_selects_postgres_s3_and_redis(tmp_path) -> None:
    got = probe(
        {
            "DATABASE_URL": "postgres://u:p@db.internal:5432/imagineer",
            "S3_BUCKET": "media",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        },
        tmp_path,
    )
    assert got == {
        "engine": "django.db.backends.postgresql",
        "name": "imagineer",
        "storage": "S3Storage",
        "broker": "redis",
        "cache": "django.core.cache.backends.redis.RedisCache",
    }


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("SECRET_KEY", "set SECRET_KEY"),
        ("ALLOWED_HOSTS", "set ALLOWED_HOSTS"),
        ("DATABASE_URL", "set DATABASE_URL"),
    ],
)
def test_production_refuses_to_boot_without(
    missing: str, message: str, tmp_path
) -> None:
    env = {k: v for k, v in PROD.items() if k != missing}
    result = run(["manage.py", "check"], env, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_refuses_the_insecure_placeholder_key(tmp_path) -> None:
    env = PROD | {"SECRET_KEY": "django-insecure-" + "x" * 60}
    result = run(["manage.py", "check"], env, tmp_path)
    assert "set SECRET_KEY" in result.stderr


def test_deploy_checks_are_clean_under_production_settings(tmp_path) -> None:
    result = run(["manage.py", "check", "--deploy"], PROD, tmp_path)
    assert result.returncode == 0, result.stderr
    # The two silenced checks ask for HSTS includeSubDomains and preload, which
    # are opt-in (test_hsts_subdomains_and_preload_are_opt_in).
    assert "System check identified no issues (2 silenced)." in result.stdout
    opted_in = PROD | {
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
        "SECURE_HSTS_PRELOAD": "true",
    }
    result = run(["manage.py", "check", "--deploy"], opted_in, tmp_path)
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_bad_values_name_the_variable(tmp_path) -> None:
    result = run(["manage.py", "check"], {"Q_WORKERS": "many"}, tmp_path)
    assert "Q_WORKERS must be an integer" in result.stderr


def test_web_process_does_not_import_the_ml_stack(tmp_path) -> None:
    code = (
        "import sys, django; django.setup(); import imagineer_project.urls; "
        "heavy = {'torch', 'diffusers', 'peft', 'transformers', 'playwright'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = run(["-c", code], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


HSTS_PROBE = (
    "import django; django.setup(); from django.test import Client; "
    "r = Client().get('/api/openapi.json', secure=True, "
    "HTTP_HOST='imagineer.example.com'); "
    "print(r.status_code, r.headers.get('Strict-Transport-Security'))"
)


@pytest.mark.parametrize(
    ("env", "header"),
    [
        ({}, "max-age=31536000"),
        (
            {"SECURE_HSTS_INCLUDE_SUBDOMAINS": "true"},
            "max-age=31536000; includeSubDomains",
        ),
        (
            {"SECURE_HSTS_INCLUDE_SUBDOMAINS": "true", "SECURE_HSTS_PRELOAD": "true"},
            "max-age=31536000; includeSubDomains; preload",
        ),
    ],
)
def test_hsts_subdomains_and_preload_are_opt_in(env, header: str, tmp_path) -> None:
    # Both bind every subdomain (and, once preloaded, browsers for months):
    # an operator must ask for them.
    result = run(["-c", HSTS_PROBE], PROD | env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(None, 1) == ["200", f"{header}\n"]
