"""The scale-out harness (`pytest -m scaleout`): PostgreSQL, Redis, an S3
endpoint (moto's server mode), one gunicorn web process with two workers, two
general django-q2 workers and one gpu worker, each with its own data directory
as separate hosts would have, all on loopback.

Everything here is started as a child process in its own process group, logs to
its own file and is stopped (group and all) by `ScaleOut.close`, so a failing
test leaves nothing behind; a wait that times out fails with the tail of every
process's log, which is where the reason is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get(
    "SCALEOUT_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BUCKET = "imagineer-scaleout"
S3_KEYS = {"S3_ACCESS_KEY_ID": "scaleout", "S3_SECRET_ACCESS_KEY": "scaleout-secret"}


class Missing(Exception):
    """A part of the stack is not on this machine (the suite skips, saying which)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], Any], *, timeout: float, what: str, logs: Callable[[], str]
) -> Any:
    """Poll `check` until it returns something truthy; on timeout fail with
    `what` and the processes' log tails (an exception in `check` is retried
    and its last one shown)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 (retried, then shown)
            result, last_error = None, f"{type(exc).__name__}: {exc}"
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"Timed out after {timeout:.0f} s waiting for {what}"
                + (f" (last error: {last_error})" if last_error else "")
                + "\n"
                + logs()
            )
        time.sleep(0.3)


@dataclass
class Proc:
    """A child process in its own session (so its workers go with it)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def kill9(self) -> None:
        """`kill -9` of the whole process group: the host dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the group (serve stops gunicorn, a qcluster its workers),
        then SIGKILL to whatever of it is left, in this group or in another
        session its leader started (serve runs gunicorn in its own)."""
        family = _descendants(self.popen.pid)
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for pid in family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def _descendants(pid: int) -> list[int]:
    """The processes below `pid` now (children first found, then theirs)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        children = parents.get(queue.pop(), [])
        found += children
        queue += children
    return found


@dataclass
class ScaleOut:
    """The running stack; `close()` stops and removes all of it."""

    root: Path
    db_name: str = ""
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # API tokens by user
    base_url: str = ""
    s3_url: str = ""

    # --- logs and waits -----------------------------------------------------------

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ({'running' if p.alive() else f'exit {p.popen.returncode}'})"
            f" log tail ---\n{p.tail()}"
            for name, p in self.procs.items()
        )

    def wait(self, check: Callable[[], Any], *, timeout: float, what: str) -> Any:
        return wait_for(check, timeout=timeout, what=what, logs=self.logs)

    # --- hosts --------------------------------------------------------------------

    def var_dir(self, host: str) -> Path:
        path = self.root / "hosts" / host / "var"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def host_env(self, host: str, **extra: str) -> dict[str, str]:
        return {**self.env, "IMAGINEER_VAR_DIR": str(self.var_dir(host)), **extra}

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def manage(self, *args: str, host: str = "admin", timeout: float = 300) -> str:
        """`manage.py ARGS` on `host` (its own data directory); its stdout."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.host_env(host),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise AssertionError(
                f"manage.py {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def media_files(self) -> dict[str, list[str]]:
        """Files under each host's local media folder (there should be none)."""
        found: dict[str, list[str]] = {}
        for host_dir in sorted((self.root / "hosts").iterdir()):
            media = host_dir / "var" / "media"
            files = [
                p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file()
            ]
            if files:
                found[host_dir.name] = files
        return found

    # --- PostgreSQL and S3 ----------------------------------------------------------

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            cursor = conn.execute(query, params or None)
            return cursor.fetchall() if cursor.description else []

    def s3_keys(self) -> list[str]:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=S3_KEYS["S3_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["S3_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    # --- clean-up -----------------------------------------------------------------

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        if self.db_name:
            with contextlib.suppress(Exception):
                _pg_admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.root, ignore_errors=True)


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


def _db_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def require_parts() -> None:
    """Raise Missing naming the first part this machine lacks."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import psycopg
    except ImportError as exc:
        raise Missing(
            f"{exc.name} is not installed (pip install 'moto[server]')"
        ) from None
    if shutil.which("redis-server") is None:
        raise Missing("no redis-server binary (apt-get install redis-server)")
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        raise Missing(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}") from None


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500


def start_backing_services(stack: ScaleOut) -> None:
    """A fresh database, a Redis server and an S3 endpoint with its bucket."""
    stack.db_name = f"imagineer_scaleout_{secrets.token_hex(4)}"
    _pg_admin(f'CREATE DATABASE "{stack.db_name}"')
    redis_port = free_port()
    redis_dir = stack.root / "redis"
    redis_dir.mkdir()
    stack.spawn(
        "redis",
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(redis_dir),
        ],
        dict(os.environ),
    )
    s3_port = free_port()
    stack.s3_url = f"http://127.0.0.1:{s3_port}"
    stack.spawn(
        "s3",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        dict(os.environ),
    )

    def redis_up() -> bool:
        with socket.create_connection(("127.0.0.1", redis_port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    stack.wait(redis_up, timeout=20, what="redis-server to answer PING")
    stack.wait(lambda: _http_ok(stack.s3_url), timeout=30, what="moto's S3 server")
    import boto3

    boto3.client(
        "s3",
        endpoint_url=stack.s3_url,
        aws_access_key_id=S3_KEYS["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["S3_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    stack.env.update(
        {
            "DATABASE_URL": _db_url(stack.db_name),
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "S3_BUCKET": BUCKET,
            "S3_ENDPOINT_URL": stack.s3_url,
            "S3_REGION": "us-east-1",
            **S3_KEYS,
        }
    )


def base_env(**extra: str) -> dict[str, str]:
    """The production-like environment every process shares (each host adds its
    own IMAGINEER_VAR_DIR)."""
    env = {
        key: value
        for key, value in os.environ.items()
        # The test process's own settings must not leak into the stack's.
        if not key.startswith(("IMAGINEER_", "DJANGO_", "Q_", "S3_", "GENERATION_"))
        and key
        not in {"DATABASE_URL", "REDIS_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}
        and not key.startswith(("TRAINING_", "SCRAPER_", "PYTEST_"))
    }
    env.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "IMAGINEER_ENVIRONMENT": "scaleout",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def make_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="imagineer-scaleout-"))
