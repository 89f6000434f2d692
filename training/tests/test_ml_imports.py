"""The ML libraries stay out of the web process, and training.ml stays out of Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ML_MODULES = [
    f"training.ml.{p.stem}"
    for p in sorted((ROOT / "training" / "ml").glob("*.py"))
    if p.stem != "__init__"
]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_importing_the_url_conf_does_not_import_torch() -> None:
    done = run_python(
        "import django, os, sys\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE',"
        " 'imagineer_project.settings')\n"
        "django.setup()\n"
        "import imagineer_project.urls\n"
        "heavy = {'torch', 'diffusers', 'peft', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, sorted(heavy)\n"
    )
    assert done.returncode == 0, done.stderr


def test_the_ml_package_imports_neither_django_nor_torch_at_import_time() -> None:
    assert "training.ml.trainer" in ML_MODULES
    done = run_python(
        "import importlib, sys\n"
        f"for name in {ML_MODULES!r}: importlib.import_module(name)\n"
        "loaded = {'django', 'torch', 'diffusers', 'peft'} & set(sys.modules)\n"
        "assert not loaded, sorted(loaded)\n"
    )
    assert done.returncode == 0, done.stderr
