"""What makes a run reproducible from its directory: model, tasks, settings, software."""
from __future__ import annotations

import datetime as _dt
import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from eval_anything.models import known_traits
from eval_anything.models.base import ModelSpec
from eval_anything.redaction import redact_command

if TYPE_CHECKING:
    from eval_anything.settings import RunSettings
    from eval_anything.tasks import Task

PACKAGES = ("eval-anything", "torch", "transformers", "accelerate", "datasets", "aiohttp", "numpy",
            "pillow", "soundfile", "av", "jinja2", "pydantic")
@functools.lru_cache(maxsize=1)  # once per process: installed software does not change under a run
def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    source = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


LINEAGE_FILE = "eval_anything_lineage.json"
"""Written by eval_anything.align into every checkpoint it trains: base model, method, data, config hash."""


def read_lineage(spec: ModelSpec) -> dict[str, Any] | None:
    """The lineage a trained checkpoint carries (the file align writes, in the model's folder, local or
    a Hub snapshot) and the PEFT adapter loaded on it, for a backend with local weights; None otherwise."""
    traits = known_traits(spec.backend)
    if traits is None or not traits.lineage:
        return None
    folder = spec.weights.path if spec.weights is not None else Path(spec.reference)
    lineage = _lineage_file(folder)
    if spec.adapter is not None:
        from eval_anything.models.loading import adapter_lineage

        try:
            lineage = {**(lineage or {}), **adapter_lineage(spec.adapter, str(spec.args.get("peft")))}
        except (OSError, ValueError):
            pass  # the backend reports an unreadable adapter when it loads it
    return lineage


def _lineage_file(folder: Path) -> dict[str, Any] | None:
    import json

    path = folder / LINEAGE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def build_manifest(spec: ModelSpec, tasks: Sequence["Task"], settings: "RunSettings", run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": redact_command(settings.command),
        "model": spec.describe(),
        "tasks": [task.describe() for task in tasks],
        "settings": settings.identity(),
        "packages": dict(package_versions()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_revision": git_revision(),
        "lineage": read_lineage(spec),
    }
