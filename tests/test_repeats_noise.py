"""Repeats (`--repeats K`), the noise floor (`eval-anything noise`) and the gate's use of it."""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
from stub_openai import StubServer, completion, user_text

from eval_anything.cli import main
from eval_anything.datamodel import Score
from eval_anything.repeats import combine

KEY_ENV = "EVAL_ANYTHING_TEST_REPEATS_KEY"
SEED = 1234


def write_task(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"i{i}", "question": f"Item {i}: say {i}.", "answer": str(i)} for i in range(4)]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "say.yaml").write_text(textwrap.dedent("""
        name: say_number
        version: 1
        dataset: {path: items.jsonl}
        input: [{text: question}]
        target: answer
        scorers: [exact_match]
    """))
    return folder / "say.yaml"


def asked_item(body) -> int:
    return int(user_text(body).split(":")[0].split()[-1])  # "Item 3: say 3." -> 3


def seeded_reply(call, body, auth):
    """Item i is answered right exactly by the requests seeded below SEED + i: a known spread."""
    item = asked_item(body)
    right = body["seed"] - SEED < item
    return 200, {}, completion(str(item) if right else "no idea"), 0.0


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def stub_model(server: StubServer) -> list[str]:
    return ["--model", "openai:stub", "--model-args", f"base_url={server.base_url},api_key_env={KEY_ENV}"]


def records(run_dir: Path) -> dict[str, dict]:
    lines = (run_dir / "samples" / "say_number.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def only_run(output: Path) -> Path:
    (run,) = [p for p in output.iterdir() if (p / "results.json").exists()]
    return run


def test_combine_means_valid_repeats_keeps_errors_and_every_judge_call():
    verdict = {"calls": 1, "cached": 0}
    scores = [{"m": Score(1.0, details={"judge": [verdict]})}, {"m": Score.errored("timeout")},
              {"m": Score(0.0, details={"judge": [verdict]})}]
    combined = combine(scores)["m"]
    assert combined.value == 0.5 and combined.error is None
    assert combined.details["repeats"] == [1.0, None, 0.0]
    assert combined.details["repeat_errors"] == ["timeout"] and len(combined.details["judge"]) == 2
    failed = combine([{"m": Score.errored("a")}, {"m": Score.errored("b")}])["m"]
    assert failed.value is None and "every one of 2 repeats failed: a" in failed.error
    skipped = combine([{"m": Score.inapplicable("no audio")}] * 2)["m"]
    assert skipped.not_applicable == "no audio" and skipped.error is None
    assert combine([{"m": Score(0.25)}])["m"] == Score(0.25)  # one repeat: the score as it is


def test_repeats_generate_k_seeded_requests_per_item_and_report_the_spread(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    task = write_task(tmp_path / "task")
    output = tmp_path / "runs"
    with StubServer(seeded_reply) as server:
        code, out = run_cli(capsys, "run", *stub_model(server), "--tasks", str(task), "--repeats", "3",
                            "--output-dir", str(output))
        assert code == 0 and server.calls == 12
        assert sorted(b["seed"] for b in server.bodies) == sorted([SEED, SEED + 1, SEED + 2] * 4)
        # a finished run with repeats: nothing is generated twice
        assert run_cli(capsys, "run", *stub_model(server), "--tasks", str(task), "--repeats", "3",
                       "--output-dir", str(output))[0] == 0
        assert server.calls == 12
        run = only_run(output)
        # one repeat is another evaluation, in another directory
        assert run_cli(capsys, "run", *stub_model(server), "--tasks", str(task), "--output-dir", str(output))[0] == 0
        assert server.calls == 16
    assert len([p for p in output.iterdir() if p.is_dir()]) == 2
    logged = records(run)
    for i in range(4):
        record = logged[f"i{i}"]
        assert [r.get("repeat", 0) for r in record["requests"]] == [0, 1, 2] and len(record["outputs"]) == 3
        assert record["scores"]["exact_match"]["value"] == pytest.approx(min(i, 3) / 3)
        assert record["scores"]["exact_match"]["details"]["repeats"] == [float(r < i) for r in range(3)]
    metric = json.loads((run / "results.json").read_text())["tasks"]["say_number"]["metrics"]["exact_match"]
    means = [0, 1 / 3, 2 / 3, 1]
    item_sd = math.sqrt(sum((m - 0.5) ** 2 for m in means) / 3)
    assert metric["value"] == pytest.approx(0.5) and metric["stderr"] == pytest.approx(item_sd / 2)
    assert metric["repeats"]["k"] == 3 and metric["repeats"]["item_sd"] == pytest.approx(item_sd, abs=1e-6)
    assert metric["repeats"]["repeat_sd"] == pytest.approx(math.sqrt((0 + 1 / 3 + 1 / 3 + 0) / 4), abs=1e-6)
    assert metric["repeats"]["ci95"] == pytest.approx([0.5 - 1.96 * item_sd / 2, 0.5 + 1.96 * item_sd / 2], abs=1e-6)
    assert "3 repeats" in out
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["settings"]["repeats"] == 3


def test_noise_stores_the_floor_in_the_run_and_the_gate_uses_it_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    task = write_task(tmp_path / "task")
    output = tmp_path / "runs"
    with StubServer(seeded_reply) as server:
        code, out = run_cli(capsys, "noise", *stub_model(server), "--tasks", str(task), "--seeds", "3",
                            "--output-dir", str(output))
        assert code == 0 and server.calls == 12
    baseline = only_run(output)
    noise = json.loads((baseline / "noise.json").read_text())
    assert noise["varied"] == ["seed"] and [c["seed"] for c in noise["configurations"]] == [SEED, SEED + 1, SEED + 2]
    entry = noise["tasks"]["say_number"]["exact_match"]
    assert entry["values"] == [0.75, 0.5, 0.25] and entry["floor"] == 0.5 and entry["sd"] == pytest.approx(0.25)
    assert all(Path(c["run_dir"]).is_relative_to(baseline / "noise") for c in noise["configurations"][1:])
    assert "0.5000" in out and "noise.json" in out

    def worse(call, body, auth):  # right on item 3 only
        item = asked_item(body)
        return 200, {}, completion(str(item) if item == 3 else "no idea"), 0.0

    with StubServer(worse) as server:
        assert run_cli(capsys, "run", "--model", "openai:worse", "--model-args",
                       f"base_url={server.base_url},api_key_env={KEY_ENV}", "--tasks", str(task),
                       "--output-dir", str(tmp_path / "candidate"))[0] == 0
    candidate = only_run(tmp_path / "candidate")
    code, out = run_cli(capsys, "gate", "--baseline", str(baseline), "--candidate", str(candidate))
    assert code == 0
    assert "max-drop from the baseline's noise floor" in out and "within max-drop 0.5" in out
    code, out = run_cli(capsys, "gate", "--baseline", str(baseline), "--candidate", str(candidate), "--max-drop", "0.01")
    assert "max-drop 0.01," in out and "> max-drop 0.01" in out

    (baseline / "noise.json").write_text("{not json")
    assert main(["gate", "--baseline", str(baseline), "--candidate", str(candidate)]) == 2
    assert "noise.json: not valid JSON" in capsys.readouterr().err


def test_gate_without_a_noise_floor_says_it_uses_the_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    task = write_task(tmp_path / "task")
    with StubServer(seeded_reply) as server:
        assert run_cli(capsys, "run", *stub_model(server), "--tasks", str(task), "--output-dir", str(tmp_path / "a"))[0] == 0
    run = only_run(tmp_path / "a")
    code, out = run_cli(capsys, "gate", "--baseline", str(run), "--candidate", str(run))
    assert code == 0 and "max-drop 0.01 (the default: no noise.json in the baseline" in out


def test_noise_on_an_hf_model_varies_the_batch_size(tmp_path, tiny_llama_dir, capsys):
    task = write_task(tmp_path / "task")
    code, out = run_cli(capsys, "noise", "--model", f"hf:{tiny_llama_dir}", "--tasks", str(task), "--seeds", "1",
                        "--batch-sizes", "1,4", "--max-new-tokens", "4", "--output-dir", str(tmp_path / "runs"))
    assert code == 0
    baseline = only_run(tmp_path / "runs")
    noise = json.loads((baseline / "noise.json").read_text())
    assert noise["varied"] == ["seed", "batch_size"]
    assert [c["batch_size"] for c in noise["configurations"]] == ["1", "4"]
    assert "seed1234-batch4" in noise["configurations"][1]["run_dir"]
    assert noise["tasks"]["say_number"]["exact_match"]["floor"] >= 0


def test_repeats_and_seeds_must_be_positive(capsys):
    assert main(["run", "--repeats", "0", "--tasks", "arith_mini"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err
    assert main(["noise", "--seeds", "0", "--tasks", "arith_mini"]) == 2


def test_judged_repeats_count_every_judgement_once(tmp_path, monkeypatch):
    from test_judges import FAKE_KEY, KEY_ENV as JUDGE_KEY_ENV, judged_task, predictions, rating_reply

    from eval_anything.models import ModelSpec, resolve_spec
    from eval_anything.runner import evaluate
    from eval_anything.settings import JudgeSettings, RunSettings
    from eval_anything.tasks import Catalog

    monkeypatch.setenv(JUDGE_KEY_ENV, FAKE_KEY)
    folder = judged_task(tmp_path, "judge_rating")
    with StubServer(rating_reply({"France": "Rating: [[9]]"})) as server:
        judge = JudgeSettings(ModelSpec("openai", "stub-judge", {"base_url": server.base_url,
                                                                  "api_key_env": JUDGE_KEY_ENV}),
                              cache_path=tmp_path / "judge-cache.sqlite")
        report = evaluate(resolve_spec(str(predictions(tmp_path))), Catalog([folder]).resolve("judged_qa"),
                          RunSettings(output_dir=tmp_path / "runs", judge=judge, repeats=3))
        assert server.calls == 4  # replayed answers repeat: each question goes out once, its repeats share the reply
    task = report.results["tasks"]["judged_qa"]
    assert task["judge"]["calls"] == 4 and task["judge"]["cached"] == 8
    assert task["metrics"]["judge_rating"]["value"] == pytest.approx((9 + 5 + 5 + 5) / 4)
    assert task["metrics"]["judge_rating"]["repeats"]["repeat_sd"] == 0
