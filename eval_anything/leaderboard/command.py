"""`eval-anything leaderboard RUN_DIR... -o board.html`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLES = """examples:
  eval-anything leaderboard runs/* -o board.html              # one self-contained HTML file
  eval-anything leaderboard runs/a runs/b --format markdown   # the overview table, to stdout
  eval-anything leaderboard runs/* --format csv -o board.csv  # one row per run, task and metric"""


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard", help="render run directories as an HTML leaderboard or a table",
        description="Compare runs: a self-contained HTML board (overview, charts, lineage, sample drill-down) "
                    "or the overview table as markdown, CSV or JSON.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories, in row order")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="where to write (default: board.html for html, stdout for tables)")
    parser.add_argument("--format", choices=("html", "markdown", "csv", "json"), default="html")
    parser.add_argument("--title", default="eval-anything leaderboard")
    parser.add_argument("--max-samples-per-task", type=int, metavar="N",
                        help="keep only the first N samples of each run and task in the drill-down (default: all)")
    parser.add_argument("--max-inline-media-kb", type=int, default=512, metavar="KB",
                        help="embed media files up to this size; larger ones are named (default: 512)")
    parser.add_argument("--media-budget-mb", type=int, default=32, metavar="MB",
                        help="stop embedding media once this much is embedded (default: 32)")
    parser.set_defaults(handler=run_leaderboard)


def run_leaderboard(args: argparse.Namespace) -> int:
    from eval_anything.leaderboard import FORMATS, RunDirError, load_runs

    try:
        runs = load_runs(args.run_dirs)
    except RunDirError as exc:
        print(f"eval-anything leaderboard: error: {exc}", file=sys.stderr)
        return 2
    if args.format == "html":
        from eval_anything.leaderboard.html import BoardOptions, render_html

        options = BoardOptions(title=args.title, max_samples_per_task=args.max_samples_per_task,
                               media_file_cap=args.max_inline_media_kb * 1024,
                               media_total_cap=args.media_budget_mb * 2**20)
        output = args.output or Path("board.html")
        output.write_text(render_html(runs, options), encoding="utf-8")
        print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB, {len(runs)} runs)")
        return 0
    text = FORMATS[args.format](runs)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
