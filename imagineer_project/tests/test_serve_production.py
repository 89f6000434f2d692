"""`manage.py serve --production`: gunicorn, WhiteNoise and both worker clusters
with DEBUG off, started only when the production configuration is sound.

Each case runs the real command in a fresh interpreter (settings are read once
per process) and talks to it over HTTP on a free loopback port."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {
    "SECRET_KEY": secrets.token_urlsafe(60),
    "ALLOWED_HOSTS": "127.0.0.1",
    # Behind a TLS-terminating proxy, as deployed (docs/deploy.md); the test
    # sends X-Forwarded-Proto: https like the proxy would.
    "SECURE_PROXY_SSL": "true",
    "Q_WORKERS": "1",
}
# What the operator's shell might carry that would change the outcome.
SCRUBBED = {
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "S3_BUCKET",
    "REDIS_URL",
    "IMAGINEER_ENVIRONMENT",
    "PROMETHEUS_MULTIPROC_DIR",
    "Q_CLUSTER_NAME",
}

# Every case starts the real command in fresh interpreters (a few seconds to a
# minute each): they run once, with the scale-out suite (`make scaleout`, a CI
# step of its own), not in both database passes.
pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.skipif(
        not Path("/proc/self/stat").exists(),
        reason="reads the process tree from /proc",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        # Connections just closed linger in TIME_WAIT; only a listener counts.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    return (
        base
        | CONFIG
        | {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'imagineer.sqlite3'}",
            "IMAGINEER_VAR_DIR": str(tmp_path / "var"),
        }
        | extra
    )


def serve(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--production", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux: the parent pid in /proc/N/stat)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def web_processes(pid: int, *, expected: int, seconds: float = 30) -> list[int]:
    """The gunicorn processes below `pid`, once there are `expected` of them
    (or whatever there are after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        web = [p for p in descendants(pid) if "gunicorn" in cmdline(p)]
        if len(web) >= expected or time.monotonic() > deadline:
            return web
        time.sleep(0.2)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, headers={"X-Forwarded-Proto": "https", "Host": "127.0.0.1"}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_for_health(base: str, process: subprocess.Popen, seconds: float) -> dict:
    """The health body once it says ok (the workers report within seconds)."""
    deadline = time.monotonic() + seconds
    body: dict = {}
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            status, _, raw = get(f"{base}/api/health")
            body = json.loads(raw)
            if status == 200:
                return body
        except (OSError, ValueError):
            pass
        time.sleep(1)
    raise AssertionError(f"/api/health never answered 200: {body}")


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("SECRET_KEY", "DEBUG is off: set SECRET_KEY"),
        ("ALLOWED_HOSTS", "DEBUG is off: set ALLOWED_HOSTS"),
        ("DATABASE_URL", "DEBUG is off: set DATABASE_URL"),
    ],
)
def test_a_bad_configuration_is_refused_before_anything_starts(
    missing: str, message: str, tmp_path
) -> None:
    env = environment(tmp_path)
    del env[missing]
    port = free_port()
    process = serve(env, "--addr", f"127.0.0.1:{port}")
    output, _ = process.communicate(timeout=180)

    assert process.returncode != 0
    assert message in output
    assert "Traceback" not in output
    # Nothing started: no static files collected, nobody listening, no worker.
    assert not (tmp_path / "var" / "static" / "staticfiles.json").exists()
    assert not listening(port)
    assert "Listening at" not in output


def test_unapplied_migrations_are_refused_with_the_fix(tmp_path) -> None:
    process = serve(environment(tmp_path), "--addr", f"127.0.0.1:{free_port()}")
    output, _ = process.communicate(timeout=180)

    assert process.returncode != 0
    assert "not applied" in output
    assert "--migrate" in output


def test_serves_the_app_static_files_and_workers_then_stops_them_all(
    tmp_path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # prometheus-client's multiprocess folder for the web workers: a file left
    # by the last run's processes would add its counts to this run's.
    metrics = tmp_path / "var" / "prometheus" / f"web-{port}"
    metrics.mkdir(parents=True)
    (metrics / "counter_1.db").write_bytes(b"stale")
    process = serve(
        environment(tmp_path),
        "--addr",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--migrate",
    )
    try:
        health = wait_for_health(base, process, seconds=240)

        assert health["environment"] == "production"
        assert health["queue"]["workers_alive"] == 2  # general and gpu clusters
        # One gunicorn master and the two web workers asked for. The master
        # loads the app once and forks the workers a moment apart, so the
        # first may answer before the second exists.
        web = web_processes(process.pid, expected=3)
        children = descendants(process.pid)
        assert len(web) == 3
        assert sum("qcluster" in cmdline(pid) for pid in children) >= 2
        assert not (metrics / "counter_1.db").exists()
        environ = Path(f"/proc/{web[0]}/environ").read_bytes().split(b"\0")
        assert f"PROMETHEUS_MULTIPROC_DIR={metrics}".encode() in environ

        status, _, page = get(f"{base}/admin/login/")
        assert status == 200
        # DEBUG is off: the page names hashed files from the manifest.
        css = re.search(
            r'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', page.decode()
        )
        assert css, page[:500]
        status, headers, body = get(base + css.group(1))
        assert status == 200
        assert headers["Content-Type"].startswith("text/css")
        assert b"body" in body
        assert get(f"{base}/static/admin/css/no-such-file.css")[0] == 404
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)

    assert process.returncode == 0, output
    time.sleep(1)  # let the kernel reap the last grandchildren
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not listening(port)
