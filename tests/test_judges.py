"""Model judges: strict parsers, and judged runs against a fault-injecting OpenAI-compatible server
(retries, bounded in-flight, errors kept with raw replies, cache, position swapping, agreement,
no key on disk), through the real runner."""
from __future__ import annotations

import json
import re
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from eval_anything.judges.parsers import (JudgeParseError, explanation_of, parse_choice, parse_json_object,
                                          parse_pairwise, parse_rating)
from eval_anything.models import ModelSpec, resolve_spec
from eval_anything.rundir import SampleLog
from eval_anything.runner import evaluate
from eval_anything.settings import JudgeSettings, RunSettings
from eval_anything.tasks import Catalog
from media_files import write_png, write_wav
from stub_openai import StubServer, completion, user_text

FAKE_KEY = "sk-judge-planted-NOT-REAL-91c4e0"
KEY_ENV = "EVAL_ANYTHING_TEST_JUDGE_KEY"


# ------------------------------------------------------------------ parsers


@pytest.mark.parametrize("text,value", [("Rating: [[7]]", 7), ("[[ 10 ]] because", 10), ("x [[1]] y [[9]]", 1),
                                        ("<Score>: [[3.5]]", 3.5), ("[[n/a]] then Rating: [[4]]", 4)])
def test_parse_rating(text, value):
    assert parse_rating(text, 1, 10) == value


@pytest.mark.parametrize("text,message", [("Rating: 7", "no rating"), ("Rating: [[11]]", "off the scale"),
                                          ("Rating: [[0]]", "off the scale"), ("", "no rating"),
                                          ("Rating: [[7", "no rating")])
def test_parse_rating_refuses_malformed(text, message):
    with pytest.raises(JudgeParseError, match=message):
        parse_rating(text, 1, 10)


def test_parse_rubric_scale_4321_total():
    assert parse_rating("<Explanation>: [[fine]]\n<Score>: [[9]]", 0, 10) == 9
    with pytest.raises(JudgeParseError):
        parse_rating("<Score>: [[12]]", 0, 10)


@pytest.mark.parametrize("text,value", [("[[B]]", "B"), ("The answer is C.", "C"), ("[[e]] no, [[a]]", "A"),
                                        ("I pick (D)", "D")])
def test_parse_choice(text, value):
    assert parse_choice(text, "ABCD") == value


def test_parse_choice_refuses_letters_off_the_list():
    with pytest.raises(JudgeParseError):
        parse_choice("[[E]] Everything", "ABCD")


@pytest.mark.parametrize("text,value", [("[[A]]", "A"), ("so [[B]]", "B"), ("[[C]]", "tie"), ("[[tie]]", "tie")])
def test_parse_pairwise(text, value):
    assert parse_pairwise(text) == value


def test_parse_pairwise_and_json_refuse_malformed():
    with pytest.raises(JudgeParseError):
        parse_pairwise("A is better")
    with pytest.raises(JudgeParseError, match="lacks score"):
        parse_json_object('{"reason": "x"}', ["score"])
    with pytest.raises(JudgeParseError, match="malformed"):
        parse_json_object('{"score": 3', ["score"])
    assert parse_json_object('verdict: {"score": 3} ok', ["score"]) == {"score": 3}


def test_explanation_is_kept():
    assert explanation_of("<Explanation>: [[Follows the format.]]\n<Score>: [[8]]").startswith("Follows the format.")


# ------------------------------------------------------------------ judged runs

QA = [("q1", "What is the capital of France?", "Paris"), ("q2", "What colour is the sky?", "blue"),
      ("q3", "How many legs has a spider?", "8"), ("q4", "Name a prime number.", "7")]


def judged_task(tmp_path: Path, scorer: str, rows: list[dict[str, Any]] | None = None) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir(exist_ok=True)
    rows = rows or [{"id": i, "question": q, "answer": a} for i, q, a in QA]
    (folder / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "qa.yaml").write_text(textwrap.dedent(f"""
        name: judged_qa
        version: 1
        dataset: {{path: qa.jsonl}}
        input: [{{text: question}}]
        target: answer
        scorers: [{scorer}]
    """))
    return folder


def predictions(tmp_path: Path, texts: dict[str, str] | None = None) -> Path:
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": (texts or {}).get(i, f"It is {a}.")}) + "\n"
                            for i, _, a in QA))
    return path


def run_judged(tmp_path: Path, server: StubServer, folder: Path, output: str = "runs", **judge: Any):
    spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url, "api_key_env": KEY_ENV,
                                              "max_retries": judge.pop("max_retries", 3),
                                              "concurrency": judge.pop("concurrency", 4),
                                              "timeout": judge.pop("timeout", 30)})
    settings = JudgeSettings(spec, cache_path=tmp_path / "judge-cache.sqlite", **judge)
    return evaluate(resolve_spec(str(predictions(tmp_path))), Catalog([folder]).resolve("judged_qa"),
                    RunSettings(output_dir=tmp_path / output, judge=settings))


def rating_reply(ratings: dict[str, str], delay: float = 0.0):
    def reply(call: int, body: dict[str, Any], auth: str):
        text = user_text(body)
        for question, answer in ratings.items():
            if question in text:
                return 200, {}, completion(answer, 40, 6), delay
        return 200, {}, completion("Explanation: fine.\nRating: [[5]]", 40, 6), delay
    return reply


def judge_records(report) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in SampleLog(report.run_dir / "samples" / "judged_qa.jsonl")}


def test_judged_run_scores_accounts_and_reuses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    folder = judged_task(tmp_path, "judge_rating")
    replies = {"France": "Explanation: right.\nRating: [[9]]", "sky": "Explanation: ok.\nRating: [[6]]"}
    with StubServer(rating_reply(replies)) as server:
        report = run_judged(tmp_path, server, folder, price_per_million=(2.5, 10.0))
        assert server.calls == 4
    task = report.results["tasks"]["judged_qa"]
    assert task["metrics"]["judge_rating"]["value"] == pytest.approx((9 + 6 + 5 + 5) / 4)
    assert task["judge"] == {"calls": 4, "cached": 0, "input_tokens": 160, "output_tokens": 24, "errors": 0,
                             "parse_retries": 0, "media_dropped": 0, "cost_usd": pytest.approx(0.00064),
                             "weak_default": False}
    assert report.results["judge"]["reference"] == "stub-judge" and report.results["judge"]["calls"] == 4
    first = judge_records(report)["q1"]["scores"]["judge_rating"]
    assert first["answer"] == "9" and first["explanation"].startswith("right.")
    assert first["details"]["judge"][0]["raw"] == [replies["France"]]
    assert any("[Question]\nWhat is the capital of France?\n\n[Response]\nIt is Paris." in user_text(b)
               for b in server.bodies)

    with StubServer(rating_reply({})) as fresh_server:  # another run directory, the same cache
        again = run_judged(tmp_path, fresh_server, folder, output="runs-again", price_per_million=(2.5, 10.0))
        assert fresh_server.calls == 0
    assert again.results["tasks"]["judged_qa"]["metrics"] == task["metrics"]
    assert again.results["tasks"]["judged_qa"]["judge"]["cached"] == 4

    with StubServer(rating_reply({})) as third:  # the finished run itself: nothing to do at all
        rerun = run_judged(tmp_path, third, folder, price_per_million=(2.5, 10.0))
        assert third.calls == 0 and rerun.judge_calls == 0 and rerun.generated == 0


def test_malformed_replies_are_re_asked_then_recorded_with_raw_text(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    seen: dict[str, int] = {}

    def reply(call, body, auth):
        text = user_text(body)
        key = next(q for _, q, _ in QA if q in text)
        seen[key] = seen.get(key, 0) + 1
        if "France" in key:
            return 200, {}, completion("I would say eight out of ten"), 0.0  # never parseable
        if "sky" in key and seen[key] == 1:
            return 200, {}, completion("Rating: [[7"), 0.0  # truncated, then fine
        return 200, {}, completion("Rating: [[8]]"), 0.0

    with StubServer(reply) as server:
        report = run_judged(tmp_path, server, judged_task(tmp_path, "judge_rating"), parse_retries=2)
        assert server.calls == 3 + 2 + 1 + 1  # bounded: 1 + parse_retries asks for the hopeless one
    task = report.results["tasks"]["judged_qa"]
    assert task["metrics"]["judge_rating"]["n"] == 3 and task["metrics"]["judge_rating"]["errors"] == 1
    assert task["judge"]["errors"] == 1 and task["judge"]["parse_retries"] == 3
    assert task["counts"]["errored"] == 1
    bad = judge_records(report)["q1"]["scores"]["judge_rating"]
    assert bad["value"] is None and "unparseable after 3 replies" in bad["error"]
    assert bad["details"]["judge"][0]["raw"] == ["I would say eight out of ten"] * 3
    assert [s["value"] for s in (judge_records(report)[k]["scores"]["judge_rating"] for k in ("q2", "q3"))] == [8, 8]


def test_on_error_fail_counts_a_judge_failure_as_the_floor_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    with StubServer(lambda call, body, auth: (200, {}, completion("no idea"), 0.0)) as server:
        report = run_judged(tmp_path, server, judged_task(tmp_path, "{name: judge_rating, args: {on_error: fail}}"),
                            parse_retries=0)
    metric = report.results["tasks"]["judged_qa"]["metrics"]["judge_rating"]
    assert metric["value"] == 1.0 and metric["n"] == 4 and metric["errors"] == 0
    assert report.results["tasks"]["judged_qa"]["judge"]["errors"] == 4
    score = judge_records(report)["q1"]["scores"]["judge_rating"]
    assert score["explanation"].startswith("counted as a failure: judge error")


def test_server_errors_429_and_timeouts_are_retried_boundedly(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    attempts: dict[str, int] = {}

    def reply(call, body, auth):
        text = user_text(body)
        key = next(q for _, q, _ in QA if q in text)
        attempts[key] = attempts.get(key, 0) + 1
        if "France" in key:
            return 500, {}, {"error": {"message": "always down"}}, 0.0
        if "sky" in key and attempts[key] == 1:
            return 429, {"Retry-After": "0.05"}, {"error": {"message": "slow down"}}, 0.0
        if "spider" in key and attempts[key] == 1:
            return 200, {}, completion("Rating: [[2]]"), 2.0  # beyond the timeout: retried
        return 200, {}, completion("Rating: [[6]]"), 0.0

    with StubServer(reply) as server:
        report = run_judged(tmp_path, server, judged_task(tmp_path, "judge_rating"), max_retries=2, timeout=0.5)
    assert attempts["What is the capital of France?"] == 3  # 1 + max_retries, then an error
    assert attempts["What colour is the sky?"] == 2 and attempts["How many legs has a spider?"] == 2
    task = report.results["tasks"]["judged_qa"]
    assert task["metrics"]["judge_rating"] == {**task["metrics"]["judge_rating"], "n": 3, "errors": 1, "value": 6.0}
    bad = judge_records(report)["q1"]["scores"]["judge_rating"]
    assert "judge call failed: InternalServerError" in bad["error"]


def test_in_flight_judgements_never_exceed_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    rows = [{"id": f"q{i}", "question": f"Question number {i}?", "answer": "x"} for i in range(12)]
    folder = judged_task(tmp_path, "judge_rating", rows)
    (tmp_path / "predictions.jsonl").unlink(missing_ok=True)
    with StubServer(lambda c, b, a: (200, {}, completion("Rating: [[4]]"), 0.15)) as server:
        spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url, "api_key_env": KEY_ENV,
                                                  "concurrency": 3})
        preds = tmp_path / "p.jsonl"
        preds.write_text("".join(json.dumps({"id": r["id"], "text": "x"}) + "\n" for r in rows))
        report = evaluate(resolve_spec(str(preds)), Catalog([folder]).resolve("judged_qa"),
                          RunSettings(output_dir=tmp_path / "runs",
                                      judge=JudgeSettings(spec, cache_path=tmp_path / "c.sqlite")))
        assert server.max_in_flight == 3 and server.calls == 12
    assert report.results["tasks"]["judged_qa"]["metrics"]["judge_rating"]["n"] == 12


def test_pairwise_asks_both_orders_and_measures_agreement_with_humans(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    rows = [{"id": i, "question": q, "answer": a, "baseline": f"baseline answer {i}", "human": h}
            for (i, q, a), h in zip(QA, (1.0, 0.0, 1.0, 0.5))]

    def reply(call, body, auth):  # prefers the model's answer ("It is ...") for q1, q3; the baseline for q2
        text = user_text(body)
        a_part = text.split("[Answer A]")[1].split("[Answer B]")[0]
        model_is_a = "It is" in a_part
        if "sky" in text:
            verdict = "B" if model_is_a else "A"
        elif "prime" in text:
            verdict = "A"  # position-biased: always the first answer
        else:
            verdict = "A" if model_is_a else "B"
        return 200, {}, completion(f"reasons... [[{verdict}]]"), 0.0

    folder = judged_task(tmp_path, "{name: judge_pairwise, args: {baseline: baseline, human_label: human}}", rows)
    with StubServer(reply) as server:
        report = run_judged(tmp_path, server, folder)
        assert server.calls == 8
        texts = [user_text(b) for b in server.bodies if "France" in user_text(b)]
    assert len(texts) == 2 and texts[0] != texts[1]  # the same pair, both orders
    records = judge_records(report)
    values = {k: r["scores"]["judge_pairwise"]["value"] for k, r in records.items()}
    assert values == {"q1": 1.0, "q2": 0.0, "q3": 1.0, "q4": 0.5}
    assert records["q4"]["scores"]["judge_pairwise"]["details"]["position_consistent"] is False
    agreement = report.results["tasks"]["judged_qa"]["metrics"]["judge_pairwise"]["human_agreement"]
    assert agreement["n"] == 4 and agreement["accuracy"] == 1.0 and agreement["cohen_kappa"] == 1.0


def test_api_key_appears_nowhere_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    echoing = lambda call, body, auth: (200, {}, completion(f"Rating: [[5]] seen {auth}"), 0.0)
    with StubServer(echoing) as server:
        run_judged(tmp_path, server, judged_task(tmp_path, "judge_rating"))
        assert server.authorizations[0] == f"Bearer {FAKE_KEY}"
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]
    assert leaks == []


# ------------------------------------------------------------------ media, weak default, reward model


def media_task(tmp_path: Path, scorer: str, rows: list[dict[str, Any]]) -> Path:
    folder = tmp_path / "mtasks"
    folder.mkdir(exist_ok=True)
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "media.yaml").write_text(textwrap.dedent(f"""
        name: judged_media
        version: 1
        dataset: {{path: items.jsonl}}
        input: [{{image: image}}, {{text: question}}]
        target: answer
        scorers: [{scorer}]
    """))
    return folder


def test_media_reach_a_judge_that_takes_them_and_generated_audio_is_questioned(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    image = write_png(tmp_path / "red.png")
    audio = write_wav(tmp_path / "made.wav")
    questions = [{"question": "Is there a tone?", "choices": ["yes", "no"], "answer": "A"},
                 {"question": "Is it speech?", "choices": ["yes", "no"], "answer": "no"}]
    rows = [{"id": "m1", "image": str(image), "question": "Describe the image, then make a tone.", "answer": "red",
             "questions": questions}]
    folder = media_task(tmp_path, "{name: judge_media_mcq, args: {questions: questions, modality: audio}}", rows)
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "m1", "text": "red", "media": [{"modality": "audio", "path": str(audio)}]}))

    def reply(call, body, auth):
        kinds = [p["type"] for p in body["messages"][-1]["content"]]
        assert "input_audio" in kinds, kinds  # the generated audio goes to the judge
        return 200, {}, completion("[[A]]" if "tone" in user_text(body) else "[[A]]"), 0.0

    with StubServer(reply) as server:
        spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url, "api_key_env": KEY_ENV})
        report = evaluate(resolve_spec(str(preds)), Catalog([folder]).resolve("judged_media"),
                          RunSettings(output_dir=tmp_path / "runs",
                                      judge=JudgeSettings(spec, cache_path=tmp_path / "c.sqlite")))
        assert server.calls == 2
    record = next(iter(SampleLog(report.run_dir / "samples" / "judged_media.jsonl")))
    score = record["scores"]["judge_media_mcq"]
    assert score["value"] == 0.5 and score["explanation"] == "1/2 questions answered correctly"


def test_text_only_judge_records_that_it_saw_no_media_and_weak_default_is_labelled(tmp_path):
    image = write_png(tmp_path / "blue.png", (0, 0, 255))
    rows = [{"id": "m1", "image": str(image), "question": "What colour is this?", "answer": "blue"}]
    folder = media_task(tmp_path, "judge_rating", rows)
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "m1", "text": "It is blue."}))
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "eval_anything", "run", "--model", str(preds), "--include-path", str(folder),
         "--tasks", "judged_media", "--judge-max-tokens", "24", "--judge-retries", "1",
         "--judge-cache", str(tmp_path / "c.sqlite"), "--output-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "weak judge" in result.stderr and "(weak default judge)" in " ".join(result.stdout.split())
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["judge"]["weak_default"] is True and results["judge"]["backend"] == "embedded"
    assert results["tasks"]["judged_media"]["judge"]["media_dropped"] == 1
    score = next(iter(SampleLog(run_dir / "samples" / "judged_media.jsonl")))["scores"]["judge_rating"]
    verdict = score["details"]["judge"][0]
    assert verdict["media_dropped"] == ["image"] and verdict["raw"]  # the raw replies are kept either way
    assert (score["value"] is None) == (score["error"] is not None)
    if score["error"]:
        assert "unparseable after 2 replies" in score["error"] and len(verdict["raw"]) == 2


def test_reward_model_scores_sigmoid_of_the_reward(tmp_path, smollm2_dir):
    import math

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    model_dir = tmp_path / "rm"
    LlamaForSequenceClassification(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    folder = judged_task(tmp_path, f"{{name: reward_model, args: {{path: {model_dir}}}}}")
    report = evaluate(resolve_spec(str(predictions(tmp_path))), Catalog([folder]).resolve("judged_qa"),
                      RunSettings(output_dir=tmp_path / "runs"))
    records = judge_records(report)
    scorer = Catalog([folder]).tasks["judged_qa"].scorers[0]
    for sample_id, question, answer in QA:
        score = records[sample_id]["scores"]["reward_model"]
        reward = scorer.reward(question, f"It is {answer}.")
        assert score["details"]["reward"] == pytest.approx(reward, abs=1e-5)
        assert score["value"] == pytest.approx(1 / (1 + math.exp(-reward)), abs=1e-6)
    assert len({r["scores"]["reward_model"]["value"] for r in records.values()}) == 4
    assert "judge" not in report.results  # a reward model is no judge model: no judge was loaded


def test_a_real_openai_compatible_judge_server(tmp_path, smollm2_dir):
    from servers import transformers_serve

    with transformers_serve(smollm2_dir) as server:
        spec = ModelSpec("openai", str(smollm2_dir), {"base_url": server.base_url + "/v1", "concurrency": 2})
        settings = JudgeSettings(spec, max_new_tokens=24, parse_retries=1, cache_path=tmp_path / "c.sqlite")
        report = evaluate(resolve_spec(str(predictions(tmp_path))),
                          Catalog([judged_task(tmp_path, "judge_rating")]).resolve("judged_qa"),
                          RunSettings(output_dir=tmp_path / "runs", judge=settings))
    judge = report.results["tasks"]["judged_qa"]["judge"]
    assert judge["calls"] >= 4 and judge["input_tokens"] > 0 and judge["output_tokens"] > 0
    for record in judge_records(report).values():
        score = record["scores"]["judge_rating"]
        verdicts = score["details"]["judge"]
        assert verdicts[0]["raw"] and all(isinstance(raw, str) for raw in verdicts[0]["raw"])
        if score["error"] is None:
            assert 1 <= score["value"] <= 10
        else:  # the 135M model often ignores the format: recorded as a judge error, never a 0
            assert score["value"] is None and score["error"].startswith("judge error")
