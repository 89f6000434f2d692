"""What the old system's `.json` sidecars say about an image: when it was made,
and the recipe it was generated with (the shape of a generation's recipe, so
its page and the API show it like any other).

A sidecar holds `prompt, negative_prompt, model, width, height, steps,
guidance_scale, seed, timestamp | created_at`, and `lora {path, weight}` or
`loras [{path, name, weight}]`. Sidecars were written by hand-run scripts over
the years: every value is checked, none is trusted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

MAX_SIDECAR_BYTES = 1024 * 1024
# YYYYMMDD_HHMMSS or YYYYMMDD-HHMMSS, not inside a longer run of digits.
DATE_IN_NAME = re.compile(
    r"(?<!\d)(\d{4})(\d{2})(\d{2})[_-](\d{2})(\d{2})(\d{2})(?!\d)"
)


@dataclass(frozen=True)
class Sidecar:
    status: str  # ImportItem.Sidecar: ok, missing, malformed
    data: dict[str, Any] | None = None
    reason: str = ""


def read_sidecar(path: Path | None) -> Sidecar:
    if path is None:
        return Sidecar("missing", reason="no sidecar .json beside it")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_SIDECAR_BYTES + 1)
        if len(raw) > MAX_SIDECAR_BYTES:
            return Sidecar("malformed", reason="sidecar larger than 1 MiB")
        data = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Sidecar(
            "malformed", reason=f"sidecar is not JSON ({type(exc).__name__})"
        )
    if not isinstance(data, dict):
        return Sidecar("malformed", reason="sidecar is not a JSON object")
    return Sidecar("ok", data)


def _as_time(value: Any) -> datetime | None:
    """A sidecar time: ISO 8601 text, epoch seconds, or YYYYMMDD_HHMMSS."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if match := DATE_IN_NAME.fullmatch(text):
            return _from_match(match)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _from_match(match: re.Match[str]) -> datetime | None:
    try:
        return datetime(*(int(g) for g in match.groups()), tzinfo=UTC)
    except ValueError:  # 20241399_999999 looks like a date and is not
        return None


def made_at(
    data: dict[str, Any] | None, name: str, mtime: float
) -> tuple[datetime, str]:
    """When the image was made and what says so: the sidecar's `created_at` or
    `timestamp`, else a YYYYMMDD_HHMMSS in the file name, else the file's
    modification time."""
    for key in ("created_at", "timestamp"):
        if data and (moment := _as_time(data.get(key))) is not None:
            return moment, "sidecar"
    if (match := DATE_IN_NAME.search(name)) and (moment := _from_match(match)):
        return moment, "name"
    return datetime.fromtimestamp(mtime, UTC), "mtime"


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any, limit: int = 2000) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def sidecar_loras(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The sidecar's LoRAs as [{"name", "file", "weight"}]: `lora` (one) or
    `loras` (several). The file is named by its last path part only; the
    whole path stays in the sidecar (staff only)."""
    entries = data.get("loras")
    if not isinstance(entries, list):
        entries = [data.get("lora")] if isinstance(data.get("lora"), dict) else []
    loras = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        path = _text(entry.get("path"), 1000)
        file = PurePath(path.replace("\\", "/")).name if path else ""
        name = _text(entry.get("name"), 200) or PurePath(file).stem
        weight = _number(entry.get("weight"), float)
        if name:
            loras.append(
                {
                    "name": name,
                    "file": file,
                    "weight": 1.0 if weight is None else weight,
                }
            )
    return loras


def sidecar_recipe(
    data: dict[str, Any], lora_sha256: Callable[[str, str], str]
) -> dict[str, Any]:
    """The recipe of a generated image, from its sidecar. `lora_sha256(name,
    file)` is the sha256 of the registered LoRA that file is, or ""."""
    loras = [
        {**lora, "sha256": lora_sha256(lora["name"], lora["file"])}
        for lora in sidecar_loras(data)
    ]
    recipe = {
        "prompt": _text(data.get("prompt")),
        "negative_prompt": _text(data.get("negative_prompt")),
        "base_model": _text(data.get("model"), 500),
        "loras": loras,
        "seed": _number(data.get("seed"), int),
        "steps": _number(data.get("steps"), int),
        "guidance": _number(data.get("guidance_scale"), float),
        "scheduler": _text(data.get("scheduler"), 40) or None,
        "width": _number(data.get("width"), int),
        "height": _number(data.get("height"), int),
        "source": "legacy sidecar",
    }
    # A value the sidecar lacks is left out, not recorded as null.
    return {key: value for key, value in recipe.items() if value is not None}
