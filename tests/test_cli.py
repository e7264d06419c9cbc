"""The command line as a user runs it, in subprocesses, on the embedded SmolLM2."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from eval_anything.rundir import SampleLog


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "eval_anything", *args], capture_output=True, text=True,
                          timeout=kwargs.pop("timeout", 300), **kwargs)


def only_run_dir(output_dir):
    (run_dir,) = [p for p in output_dir.iterdir() if p.is_dir()]
    return run_dir


def test_help_and_list_do_not_import_torch():
    code = ("import sys, contextlib, io\n"
            "from eval_anything.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['list'])\n"
            "    try: main(['run', '--help'])\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_command_exits_with_mains_code_and_a_frozen_heap():
    # frozen objects are skipped by the interpreter's last collections at exit (about 1 s with torch loaded)
    code = ("import gc, sys\n"
            "from eval_anything import cli\n"
            "cli.main = lambda: 3\n"
            "try: cli.entry()\n"
            "except SystemExit as exit:\n"
            "    assert exit.code == 3 and gc.get_freeze_count() > 0, (exit.code, gc.get_freeze_count())\n"
            "    print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_run_help_explains_flags_with_examples():
    out = cli("run", "--help").stdout
    for flag in ("--model", "--tasks", "--limit", "--output-dir", "--batch-size", "--seed", "examples:"):
        assert flag in out


def test_list_shows_tasks_versions_modalities_and_counts():
    out = cli("list").stdout
    assert "arith_mini" in out and "shapes_color" in out and "audio,text" in out and "40" in out


def test_unknown_task_exits_2_with_a_suggestion(tmp_path):
    result = cli("run", "--tasks", "arith_mni", "--output-dir", str(tmp_path))
    assert result.returncode == 2 and "did you mean 'arith_mini'" in result.stderr


def test_model_needing_a_backend_name_exits_2(tmp_path):
    result = cli("run", "--model", "no-such-thing", "--output-dir", str(tmp_path))
    assert result.returncode == 2 and "name one as BACKEND:REFERENCE" in result.stderr


def test_embedded_default_end_to_end(tmp_path):
    result = cli("run", "--tasks", "arith_mini,shapes_color", "--limit", "3", "--max-new-tokens", "8",
                 "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "arith_mini" in result.stdout and "not_applicable" in result.stdout
    run_dir = only_run_dir(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    arith = results["tasks"]["arith_mini"]
    assert arith["status"] == "complete" and arith["metrics"]["numeric"]["n"] == 3
    assert arith["usage"]["output_tokens"] > 0
    assert results["tasks"]["shapes_color"] == {**results["tasks"]["shapes_color"], "status": "not_applicable",
                                                "reason": "embedded:smollm2-135m-instruct does not take image input"}
    records = list(SampleLog(run_dir / "samples" / "arith_mini.jsonl"))
    assert len(records) == 3 and all(r["outputs"][0]["text"] for r in records)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["loaded"]["model_class"] == "LlamaForCausalLM"
    assert manifest["command"][:2] == ["eval-anything", "run"]


def test_sigkill_mid_run_then_rerun_resumes_exactly(tmp_path):
    args = ["run", "--tasks", "arith_mini", "--limit", "10", "--batch-size", "1", "--max-new-tokens", "8"]
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "eval_anything", *args, "--output-dir", str(killed_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    written = 0
    while time.monotonic() < deadline and process.poll() is None:
        logs = list(killed_dir.glob("*/samples/arith_mini.jsonl"))
        written = len(logs[0].read_text().splitlines()) if logs else 0
        if written >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    run_dir = only_run_dir(killed_dir)
    before = len(list(SampleLog(run_dir / "samples" / "arith_mini.jsonl")))
    assert 3 <= before < 10

    resumed = cli(*args, "--output-dir", str(killed_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert f"generated {10 - before} requests, resumed {before}" in " ".join(resumed.stdout.split())
    fresh = cli(*args, "--output-dir", str(tmp_path / "fresh"))
    assert fresh.returncode == 0, fresh.stderr

    ids = [r["id"] for r in SampleLog(run_dir / "samples" / "arith_mini.jsonl")]
    assert len(ids) == len(set(ids)) == 10
    outputs = {r["id"]: r["outputs"][0]["text"] for r in SampleLog(run_dir / "samples" / "arith_mini.jsonl")}
    fresh_dir = only_run_dir(tmp_path / "fresh")
    assert outputs == {r["id"]: r["outputs"][0]["text"] for r in SampleLog(fresh_dir / "samples" / "arith_mini.jsonl")}
    task_results = lambda d: json.loads((d / "results.json").read_text())["tasks"]["arith_mini"]
    strip_time = lambda t: {k: v for k, v in t.items() if k != "usage"}
    assert strip_time(task_results(run_dir)) == strip_time(task_results(fresh_dir))

    again = cli(*args, "--output-dir", str(killed_dir))
    assert "generated 0 requests" in " ".join(again.stdout.split())
