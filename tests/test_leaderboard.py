"""Leaderboard tables and the HTML file itself, built from genuine replay runs (no browser here)."""
import csv
import io
import json
import re
import subprocess
import sys

import pytest

from eval_anything.cli import main
from eval_anything.leaderboard import columns, load_runs, to_csv, to_json, to_markdown
from eval_anything.leaderboard.html import BoardOptions, build_board, render_html
from run_factory import PAYLOADS, board_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return board_runs(tmp_path_factory.mktemp("board-runs"))


@pytest.fixture(scope="module")
def loaded(runs):
    return load_runs([runs["good"], runs["evil"]])


@pytest.fixture(scope="module")
def html(loaded):
    return render_html(loaded)


def test_markdown_overview_has_values_errors_and_breakdowns(loaded):
    text = to_markdown(loaded)
    header, _, good, evil = text.splitlines()[:4]
    assert "arith_mini / numeric" in header and "shapes_color / multiple_choice / safety" in header
    assert "arith_mini / numeric / S_TI" in header  # S_AMG-style components are columns too
    assert good.startswith("| replay:good-model.jsonl | 6.250 ± 0.480 | 0.950 ± 0.035 | 0.800 |")  # AMU leads
    assert "| n/a |" in evil  # tones_count is not applicable to the hostile run
    assert "not_applicable: model does not take audio input" in text
    assert "judge openai:gpt-4o (calls 12, errors 1, parse retries 2)" in text
    assert "<img" not in text and "&lt;img src=x onerror" in text  # model text stays literal


def test_csv_is_one_row_per_run_task_metric_and_part(loaded):
    rows = list(csv.DictReader(io.StringIO(to_csv(loaded))))
    arith = next(r for r in rows if r["model"] == "replay:good-model.jsonl" and r["task"] == "arith_mini" and not r["part"])
    assert float(arith["value"]) == pytest.approx(0.95) and arith["n"] == "40" and arith["status"] == "complete"
    na = next(r for r in rows if r["model"] == "replay:evil-model.jsonl" and r["task"] == "tones_count")
    assert na["status"] == "not_applicable" and na["reason"].startswith("model does not take audio input")
    parts = {r["part"] for r in rows if r["task"] == "shapes_color" and r["model"] == "replay:good-model.jsonl"}
    assert {"perception", "reasoning", "instruction-following", "safety"} <= parts


def test_json_carries_runs_and_lineage(loaded):
    data = json.loads(to_json(loaded))
    assert data["runs"][0]["lineage"]["method"] == "llf-dpo"
    assert {r["task"] for r in data["rows"]} == {"amu", "arith_mini", "shapes_color", "tones_count", "motion_direction"}


def test_html_is_self_contained(html):
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and "script-src 'nonce-" in csp and "unsafe-inline" not in csp.split("style-src")[0]


def test_html_never_holds_model_text_as_markup(html):
    for payload in PAYLOADS:
        assert payload not in html
    # exactly one executable script: the board's own, carrying the nonce
    scripts = re.findall(r"<script\b([^>]*)>", html)
    executable = [a for a in scripts if "application/json" not in a and "application/octet-stream" not in a]
    assert len(executable) == 1 and "nonce=" in executable[0]


def test_board_data_shows_judge_lineage_breakdowns_and_charts(loaded):
    board, blobs, note = build_board(loaded)
    good, evil = board["runs"]
    assert good["lineage"]["base_model"] == "SmolLM2-135M-Instruct" and good["judges"] == ["openai:gpt-4o"]
    assert "calls 52" in good["judge_accounting"]
    cell = board["cells"][0]["shapes_color/multiple_choice"]
    assert cell["judge"] == "openai:gpt-4o" and "errors 1" in cell["judge_accounting"]
    assert board["cells"][1]["tones_count/numeric"]["status"] == "not_applicable"
    kinds = [c["kind"] for c in board["charts"]]
    assert kinds.count("breakdown") == 3 and "selection" in kinds and "tasks" in kinds
    selection = next(c for c in board["charts"] if c["kind"] == "selection")
    assert selection["series"][0]["label"] == "human votes" and selection["groups"][-3:] == ["T", "T+I", "T+I+A"]
    assert selection["series"][2]["values"][-3:] == [0.5, pytest.approx(0.27), 0.2]  # the evil run's "selection"
    assert "tones_count" not in evil["tasks"] and "tones_count" in good["tasks"]  # n/a tasks have no samples
    mimes = {m.get("mime") for m in board["media"].values()}
    assert {"image/png", "audio/wav", "video/mp4"} <= mimes
    assert "embedded" in note


def test_media_over_the_cap_are_named_not_embedded(loaded):
    board, blobs, note = build_board(loaded, BoardOptions(media_file_cap=10 * 1024))
    skipped = [m for m in board["media"].values() if "skipped" in m]
    assert skipped and all("over the 10 KiB inline cap" in m["skipped"] for m in skipped)
    assert "files only named" in note


def test_samples_are_paged_and_capped(loaded):
    board, blobs, _ = build_board(loaded, BoardOptions(page_size=16, max_samples_per_task=20))
    page = board["pages"]["0|arith_mini"]
    assert len(page["blobs"]) == 2 and page == {**page, "count": 20, "total": 40, "truncated": True}


def test_cli_writes_board_and_tables(runs, tmp_path, capsys):
    out = tmp_path / "board.html"
    assert main(["leaderboard", str(runs["good"]), str(runs["evil"]), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    capsys.readouterr()
    assert main(["leaderboard", str(runs["good"]), "--format", "markdown"]) == 0
    assert "| replay:good-model.jsonl |" in capsys.readouterr().out
    assert main(["leaderboard", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_leaderboard_does_not_import_torch(runs, tmp_path):
    code = ("import sys, contextlib, io\n"
            "from eval_anything.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['leaderboard', {str(runs['good'])!r}, '-o', {str(tmp_path / 'b.html')!r}]) == 0\n"
            f"    assert main(['leaderboard', {str(runs['good'])!r}, '--format', 'csv']) == 0\n"
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_genuinely_judged_run_shows_its_judge_accounting_and_replies(tmp_path, monkeypatch):
    """The real runner with a judge_rating task, judged through an OpenAI-compatible stub server."""
    from eval_anything.models import ModelSpec, resolve_spec
    from eval_anything.runner import evaluate
    from eval_anything.settings import JudgeSettings, RunSettings
    from eval_anything.tasks import Catalog
    from run_factory import write_task
    from stub_openai import StubServer, completion, user_text

    monkeypatch.setenv("EVAL_ANYTHING_TEST_BOARD_JUDGE_KEY", "sk-board-test-not-real")
    items = [{"id": f"q{i}", "question": f"Say {i}", "answer": str(i)} for i in range(4)]
    folder = write_task(tmp_path / "tasks", "judged", items, scorer="judge_rating")
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": f"q{i}", "text": f"{i}" + (PAYLOADS[1] if i == 3 else "")}) + "\n"
                                   for i in range(4)))

    def reply(call, body, auth):
        rating = 9 if "Say 0" in user_text(body) else 4
        return 200, {}, completion(f"Explanation: looks {'right' if rating == 9 else 'off'}.\nRating: [[{rating}]]", 30, 5), 0.0

    with StubServer(reply) as server:
        spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url, "max_retries": 1,
                                                  "api_key_env": "EVAL_ANYTHING_TEST_BOARD_JUDGE_KEY"})
        report = evaluate(resolve_spec(str(predictions)), Catalog([folder]).resolve("judged"),
                          RunSettings(output_dir=tmp_path / "runs",
                                      judge=JudgeSettings(spec, cache_path=tmp_path / "cache.sqlite")))
    (run,) = load_runs([report.run_dir])
    board, blobs, _ = build_board([run])
    cell = board["cells"][0]["judged/judge_rating"]
    assert cell["judge"] == "openai:stub-judge" and "calls 4" in cell["judge_accounting"]
    assert board["runs"][0]["judges"] == ["openai:stub-judge"]
    import base64
    import gzip
    samples = json.loads(gzip.decompress(base64.b64decode(dict(blobs)[board["pages"]["0|judged"]["blobs"][0]])))
    first = samples[0]["scores"]["judge_rating"]
    assert first["explanation"].startswith("looks right") and first["judge"][0]["raw"][0].endswith("Rating: [[9]]")
    assert "judge openai:stub-judge (calls 4" in to_markdown([run])
    assert PAYLOADS[1] not in render_html([run])


def test_suite_groups_breakdowns_selection_and_s_amg_components(loaded):
    assert columns(loaded)[0].key == "group/amu"  # suite scores lead
    board, _, _ = build_board(loaded)
    cells = board["cells"][0]
    assert cells["group/amu"]["value"] == 6.25 and cells["group/amu"]["stderr"] == 0.48
    assert cells["group/amu"]["parts"]["amu_safety"] == 5.5 and board["cells"][1]["group/amu"]["status"] == "absent"
    assert cells["arith_mini/numeric/breakdown/video+sound"]["value"] == 1.0
    # S_AMG components averaged from the sample logs: a term over all samples (so terms add up to the
    # composite), S_i / S_ij / alpha over the samples that chose them
    assert cells["arith_mini/numeric/components/terms ti"] == {**cells["arith_mini/numeric/components/terms ti"],
                                                              "value": pytest.approx(0.035), "n": 40}
    assert cells["arith_mini/numeric/components/S_i t"]["value"] == pytest.approx(0.9)
    assert cells["arith_mini/numeric/components/S_i i"]["n"] == 20
    suite = next(c for c in board["charts"] if c["kind"] == "suite")
    assert suite["groups"] == ["amu_perception", "amu_reasoning", "amu_instruction_following", "amu_safety"]
    assert suite["series"][0]["values"] == [7.0, 6.0, 6.5, 5.5]
    selection = next(c for c in board["charts"] if c["kind"] == "selection")
    assert selection["series"][1]["values"][:2] == [0.5, 0.5]  # the good run's chosen_vs_human shares
    assert "| AMU (judge_rating, mean of its parts) |" in to_markdown(loaded).splitlines()[0].replace("model | ", "| ")
