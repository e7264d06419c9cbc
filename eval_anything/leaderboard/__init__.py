"""Leaderboards from run directories: self-contained HTML, markdown, CSV and JSON tables.

Reads run directories only; never imports torch, transformers or a backend.
"""
from eval_anything.leaderboard.runs import Run, RunDirError, load_run, load_runs
from eval_anything.leaderboard.table import FORMATS, columns, to_csv, to_json, to_markdown

__all__ = ["Run", "RunDirError", "load_run", "load_runs", "FORMATS", "columns", "to_csv", "to_json", "to_markdown",
           "render_html", "BoardOptions"]


def __getattr__(name: str):  # the HTML renderer pulls in jinja2 only when asked for
    if name in ("render_html", "BoardOptions"):
        from eval_anything.leaderboard import html

        return getattr(html, name)
    raise AttributeError(name)
