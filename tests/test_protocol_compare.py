"""gate and verify refuse to compare runs whose tasks were scored under different protocols
(genuine replay runs of a task with a `paper` and an `extended` protocol); runs that record no
protocol (from before protocols, or tasks with one way of scoring) compare as before."""
import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from eval_anything.cli import main
from run_factory import edit_json, make_run, write_task

ITEMS = [{"id": f"q{i:02d}", "question": f"Say {i}", "answer": str(i)} for i in range(30)]
PROTOCOLS = 'protocol: paper\nprotocols:\n  extended:\n    prompt: "Question: {{ question }}"\n'
REFUSAL = ("task proto: the baseline was scored under protocol 'paper', the candidate under 'extended'; "
           "rerun one with --protocol paper or --protocol extended")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol-runs")
    tasks = write_task(root / "tasks", "proto", ITEMS, extra=PROTOCOLS)
    return {
        "paper": make_run(root / "a", "paper", "proto", include=[tasks]),
        "paper_again": make_run(root / "b", "paper-again", "proto", include=[tasks], protocol="paper"),
        "extended": make_run(root / "c", "extended", "proto", include=[tasks], protocol="extended"),
    }


def gate(capsys, *args):
    code = main(["gate", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def verify(capsys, *args):
    code = main(["verify", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def without_protocol(run, target, where=("results", "manifest")):
    """A copy of `run` as a run from before protocols wrote it: no protocol field."""
    copy = shutil.copytree(run, target)
    if "results" in where:
        edit_json(copy / "results.json", lambda r: r["tasks"]["proto"].pop("protocol"))
    if "manifest" in where:
        edit_json(copy / "manifest.json", lambda m: [t.pop("protocol", None) for t in m["tasks"]])
    return copy


def test_runs_record_their_protocol(runs):
    for name, protocol in (("paper", "paper"), ("paper_again", "paper"), ("extended", "extended")):
        results = json.loads((runs[name] / "results.json").read_text())
        manifest = json.loads((runs[name] / "manifest.json").read_text())
        assert results["tasks"]["proto"]["protocol"] == protocol and manifest["tasks"][0]["protocol"] == protocol


def test_gate_same_protocol_passes(runs, capsys):
    code, out = gate(capsys, "--baseline", runs["paper"], "--candidate", runs["paper_again"])
    assert code == 0, out
    assert "proto/exact_match: pass" in out and "result: PASS (exit 0)" in out


def test_gate_different_protocols_refuse_with_one_line(runs, capsys, tmp_path):
    md, junit = tmp_path / "gate.md", tmp_path / "gate.xml"
    code, out = gate(capsys, "--baseline", runs["paper"], "--candidate", runs["extended"], "--markdown", md,
                     "--junit", junit)
    assert code == 2, out
    (line,) = [x for x in out.splitlines() if "under protocol" in x]
    assert line.strip().startswith("not comparable: " + REFUSAL)
    assert "task data hashes" not in out  # the protocol, not the hash it changes, is named
    assert "result: NOT COMPARABLE (exit 2)" in out
    assert REFUSAL in md.read_text()
    suite = ET.parse(junit).getroot()
    assert suite.get("errors") == "1" and "protocol 'paper'" in suite.find("testcase/error").get("message")
    # the other way round names the protocols the other way round
    code, out = gate(capsys, "--baseline", runs["extended"], "--candidate", runs["paper"])
    assert code == 2 and "the baseline was scored under protocol 'extended', the candidate under 'paper'" in out


def test_gate_reads_the_protocol_from_the_manifest_when_results_lack_it(runs, capsys, tmp_path):
    candidate = without_protocol(runs["extended"], tmp_path / "ext", where=("results",))
    code, out = gate(capsys, "--baseline", runs["paper"], "--candidate", candidate)
    assert code == 2 and REFUSAL in out


def test_gate_old_runs_without_protocol_compare_as_before(runs, capsys, tmp_path):
    old_paper = without_protocol(runs["paper"], tmp_path / "old-paper")
    old_again = without_protocol(runs["paper_again"], tmp_path / "old-again")
    code, out = gate(capsys, "--baseline", old_paper, "--candidate", old_again)
    assert code == 0, out
    code, out = gate(capsys, "--baseline", old_paper, "--candidate", runs["paper_again"])  # one side only
    assert code == 0, out
    # one side without a protocol is not a protocol mismatch: the task hash check still applies, as before
    code, out = gate(capsys, "--baseline", old_paper, "--candidate", runs["extended"])
    assert code == 2 and "proto: different task data hashes" in out and "under protocol" not in out


def test_verify_reference_run_same_protocol_passes(runs, capsys):
    code, out = verify(capsys, runs["paper_again"], "--reference-run", runs["paper"])
    assert code == 0, out
    assert "proto/exact_match: reference 1.0000, measured 1.0000" in out and "within tolerance" in out


def test_verify_reference_run_different_protocol_refuses(runs, capsys):
    code, out = verify(capsys, runs["extended"], "--reference-run", runs["paper"])
    assert code == 2, out
    assert ("proto/exact_match: not comparable: the reference was scored under protocol 'paper', the run under "
            "'extended'; rerun with --protocol paper") in out
    assert "result: NOT COMPARABLE (exit 2)" in out


def reference_file(tmp_path, **fields):
    entry = {"task": "proto", "model": "*", "metric": "exact_match", "value": 1.0, "tolerance": 0.0, **fields}
    path = tmp_path / "refs.yaml"
    path.write_text(json.dumps({"format": 1, "version": 1, "references": [entry]}))  # JSON is YAML
    return path


def test_verify_reference_file_with_a_protocol(runs, capsys, tmp_path):
    refs = reference_file(tmp_path, protocol="paper")
    code, out = verify(capsys, runs["paper"], "--references", refs)
    assert code == 0, out
    code, out = verify(capsys, runs["extended"], "--references", refs)
    assert code == 2 and "the reference was scored under protocol 'paper', the run under 'extended'" in out


def test_verify_without_protocol_on_either_side_compares_as_before(runs, capsys, tmp_path):
    code, out = verify(capsys, runs["extended"], "--references", reference_file(tmp_path))  # none in the reference
    assert code == 0, out
    old = without_protocol(runs["extended"], tmp_path / "old")
    code, out = verify(capsys, old, "--references", reference_file(tmp_path, protocol="paper"))  # none in the run
    assert code == 0, out
    code, out = verify(capsys, old, "--reference-run", runs["paper"])  # the hashes still differ, as before
    assert code == 2 and "(task hash)" in out and "under protocol" not in out
