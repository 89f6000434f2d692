"""A local stand-in for the Anthropic Messages API, for tests, benchmarks and demos.

It listens on 127.0.0.1 and answers `POST /v1/messages` the way the real API
does, so the real `anthropic` SDK can be pointed at it with `base_url`. Replies
are scripted per request (`queue`), else a default tool call; every request
body is kept for assertions.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, str], dict[str, Any]]
Behaviour = Callable[[dict[str, Any]], Reply]

API_KEY = "sk-ant-test-key"
BATCHES = "/v1/messages/batches/"

_ids = itertools.count(1)


def _message(content: list[dict], stop_reason: str, usage: tuple[int, int]) -> dict:
    return {
        "id": f"msg_fake_{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def tool_reply(
    caption: str = "a small test image, flat colour",
    tags: list[str] | None = None,
    nsfw_rating: str = "SAFE",
    confidence: float = 0.9,
    *,
    usage: tuple[int, int] = (1500, 120),
    **extra: Any,
) -> Behaviour:
    """Claude calls the labeling tool (the normal, structured answer)."""
    payload = {
        "caption": caption,
        "tags": ["test image", "flat colour"] if tags is None else tags,
        "nsfw_rating": nsfw_rating,
        "confidence": confidence,
        **extra,
    }

    def reply(body: dict[str, Any]) -> Reply:
        block = {"type": "tool_use", "id": "toolu_fake", "name": _forced_tool(body)}
        content = [{**block, "input": payload}]
        return 200, {}, _message(content, "tool_use", usage)

    return reply


def _forced_tool(body: dict[str, Any]) -> str:
    """The tool the request made Claude call (its tool_choice), else its first."""
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or [{}]
    return choice.get("name") or tools[0].get("name", "tool")


def text_reply(text: str, *, usage: tuple[int, int] = (1500, 60)) -> Behaviour:
    content = [{"type": "text", "text": text}]
    return lambda body: (200, {}, _message(content, "end_turn", usage))


def refusal(*, usage: tuple[int, int] = (1500, 5)) -> Behaviour:
    return lambda body: (200, {}, _message([], "refusal", usage))


def empty_reply(*, usage: tuple[int, int] = (1500, 0)) -> Behaviour:
    return lambda body: (200, {}, _message([], "end_turn", usage))


def error(
    status: int, message: str = "", retry_after: float | None = None
) -> Behaviour:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    body = {
        "type": "error",
        "error": {
            "type": kinds.get(status, "api_error"),
            "message": message or "error",
        },
    }
    return lambda request: (status, headers, body)


_COLOURS = {
    "red": (200, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 70, 200),
    "yellow": (220, 200, 40),
    "purple": (130, 50, 160),
    "orange": (230, 130, 30),
    "white": (235, 235, 235),
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
}


def colour_reply(body: dict[str, Any]) -> Reply:
    """A reply that depends on the image: its nearest named average colour. Makes
    demos show varied captions and tags without a real model."""
    import base64
    import io

    from PIL import Image as PILImage

    data = body["messages"][0]["content"][0]["source"]["data"]
    with PILImage.open(io.BytesIO(base64.b64decode(data))) as im:
        mean = (
            im.convert("RGB").resize((1, 1), PILImage.Resampling.BOX).getpixel((0, 0))
        )
    name = min(
        _COLOURS,
        key=lambda c: sum((a - b) ** 2 for a, b in zip(_COLOURS[c], mean, strict=True)),
    )
    caption = f"a mostly {name} picture, simple shapes, flat colour"
    return tool_reply(
        caption, tags=[f"{name} picture", "simple shapes", "flat colour"]
    )(body)


class FakeAnthropic:
    """`with FakeAnthropic() as api:` then point the SDK at `api.base_url`."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        default: Behaviour | None = None,
        keep_requests: bool = True,
        port: int = 0,
    ) -> None:
        self.latency = latency
        # Bodies hold the base64 image: a benchmark over thousands of images
        # turns this off so the fake's memory is not mistaken for the job's.
        self.keep_requests = keep_requests
        self.request_count = 0
        self.default = default or tool_reply()
        self.script: deque[Behaviour] = deque()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests served at the same time
        # Message Batches: id -> {"requests": [...], "polls": n, "status": ...}.
        # A batch ends once it has been looked at `batch_polls` times.
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls = 1
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def queue(self, *behaviours: Behaviour) -> None:
        """The next requests get these replies, in order; then the default."""
        with self._lock:
            self.script.extend(behaviours)

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.request_count += 1
            if self.keep_requests:
                self.requests.append(body)
            behaviour = self.script.popleft() if self.script else self.default
        return behaviour(body)

    def _batch_create(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            batch_id = f"msgbatch_fake_{next(_ids)}"
            self.batches[batch_id] = {
                "requests": requests,
                "polls": 0,
                "status": "in_progress",
            }
        return self._batch_body(batch_id)

    def _batch_get(self, batch_id: str) -> Reply:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return error(404, f"no batch {batch_id}")({})
            batch["polls"] += 1
            if batch["polls"] > self.batch_polls and batch["status"] != "ended":
                batch["status"] = "ended"
        return 200, {}, self._batch_body(batch_id)

    def _batch_cancel(self, batch_id: str) -> Reply:
        with self._lock:
            if batch_id not in self.batches:
                return error(404, f"no batch {batch_id}")({})
            self.batches[batch_id]["status"] = "canceling"
        return 200, {}, self._batch_body(batch_id)

    def _batch_body(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        ended = batch["status"] == "ended"
        count = len(batch["requests"])
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": batch["status"],
            "request_counts": {
                "processing": 0 if ended else count,
                "succeeded": count if ended else 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": "2026-11-22T00:00:00Z",
            "expires_at": "2026-11-23T00:00:00Z",
            "ended_at": "2026-11-22T00:01:00Z" if ended else None,
            "results_url": f"{self.base_url}{BATCHES}{batch_id}/results"
            if ended
            else None,
        }

    def _batch_results(self, batch_id: str) -> list[dict[str, Any]]:
        """Each request answered by the script (or the default), as the API does."""
        lines = []
        for request in self.batches[batch_id]["requests"]:
            status, _, body = self._next(request["params"])
            result = (
                {"type": "succeeded", "message": body}
                if status == 200
                else {"type": "errored", "error": body}
            )
            lines.append({"custom_id": request["custom_id"], "result": result})
        return lines

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self._authorised():
                    return None
                path = self.path.split("?")[0]
                if path == "/v1/messages/batches":
                    body = json.loads(raw or b"{}")
                    return self._send(200, {}, fake._batch_create(body["requests"]))
                if path.startswith(BATCHES) and path.endswith("/cancel"):
                    batch_id = path.removeprefix(BATCHES).removesuffix("/cancel")
                    return self._send(*fake._batch_cancel(batch_id))
                if path != "/v1/messages":
                    return self._send(404, {}, {"type": "error", "error": {}})
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.latency:
                        time.sleep(fake.latency)
                    reply = fake._next(json.loads(raw or b"{}"))
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                self._send(*reply)

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorised():
                    return
                path = self.path.split("?")[0]
                if path.startswith(BATCHES) and path.endswith("/results"):
                    batch_id = path.removeprefix(BATCHES).removesuffix("/results")
                    lines = fake._batch_results(batch_id)
                    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/binary")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if path.startswith(BATCHES):
                    self._send(*fake._batch_get(path.removeprefix(BATCHES)))
                    return
                self._send(404, {}, {"type": "error", "error": {}})

            def _authorised(self) -> bool:
                auth = self.headers.get("Authorization", "")
                key = self.headers.get("x-api-key") or auth.removeprefix("Bearer ")
                if key != API_KEY:
                    self._send(*error(401, "invalid x-api-key")({}))
                    return False
                return True

            def _send(self, status: int, headers: dict, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler


def main() -> None:
    """Serve the fake for a demo or a manual check; point ANTHROPIC_BASE_URL at
    it and use ANTHROPIC_API_KEY=sk-ant-test-key:
    `python -m imagineer_project.testing.fake_anthropic [--port N] [--latency S]`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.3)
    args = parser.parse_args()
    fake = FakeAnthropic(
        latency=args.latency, default=colour_reply, keep_requests=False, port=args.port
    )
    with fake:
        print(f"Fake Anthropic API at {fake.base_url}, key {API_KEY}", flush=True)  # noqa: T201
        threading.Event().wait()


if __name__ == "__main__":
    main()
