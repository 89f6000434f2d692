"""The one rate-limit layer: its setting, its counting in the shared cache, and
its correctness across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from imagineer_project.ratelimit import (
    Rate,
    RateInvalid,
    RateLimitExceeded,
    parse_rate,
    rate_limit_take,
    rate_limit_take_all,
    rate_limits,
    staff_exempt,
)
from imagineer_project.testing import make_user

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3600


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20/hour", Rate(20, HOUR)),
        ("20/h", Rate(20, HOUR)),
        ("10/minute", Rate(10, 60)),
        ("3/s", Rate(3, 1)),
        ("5/10m", Rate(5, 600)),
        ("100 / days", Rate(100, 86400)),
        ("", None),
        ("off", None),
    ],
)
def test_parse_rate(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("2GB/h", Rate(2 * 1024**3, HOUR)),
        ("500 MB/day", Rate(500 * 1024**2, 86400)),
        ("1tb/d", Rate(1024**4, 86400)),
        ("4096/h", Rate(4096, HOUR)),
    ],
)
def test_sizes_read_for_bytes(text: str, rate: Rate) -> None:
    assert parse_rate(text, sizes=True) == rate


@pytest.mark.parametrize("text", ["20", "x/hour", "0/hour", "5/fortnight", "2GB/h"])
def test_bad_rates_say_what_is_expected(text: str) -> None:
    with pytest.raises(RateInvalid, match="is not like|allows nothing"):
        parse_rate(text)


def test_every_limit_has_a_default_and_the_setting_overrides_them(
    settings: Any,
) -> None:
    settings.GENERATION_RATE_LIMIT = "200/hour"
    settings.BUG_REPORT_RATE_LIMIT = "20/hour"
    settings.RATE_LIMITS = "generate=20/h, upload_bytes=2GB/h,train=off"
    assert rate_limits() == {
        "generate": Rate(20, HOUR),
        "set_generate": Rate(200, HOUR),  # GENERATION_RATE_LIMIT, kept
        "upload_files": Rate(2000, HOUR),
        "upload_bytes": Rate(2 * 1024**3, HOUR),
        "train": None,
        "label": Rate(60, HOUR),
        "scrape": Rate(60, HOUR),
        "bug_report": Rate(20, HOUR),
    }


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("generate=lots", "Rate limit generate: Rate limit 'lots'"),
        ("gpu=5/h", "entry 'gpu=5/h'"),
        ("train", "entry 'train'"),
        ("upload_files=2GB/h", "Rate limit upload_files"),
    ],
)
def test_a_bad_setting_names_the_entry(settings: Any, setting: str, named: str) -> None:
    settings.RATE_LIMITS = setting
    with pytest.raises(ImproperlyConfigured, match=named):
        rate_limits()


def test_staff_exemptions_are_checked_and_include_the_old_setting(
    settings: Any,
) -> None:
    settings.RATE_LIMITS_STAFF_EXEMPT = ["train"]
    settings.GENERATION_RATE_LIMIT_EXEMPT_STAFF = True
    assert staff_exempt() == {"train", "generate", "set_generate"}
    settings.RATE_LIMITS_STAFF_EXEMPT = ["everything"]
    with pytest.raises(ImproperlyConfigured, match="everything"):
        staff_exempt()


def test_the_server_refuses_to_start_on_a_bad_setting() -> None:
    env = {**os.environ, "IMAGINEER_RATE_LIMITS": "generate=20/h,scrape=often"}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Rate limit scrape: Rate limit 'often' is not like" in (done.stderr)


# --- counting -----------------------------------------------------------------------


@pytest.mark.django_db
def test_costs_count_and_a_refusal_is_not_counted(settings: Any) -> None:
    settings.RATE_LIMITS = "label=5/h"
    user = make_user()
    assert rate_limit_take("label", user=user, cost=2).remaining == 3
    assert rate_limit_take("label", user=user, cost=2).remaining == 1
    with pytest.raises(RateLimitExceeded) as refused:
        rate_limit_take("label", user=user, cost=2)
    assert refused.value.usage.remaining == 1
    assert 1 <= refused.value.retry_after <= HOUR
    assert rate_limit_take("label", user=user, cost=1).remaining == 0
    # Another user has their own count.
    other = make_user(username="other")
    assert rate_limit_take("label", user=other).remaining == 4


@pytest.mark.django_db
def test_a_cost_above_the_whole_limit_says_so(settings: Any) -> None:
    settings.RATE_LIMITS = "label=5/h"
    with pytest.raises(RateLimitExceeded, match="more than it allows in a whole"):
        rate_limit_take("label", user=make_user(), cost=6)


@pytest.mark.django_db
def test_off_and_staff_exempt_limits_count_nothing(settings: Any) -> None:
    settings.RATE_LIMITS = "train=off,label=1/h"
    settings.RATE_LIMITS_STAFF_EXEMPT = ["label"]
    user, staff = make_user(), make_user(username="boss", staff=True)
    assert all(rate_limit_take("train", user=user) is None for _ in range(50))
    assert all(rate_limit_take("label", user=staff) is None for _ in range(50))
    rate_limit_take("label", user=user)
    with pytest.raises(RateLimitExceeded):
        rate_limit_take("label", user=user)


@pytest.mark.django_db
def test_taking_several_limits_gives_back_on_refusal(settings: Any) -> None:
    settings.RATE_LIMITS = "upload_files=10/h,upload_bytes=3KB/h"
    user = make_user()
    rate_limit_take_all({"upload_files": 3, "upload_bytes": 2000}, user=user)
    with pytest.raises(RateLimitExceeded, match="Too many uploaded bytes"):
        rate_limit_take_all({"upload_files": 3, "upload_bytes": 2000}, user=user)
    # The refused request's three files were given back: seven still fit.
    assert rate_limit_take("upload_files", user=user, cost=7).remaining == 0


# --- across processes ---------------------------------------------------------------

HAMMER = """
import os, sys
import django
django.setup()
from imagineer_project.ratelimit import RateLimitExceeded, rate_limit_take

class Caller:
    pk = 7
    is_authenticated = True
    is_staff = False

admitted = 0
for _ in range(int(sys.argv[1])):
    try:
        rate_limit_take("label", user=Caller(), cost=1)
        admitted += 1
    except RateLimitExceeded:
        pass
print(admitted)
"""


def _hammer(env: dict[str, str], processes: int, tries: int) -> list[int]:
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(tries)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    counts = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        counts.append(int(out.strip().splitlines()[-1]))
    return counts


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        "DJANGO_SETTINGS_MODULE": "imagineer_project.settings",
        "IMAGINEER_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "IMAGINEER_RATE_LIMITS": "label=40/d",
        **extra,
    }
    return env


def test_the_database_cache_never_admits_past_the_limit_across_processes(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    subprocess.run(
        [sys.executable, "manage.py", "createcachetable"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    counts = _hammer(env, processes=4, tries=25)
    # 100 tries against 40: exactly 40 get in, however the processes interleave.
    assert sum(counts) == 40, counts


def test_redis_never_admits_past_the_limit_across_processes(tmp_path: Path) -> None:
    server = _redis_server(tmp_path)
    try:
        env = _env(tmp_path, REDIS_URL=server)
        counts = _hammer(env, processes=4, tries=25)
        assert sum(counts) == 40, counts
    finally:
        caches.close_all()


def _redis_server(tmp_path: Path) -> str:
    import shutil
    import socket
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as attempt:
            if attempt.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    _servers.append(process)
    return f"redis://127.0.0.1:{port}/0"


_servers: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _stop_servers() -> Any:
    yield
    while _servers:
        server = _servers.pop()
        server.terminate()
        server.wait(timeout=10)


# --- anonymous callers ------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_callers_are_counted_per_client_ip(settings: Any, rf: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    from imagineer_project.ratelimit import client_ip, rate_limit_meter_start

    settings.RATE_LIMITS = "bug_report=1/h"
    settings.SECURE_PROXY_SSL_HEADER = None
    spoofed = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4")
    # Without a proxy we were told about, anyone could send X-Forwarded-For.
    assert client_ip(spoofed) == "10.0.0.1"
    rate_limit_meter_start(spoofed)
    rate_limit_take("bug_report", user=AnonymousUser())
    with pytest.raises(RateLimitExceeded):
        rate_limit_take("bug_report", user=AnonymousUser())
    rate_limit_meter_start(rf.get("/", REMOTE_ADDR="10.0.0.2"))
    assert rate_limit_take("bug_report", user=AnonymousUser()) is not None

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert client_ip(spoofed) == "1.2.3.4"
