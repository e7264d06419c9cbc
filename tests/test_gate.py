"""`eval-anything gate` on genuine replay runs: pass, regression, noise, and not comparable."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from eval_anything.cli import main
from run_factory import edit_json, make_run, write_task

ARITH = [f"arith-{i:03d}" for i in range(40)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate-runs")
    return {
        "base": make_run(root, "base", wrong=ARITH[:4]),
        "same": make_run(root, "same", wrong=ARITH[:4]),
        # ten answers the baseline got right are now wrong: a drop of 0.25 on arith_mini
        "degraded": make_run(root, "degraded", wrong=ARITH[:14]),
        # three lost, two gained: a noise-level difference (-0.025)
        "noise": make_run(root, "noise", wrong=ARITH[2:7]),
    }


def gate(capsys, *args):
    code = main(["gate", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_identical_runs_pass(runs, capsys):
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", runs["same"])
    assert code == 0, out
    assert "arith_mini/numeric: pass" in out and "no drop" in out and "result: PASS (exit 0)" in out


def test_degraded_candidate_fails_with_reason(runs, capsys, tmp_path):
    md, junit = tmp_path / "gate.md", tmp_path / "gate.xml"
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", runs["degraded"],
                     "--markdown", md, "--junit", junit)
    assert code == 1, out
    line = next(x for x in out.splitlines() if "arith_mini/numeric" in x)
    assert "REGRESSION" in line and "0.9000 -> 0.6500" in line and "10 lost, 0 gained" in line
    assert "shapes_color/multiple_choice: pass" in out  # unchanged task passes
    assert "all tasks: REGRESSION" in out
    text = md.read_text()
    assert "REGRESSION" in text and "| ❌ | arith_mini/numeric | 40 | 0.9000 | 0.6500 | -0.2500 |" in text
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "2" and suite.get("errors") == "0"
    failed = {case.get("name") for case in suite if case.find("failure") is not None}
    assert failed == {"arith_mini/numeric", "all tasks"}


def test_noise_level_difference_passes(runs, capsys):
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", runs["noise"])
    assert code == 0, out
    assert "not significant" in out and "3 lost, 2 gained" in out


def test_drop_within_max_drop_passes_even_when_significant(runs, capsys):
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", runs["degraded"], "--max-drop", "0.3")
    assert code == 0, out
    assert "within max-drop 0.3" in out


def test_tasks_option_gates_a_subset(runs, capsys):
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", runs["degraded"], "--tasks", "shapes_color")
    assert code == 0 and "arith_mini" not in out


def test_mismatched_task_versions_exit_2(tmp_path, capsys):
    items = [{"id": f"q{i}", "question": f"Say {i}", "answer": str(i)} for i in range(30)]
    v1 = make_run(tmp_path / "a", "v1", "echo", include=[write_task(tmp_path / "t1", "echo", items, version=1)])
    v2 = make_run(tmp_path / "b", "v2", "echo", include=[write_task(tmp_path / "t2", "echo", items, version=2)])
    junit = tmp_path / "gate.xml"
    code, out = gate(capsys, "--baseline", v1, "--candidate", v2, "--junit", junit)
    assert code == 2
    assert "not comparable: echo: different task versions (baseline 1, candidate 2)" in out
    assert ET.parse(junit).getroot().get("errors") == "1"


def test_changed_task_data_exit_2(runs, tmp_path, capsys):
    import shutil

    changed = shutil.copytree(runs["same"], tmp_path / "changed")
    edit_json(changed / "results.json", lambda r: r["tasks"]["arith_mini"].update(hash="0" * 64))
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", changed)
    assert code == 2 and "different task data hashes" in out


def test_no_shared_samples_exit_2(tmp_path, capsys):
    a_items = [{"id": f"a{i}", "question": f"Say {i}", "answer": str(i)} for i in range(10)]
    b_items = [{"id": f"b{i}", "question": f"Say {i}", "answer": str(i)} for i in range(10)]
    a = make_run(tmp_path / "a", "a", "echo", include=[write_task(tmp_path / "t", "echo", a_items)])
    b = make_run(tmp_path / "b", "b", "echo", include=[write_task(tmp_path / "t", "echo", b_items)])
    # the data differ, so the hashes do too; make them agree to reach the pairing step
    a_hash = json.loads((a / "results.json").read_text())["tasks"]["echo"]["hash"]
    edit_json(b / "results.json", lambda r: r["tasks"]["echo"].update(hash=a_hash))
    code, out = gate(capsys, "--baseline", a, "--candidate", b)
    assert code == 2 and "no samples scored in both runs" in out


def test_missing_task_and_bad_arguments_exit_2(runs, tmp_path, capsys):
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", runs["same"], "--tasks", "nope")
    assert code == 2 and "nope: no result in the baseline run" in out
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", tmp_path / "missing")
    assert code == 2 and "no such run directory" in out
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", runs["same"], "--alpha", "2")
    assert code == 2 and "--alpha must be between 0 and 1" in out
    with pytest.raises(SystemExit) as usage:
        main(["gate", "--baseline", str(runs["base"])])
    assert usage.value.code == 2


def test_continuous_scores_use_paired_bootstrap(tmp_path, capsys):
    """token_f1 scores are not binary: the gate bootstraps the paired difference."""
    items = [{"id": f"q{i:03d}", "question": f"Describe {i}", "answer": f"alpha beta gamma delta {i}"}
             for i in range(120)]
    tasks = write_task(tmp_path / "t", "describe", items, scorer="token_f1")
    base = make_run(tmp_path / "a", "base", "describe", include=[tasks])
    worse = make_run(tmp_path / "b", "worse", "describe", include=[tasks],
                     texts={f"q{i:03d}": f"alpha beta {i}" for i in range(0, 120, 2)})  # half lose two words
    slightly = make_run(tmp_path / "c", "slightly", "describe", include=[tasks],
                        texts={"q000": "alpha beta gamma 0"})
    code, out = gate(capsys, "--baseline", base, "--candidate", worse)
    assert code == 1 and "paired bootstrap of the mean" in out
    code, out = gate(capsys, "--baseline", base, "--candidate", slightly, "--max-drop", "0")
    assert code == 0 and "not significant" in out


def test_gate_does_not_import_torch(runs):
    code = ("import sys, contextlib, io\n"
            "from eval_anything.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['gate', '--baseline', {str(runs['base'])!r}, '--candidate', {str(runs['same'])!r}]) == 0\n"
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_candidate_errors_are_left_out_or_counted_as_wrong(runs, tmp_path, capsys):
    crashed = make_run(tmp_path, "crashed", wrong=ARITH[:4], errors=ARITH[4:16])
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", crashed)
    assert code == 0 and "the candidate errored on 12 samples the baseline scored (left out" in out
    code, out = gate(capsys, "--baseline", runs["base"], "--candidate", crashed, "--errors-as-wrong")
    assert code == 1 and "12 lost, 0 gained" in out and "counted as 0" in out


def test_different_judges_exit_2(runs, tmp_path, capsys):
    import shutil

    def judged(name, reference):
        run = shutil.copytree(runs["same"], tmp_path / name)
        edit_json(run / "results.json", lambda r: (r.update(judge={"backend": "openai", "reference": reference}),
                                                   r["tasks"]["arith_mini"].update(judge={"calls": 40})))
        return run

    code, out = gate(capsys, "--baseline", judged("a", "gpt-4o"), "--candidate", judged("b", "gpt-4o"))
    assert code == 0, out
    code, out = gate(capsys, "--baseline", judged("c", "gpt-4o"), "--candidate", judged("d", "gpt-4o-mini"))
    assert code == 2 and "arith_mini: judged by different judges (baseline openai:gpt-4o, candidate openai:gpt-4o-mini)" in out


def test_metric_scored_in_neither_run_is_skipped_not_fatal(runs, tmp_path, capsys):
    import shutil

    def unscored(name):
        run = shutil.copytree(runs["same"], tmp_path / name)
        log = run / "samples" / "shapes_color.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines()]
        for record in records:
            record["scores"]["multiple_choice"].update(value=None, error="scorer does not apply")
        log.write_text("".join(json.dumps(r) + "\n" for r in records))
        return run

    code, out = gate(capsys, "--baseline", unscored("a"), "--candidate", unscored("b"))
    assert code == 0 and "skipped shapes_color/multiple_choice: no sample scored in either run" in out
