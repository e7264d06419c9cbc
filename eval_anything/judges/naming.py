"""Naming judges: `--judge [KEY=][BACKEND:]REF|FILE.yaml` and `--judge-args [KEY:]K=V,...` read into
one entry per key (the default judge, a modality, or a task), with errors that name the mistake."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from eval_anything.errors import UsageError
from eval_anything.registry import did_you_mean

JUDGE_KEYS = ("default", "image", "audio", "video")
"""The judge keys besides task names: the default judge and the judges of queries with media."""
_KEYED_JUDGE = re.compile(r"^([A-Za-z0-9_.-]+)=(.*)$")  # --judge KEY=[BACKEND:]REF
_KEYED_JUDGE_ARGS = re.compile(r"^([A-Za-z0-9_.-]+):(.*)$")  # --judge-args KEY:K=V,... (no '=' before the ':')
_JUDGE_FILE_FIELDS = ("args", "model")


def judge_entries(judges: Sequence[str], judge_args: Sequence[str]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """--judge and --judge-args as KEY -> ([BACKEND:]REF or None (the embedded judge), backend arguments)."""
    from eval_anything.models import parse_model_args

    entries: dict[str, tuple[str | None, dict[str, Any]]] = {}

    def add(key: str, model: str | None, extra: dict[str, Any], where: str) -> None:
        if key in entries:
            raise UsageError(f"{where}: a second judge for {key!r}; name one judge per key")
        entries[key] = (model, dict(extra))

    for item in judges:
        if item.endswith((".yaml", ".yml")) and not Path(item).is_dir():
            for key, (model, extra) in _judge_file(Path(item)).items():
                add(key, model, extra, f"--judge {item}")
            continue
        keyed = _KEYED_JUDGE.match(item)
        key, model = (keyed.group(1), keyed.group(2)) if keyed else ("default", item)
        if not model:
            raise UsageError(f"--judge {item}: no judge after '='; give {key}=[BACKEND:]REF")
        add(key, model, {}, f"--judge {item}")
    for item in judge_args:
        keyed = _KEYED_JUDGE_ARGS.match(item)
        key, text = (keyed.group(1), keyed.group(2)) if keyed else ("default", item)
        if key not in entries:
            if key != "default":
                raise UsageError(f"--judge-args {item}: no judge is named for {key!r}; "
                                 f"give --judge {key}=[BACKEND:]REF")
            entries[key] = (None, {})
        entries[key][1].update(parse_model_args(text))
    return entries


def _judge_file(path: Path) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """A judge file: {KEY: [BACKEND:]REF or {model: [BACKEND:]REF, args: {K: V} or "K=V,..."}}."""
    import yaml

    from eval_anything.models import parse_model_args

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{path}: a judge file maps keys ({', '.join(JUDGE_KEYS)} or a task name) to judges")
    entries: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for key, entry in data.items():
        key = str(key)
        if isinstance(entry, str):
            entries[key] = (entry, {})
            continue
        if not isinstance(entry, dict):
            raise UsageError(f"{path}: {key}: give a judge as [BACKEND:]REF or {{model: [BACKEND:]REF, args: {{...}}}}")
        for field_name in entry:
            if field_name not in _JUDGE_FILE_FIELDS:
                hint = did_you_mean(str(field_name), _JUDGE_FILE_FIELDS)
                raise UsageError(f"{path}: {key}: unknown field {field_name!r}{hint} "
                                 f"(known: {', '.join(_JUDGE_FILE_FIELDS)})")
        model, extra = entry.get("model"), entry.get("args") or {}
        if (model is not None and not isinstance(model, str)) or (model is None and key != "default"):
            raise UsageError(f"{path}: {key}: model must be [BACKEND:]REF")
        if isinstance(extra, str):
            extra = parse_model_args(extra)
        if not isinstance(extra, dict):
            raise UsageError(f"{path}: {key}: args must map names to values (or be K=V,...)")
        entries[key] = (model, {str(k): v for k, v in extra.items()})
    return entries


def check_judge_keys(keys: Sequence[str], task_names: Sequence[str], include_path: Sequence[Path]) -> None:
    """Every judge key names the default, a modality or a task (of this run, or one the catalog
    knows: a shared judge file may name tasks this run leaves out)."""
    names = set(task_names)
    unknown = [k for k in keys if k not in JUDGE_KEYS and k not in names]
    if not unknown:
        return
    from eval_anything.tasks import Catalog

    known = set(Catalog(include_path).tasks)
    for key in unknown:
        if key not in known:
            hint = did_you_mean(key, [*JUDGE_KEYS, *sorted(names | known)])
            raise UsageError(f"--judge: unknown judge key {key!r}{hint} (keys: {', '.join(JUDGE_KEYS)} or a task name)")
