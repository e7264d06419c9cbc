"""`eval-anything align report DIR`: the per-step metrics of every training stage under DIR, plotted.

Reads each stage's metrics.jsonl (DIR itself, or the stage folders under an llf work_dir) and
writes DIR/report/index.html: one line chart per metric and stage, drawn as inline SVG so the page
needs nothing installed; with matplotlib installed each chart is also written as a PNG beside it.
"""
from __future__ import annotations

import html
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

from eval_anything.align.metrics import METRICS_FILE, read_metrics

REPORT_DIR = "report"
NOT_PLOTTED = {"step", "epoch", "iteration"}
NO_MATPLOTLIB = "matplotlib is not installed, so no PNGs were written (pip install matplotlib); the HTML page has the plots"


@dataclass(frozen=True)
class Series:
    stage: str
    metric: str
    steps: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Report:
    html: Path
    pngs: tuple[Path, ...]
    series: tuple[Series, ...]
    message: str | None
    """Why no PNGs were written, when they were not."""


def stage_metrics(root: Path) -> list[tuple[str, Path]]:
    """(stage name, metrics.jsonl) of every stage under root, in folder order, each named by its
    manifest's stage and its folder."""
    files = [root / METRICS_FILE] if (root / METRICS_FILE).exists() else sorted(root.glob(f"*/{METRICS_FILE}"))
    found = []
    for path in files:
        manifest = path.parent / "manifest.json"
        stage = json.loads(manifest.read_text()).get("stage") if manifest.exists() else None
        found.append((f"{stage} ({path.parent.name})" if stage else path.parent.name, path))
    return found


def collect(root: Path) -> list[Series]:
    series = []
    for stage, path in stage_metrics(root):
        rows = read_metrics(path)
        names = sorted({k for row in rows for k in row} - NOT_PLOTTED)
        for name in names:
            points = [(row["step"], row[name]) for row in rows if name in row]
            series.append(Series(stage, name, tuple(p[0] for p in points), tuple(p[1] for p in points)))
    return series


def svg_chart(s: Series, width: int = 320, height: int = 160) -> str:
    pad = 30
    xs, ys = s.steps, s.values
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    xspan, yspan = (x1 - x0) or 1.0, (y1 - y0) or 1.0

    def point(x: float, y: float) -> str:
        return f"{pad + (x - x0) / xspan * (width - 2 * pad):.1f},{height - pad - (y - y0) / yspan * (height - 2 * pad):.1f}"

    line = " ".join(point(x, y) for x, y in zip(xs, ys))
    dots = "".join(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2"/>' for p in line.split()) \
        if len(xs) <= 50 else ""
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(s.metric)}">'
            f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="none" stroke="#ccc"/>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/><g fill="#1f77b4">{dots}</g>'
            f'<text x="{pad}" y="{height - 8}" font-size="10">step {x0:g}</text>'
            f'<text x="{width - pad}" y="{height - 8}" font-size="10" text-anchor="end">{x1:g}</text>'
            f'<text x="2" y="{pad - 4}" font-size="10">{y1:.4g}</text>'
            f'<text x="2" y="{height - pad + 12}" font-size="10">{y0:.4g}</text></svg>')


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _pngs(series: list[Series], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for s in series:
        figure, axes = plt.subplots(figsize=(4, 2.5))
        axes.plot(s.steps, s.values, marker="o" if len(s.steps) <= 50 else None)
        axes.set_title(f"{s.stage}: {s.metric}", fontsize=9)
        axes.set_xlabel("step")
        figure.tight_layout()
        path = folder / f"{_slug(s.stage)}--{_slug(s.metric)}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def write_report(root: Path | str, output: Path | str | None = None) -> Report:
    """Plot every stage's metrics under root into output (default root/report/)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: give a training stage's folder or an llf work_dir")
    series = collect(root)
    if not series:
        raise FileNotFoundError(f"no {METRICS_FILE} in {root} or its stage folders: train a stage there first")
    folder = Path(output) if output else root / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    pngs = _pngs(series, folder) if has_matplotlib else []
    sections, current = [], None
    for s in series:
        if s.stage != current:
            sections.append(f"<h2>{html.escape(s.stage)}</h2>")
            current = s.stage
        last = f"last {s.values[-1]:.4g} at step {s.steps[-1]:g}"
        sections.append(f'<figure><figcaption>{html.escape(s.metric)} <small>({last})</small></figcaption>'
                        f"{svg_chart(s)}</figure>")
    page = ("<!doctype html><meta charset='utf-8'><title>Training report</title>"
            "<style>body{font-family:sans-serif;margin:1em 2em}figure{display:inline-block;margin:.5em}"
            "figcaption{font-size:.9em}</style>"
            f"<h1>Training report: {html.escape(str(root))}</h1>" + "".join(sections))
    index = folder / "index.html"
    index.write_text(page, encoding="utf-8")
    return Report(index, tuple(pngs), tuple(series), None if has_matplotlib else NO_MATPLOTLIB)
