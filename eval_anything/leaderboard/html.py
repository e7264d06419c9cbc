"""One self-contained HTML board: styles, script and data inline, no external requests.

Samples are stored per (run, task) as gzip-compressed, base64 JSON pages in inert
``<script type="application/octet-stream">`` blocks after the page's script; the browser
decodes a (run, task) only when its drill-down opens, so the overview paints before the sample
data is even parsed. Media referenced by samples are embedded once each as base64 blocks, up to
a per-file and a total cap; beyond them the board names the file instead.
"""
from __future__ import annotations

import base64
import datetime as _dt
import gzip
import json
import re
import secrets
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from eval_anything import __version__
from eval_anything.datamodel import Status
from eval_anything.leaderboard import lineage, table
from eval_anything.leaderboard.runs import Run

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
        ".webp": "image/webp", ".bmp": "image/bmp", ".wav": "audio/wav", ".mp3": "audio/mpeg",
        ".flac": "audio/flac", ".ogg": "audio/ogg", ".m4a": "audio/mp4", ".mp4": "video/mp4",
        ".webm": "video/webm", ".mov": "video/quicktime"}
"""Media embedded by file suffix; the mime type must match the part's modality (no SVG: it can script)."""


@dataclass(frozen=True)
class BoardOptions:
    title: str = "eval-anything leaderboard"
    page_size: int = 500
    """Samples per compressed page block."""
    max_samples_per_task: int | None = None
    """Keep only the first N samples logged for each (run, task) in the drill-down (None: all)."""
    text_cap: int = 4000
    """Longer prompts, outputs and explanations are cut to this many characters."""
    media_file_cap: int = 512 * 1024
    """Media files larger than this (bytes) are named, not embedded."""
    media_total_cap: int = 32 * 1024 * 1024
    """Once this many media bytes are embedded, further files are named, not embedded."""


def _safe_json(data: Any) -> str:
    """JSON that cannot end its <script> block or open a comment, whatever strings it holds."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _cut(text: Any, cap: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= cap else text[:cap] + f"… [{len(text) - cap} more characters not shown]"


@dataclass
class _Media:
    options: BoardOptions
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: list[tuple[str, str]] = field(default_factory=list)
    by_path: dict[str, str] = field(default_factory=dict)
    embedded_bytes: int = 0
    skipped: int = 0

    def ref(self, run: Run, part: dict[str, Any]) -> dict[str, Any]:
        modality, reference = part.get("modality"), part.get("path")
        out = {"modality": modality, "path": reference}
        if not reference:
            out["key"] = "none"
            self.entries.setdefault("none", {"skipped": "given inline to the model; bytes not logged"})
            return out
        resolved = run.resolve_media(str(reference))
        cache_key = str(resolved or reference)
        if cache_key in self.by_path:
            out["key"] = self.by_path[cache_key]
            return out
        key = f"m{len(self.by_path)}"
        self.by_path[cache_key] = out["key"] = key
        self.entries[key] = self._embed(resolved, modality)
        return out

    def _embed(self, path: Path | None, modality: str | None) -> dict[str, Any]:
        if path is None:
            return {"skipped": "file not found"}
        mime = MIME.get(path.suffix.lower())
        if mime is None or not mime.startswith(f"{modality}/"):
            return {"skipped": f"{path.suffix or 'no suffix'} files are not embedded"}
        size = path.stat().st_size
        if size > self.options.media_file_cap:
            self.skipped += 1
            return {"skipped": f"{size // 1024} KiB, over the {self.options.media_file_cap // 1024} KiB inline cap"}
        if self.embedded_bytes + size > self.options.media_total_cap:
            self.skipped += 1
            return {"skipped": f"the board's {self.options.media_total_cap // 2**20} MiB media budget is used up"}
        self.embedded_bytes += size
        blob_id = f"media-{len(self.blobs)}"
        self.blobs.append((blob_id, base64.b64encode(path.read_bytes()).decode("ascii")))
        return {"mime": mime, "blob": blob_id, "bytes": size}


def _compact(record: dict[str, Any], run: Run, media: _Media, cap: int) -> dict[str, Any]:
    requests = record.get("requests") or []
    first_inputs = requests[0].get("input", []) if requests else []
    outputs = record.get("outputs") or []
    return {
        "id": str(record.get("id")),
        "media": [media.ref(run, p) for p in first_inputs if p.get("modality") != "text"],
        "variants": [{"prompt": _cut(r.get("prompt"), cap), "choices": [str(c) for c in r.get("choices") or []]}
                     for r in requests],
        "target": [_cut(t, cap) for t in (record.get("target") or [])],
        "outputs": [{"variant": (requests[i].get("variant", i) if i < len(requests) else i),
                     "text": _cut(o.get("text"), cap), "error": o.get("error") and _cut(o["error"], cap),
                     "media": [media.ref(run, p) for p in o.get("parts") or [] if p.get("modality") != "text"]}
                    for i, o in enumerate(outputs)],
        "scores": {name: {"value": s.get("value"), "answer": None if s.get("answer") is None else _cut(s["answer"], cap),
                          "explanation": s.get("explanation") and _cut(s["explanation"], cap),
                          "error": s.get("error") and _cut(s["error"], cap),
                          "extraction_failed": bool(s.get("extraction_failed")),
                          "not_applicable": s.get("not_applicable") and _cut(s["not_applicable"], cap),
                          **_judge_details(s.get("details"), cap)}
                   for name, s in (record.get("scores") or {}).items()},
    }


AUDIT_MEDIA_CAP = 32
"""Media listed per judge query in the audit; beyond it, a count."""


def _audit_media(media: Any) -> list[dict[str, Any]]:
    """The media a judge saw, by modality and content hash (a path and size where no hash was taken)."""
    items = media if isinstance(media, list) else []
    out: list[dict[str, Any]] = []
    for item in items[:AUDIT_MEDIA_CAP]:
        if isinstance(item, dict):
            out.append({k: (_cut(item[k], 300) if k != "size" else item[k]) for k in ("modality", "sha256", "path", "size")
                        if item.get(k) is not None and (k != "size" or isinstance(item[k], int))})
    if len(items) > AUDIT_MEDIA_CAP:
        out.append({"more": len(items) - AUDIT_MEDIA_CAP})
    return out


def _audit(asked: Any, cap: int) -> dict[str, Any] | None:
    """What the judge was asked, as logged: the system and user text as sent (cut at the text cap),
    its media by hash, the sampling. Only these named fields are copied, nothing else a log holds."""
    if not isinstance(asked, dict):
        return None
    out: dict[str, Any] = {"user": _cut(asked.get("user"), cap), "media": _audit_media(asked.get("media"))}
    if asked.get("local"):
        return {"local": True, **out}
    out["system"] = None if asked.get("system") is None else _cut(asked["system"], cap)
    out["temperature"] = table._number(asked.get("temperature"))
    tokens = asked.get("max_new_tokens")
    out["max_new_tokens"] = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
    seeds = asked.get("seeds") if isinstance(asked.get("seeds"), list) else []
    out["seeds"] = [s for s in seeds if isinstance(s, int) and not isinstance(s, bool)][:16]
    return out


def _judge_details(details: Any, cap: int) -> dict[str, Any]:
    """A judge's replies and verdicts, what it was asked (the audit), and the human label when known,
    from a score's details."""
    if not isinstance(details, dict):
        return {}
    out: dict[str, Any] = {}
    verdicts = details.get("judge")
    if isinstance(verdicts, list):
        out["judge"] = []
        for v in verdicts:
            if not isinstance(v, dict):
                continue
            entry = {"label": str(v.get("label", "")), "verdict": v.get("verdict"),
                     "error": v.get("error") and _cut(v["error"], cap),
                     "raw": [_cut(r, cap) for r in (v.get("raw") or [])][-2:]}
            for key in ("calls", "cached"):
                if isinstance(v.get(key), int) and not isinstance(v.get(key), bool):
                    entry[key] = v[key]
            if isinstance(v.get("media_dropped"), list) and v["media_dropped"]:
                entry["media_dropped"] = [_cut(m, 40) for m in v["media_dropped"][:8]]
            audit = _audit(v.get("asked"), cap)
            if audit is not None:
                entry["asked"] = audit
            out["judge"].append(entry)
    if "human" in details:
        out["human"] = _cut(details["human"], 200)
    rest = {k: v for k, v in details.items() if k not in ("judge", "human")}
    if rest:  # e.g. an S_AMG sample's chosen outputs, S_i, S_ij, alpha and terms
        out["details"] = _cut(json.dumps(rest, ensure_ascii=False, sort_keys=True, default=str), 1000)
    return out


def _natural(text: str) -> tuple:
    """Sort key that orders item-2 before item-10."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text))


def _pack(records: list[dict[str, Any]]) -> str:
    raw = json.dumps(records, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def _charts(runs: list[Run], columns: list[table.Column], cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grouped bars: models by task, models by each breakdown, modality selection against humans."""
    charts = _suite_charts(runs, columns, cells)
    primary = [c for c in columns if c.part is None and c.group != table.SUITE]
    first_per_task = {}
    for c in primary:
        first_per_task.setdefault(c.task, c)
    if len(runs) > 0 and first_per_task:
        charts.append({"kind": "tasks", "title": "Models by task (first metric of each task)",
                       "groups": list(first_per_task),
                       "series": [{"label": r.label, "values": [cells[i][c.key].get("value") for c in first_per_task.values()]}
                                  for i, r in enumerate(runs)]})
    breakdowns: dict[tuple[str, str, str], list[table.Column]] = {}
    for c in columns:
        if c.part is not None:
            breakdowns.setdefault((c.task, c.metric, c.group or ""), []).append(c)
    for (task, metric, group), cols in breakdowns.items():
        charts.append({"kind": "breakdown", "title": f"{task} / {metric}: {group} by model",
                       "groups": [c.part for c in cols],
                       "series": [{"label": r.label, "values": [cells[i][c.key].get("value") for c in cols]}
                                  for i, r in enumerate(runs)]})
    charts.extend(_selection_charts(runs))
    charts.extend(lineage.step_charts(runs, {task: c.key for task, c in first_per_task.items()}, cells))
    return charts


def _suite_charts(runs: list[Run], columns: list[table.Column], cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-dimension comparison of models for each suite score (e.g. the four AMU dimensions)."""
    charts = []
    for c in columns:
        if c.group == table.SUITE:
            names = list(dict.fromkeys(k for cell in cells for k in (cell[c.key].get("parts") or {})))
            charts.append({"kind": "suite", "title": f"{c.task.upper()}: each dimension by model ({c.metric})",
                           "groups": names,
                           "series": [{"label": r.label, "values": [(cells[i][c.key].get("parts") or {}).get(n) for n in names]}
                                      for i, r in enumerate(runs)]})
    return charts


def _selection_charts(runs: list[Run]) -> list[dict[str, Any]]:
    """Modality-selection choices against human preference, from a metric's ``chosen_vs_human``
    mapping ``{combination: {"chosen": share of the model's choices, "human": mean human vote share}}``
    (or ``selection``, with ``model`` for ``chosen``)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for index, run in enumerate(runs):
        for task, entry in run.tasks.items():
            for metric, values in (entry.get("metrics") or {}).items():
                selection = (values or {}).get("chosen_vs_human") or (values or {}).get("selection")
                if isinstance(selection, dict) and selection:
                    found.setdefault((task, metric), {})[index] = {
                        combo: {"model": v.get("chosen", v.get("model")), "human": v.get("human")}
                        for combo, v in selection.items() if isinstance(v, dict)}
    charts = []
    for (task, metric), per_run in found.items():
        combos = list(dict.fromkeys(k for sel in per_run.values() for k in sel))
        human = next(iter(per_run.values()))

        def share(sel: dict[str, Any], combo: str, who: str) -> float | None:
            entry = sel.get(combo)
            value = entry.get(who) if isinstance(entry, dict) else None
            return table._number(value)

        series = [{"label": "human votes", "color": "#8a8f98", "values": [share(human, c, "human") for c in combos]}]
        series += [{"label": runs[i].label, "values": [share(sel, c, "model") for c in combos]} for i, sel in per_run.items()]
        charts.append({"kind": "selection", "title": f"{task} / {metric}: modality chosen vs. human preference",
                       "groups": combos, "series": series, "max": 1.0})
    return charts


def _settings_text(manifest: dict[str, Any]) -> str:
    settings = manifest.get("settings") or {}
    return ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)


def _sample_pages(index: int, run: Run, options: BoardOptions, media: _Media,
                  blobs: list[tuple[str, str]], pages: dict[str, Any]) -> list[str]:
    """Pack each task's samples of one run into compressed page blocks; returns the tasks that have any."""
    with_samples = []
    for task, entry in run.tasks.items():
        if entry.get("status") == Status.NOT_APPLICABLE:
            continue
        records, total = [], 0
        for record in run.iter_samples(task):
            total += 1
            if options.max_samples_per_task is None or len(records) < options.max_samples_per_task:
                records.append(_compact(record, run, media, options.text_cap))
        if not total:
            continue
        records.sort(key=lambda r: _natural(r["id"]))  # logs are in completion order
        with_samples.append(task)
        ids = []
        for start in range(0, len(records), options.page_size):
            ids.append(f"s{index}-{len(with_samples) - 1}-{start // options.page_size}")
            blobs.append((ids[-1], _pack(records[start:start + options.page_size])))
        pages[f"{index}|{task}"] = {"blobs": ids, "count": len(records), "total": total,
                                    "truncated": len(records) < total, "protocol": run.protocol(task)}
    return with_samples


def _run_summary(index: int, run: Run, cells: dict[str, Any], tasks: list[str]) -> dict[str, Any]:
    model = run.model
    return {
        "index": index, "label": run.label, "run_id": run.run_id, "status": run.results.get("status"),
        "created_at": run.manifest.get("created_at"), "lineage": run.lineage,
        "model_spec": f"{model.get('backend', '?')}:{model.get('reference', '?')}",
        "settings": _settings_text(run.manifest), "git_revision": run.manifest.get("git_revision"),
        "tasks": tasks, "judges": sorted({c["judge"] for c in cells.values() if c.get("judge")}),
        "judge_accounting": table.judge_summary(table.run_judge(run)),
        "samples": sum((e.get("counts") or {}).get("samples", 0) for e in run.tasks.values()),
        "errored": sum((e.get("counts") or {}).get("errored", 0) for e in run.tasks.values()),
    }


def build_board(runs: list[Run], options: BoardOptions = BoardOptions()) -> tuple[dict[str, Any], list[tuple[str, str]], str]:
    """The board's inline data, its blocks (sample pages and media) and a note on what was capped."""
    columns = table.columns(runs)
    cells = [{c.key: table.cell(run, c) for c in columns} for run in runs]
    media = _Media(options)
    blobs: list[tuple[str, str]] = []
    pages: dict[str, Any] = {}
    board_runs = [_run_summary(i, run, cells[i], _sample_pages(i, run, options, media, blobs, pages))
                  for i, run in enumerate(runs)]
    note = (f"Media are embedded inline up to {options.media_file_cap // 1024} KiB a file and "
            f"{options.media_total_cap // 2**20} MiB in all ({media.embedded_bytes // 1024} KiB embedded"
            + (f", {media.skipped} files only named" if media.skipped else "") + f"); texts are cut at {options.text_cap} characters.")
    if options.max_samples_per_task is not None:
        note += f" At most {options.max_samples_per_task} samples per run and task are kept."
    conflicts = table.protocol_conflicts(runs)
    board = {
        "runs": board_runs,
        "columns": [{"key": c.key, "task": c.task, "metric": c.metric, "part": c.part, "group": c.group,
                     "protocols": sorted({p for p in table.protocols(runs, c) if p}),
                     "protocol_conflict": c.task in conflicts} for c in columns],
        "cells": cells, "charts": _charts(runs, columns, cells), "pages": pages, "media": media.entries,
        "compare": lineage.compare_tables(runs),
    }
    whole = [c.key for c in columns if c.part is None]
    for trained, base in lineage.base_runs(runs).items():
        board_runs[trained]["vs_base"] = {"base": runs[base].label, "base_index": base,
                                          "deltas": lineage.deltas(runs[trained], runs[base], cells[trained], cells[base], whole)}
    return board, blobs + media.blobs, note


def render_html(runs: list[Run], options: BoardOptions = BoardOptions()) -> str:
    import jinja2

    board, blobs, note = build_board(runs, options)
    templates = resources.files("eval_anything.leaderboard") / "templates"
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string((templates / "board.html.j2").read_text(encoding="utf-8"))
    return template.render(
        title=options.title, runs=runs, tasks=sorted({t for r in runs for t in r.tasks}),
        total_samples=sum(p["count"] for p in board["pages"].values()), version=__version__,
        generated_at=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), media_note=note,
        nonce=secrets.token_urlsafe(16), css=(templates / "board.css").read_text(encoding="utf-8"),
        js=(templates / "board.js").read_text(encoding="utf-8"), board_json=_safe_json(board), blobs=blobs)
