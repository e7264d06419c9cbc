"""The board's judge audit (what each verdict's judge was asked: system and user text, media hashes,
sampling), each task's scoring protocol and a mark where runs on the board used different ones,
and a synergy metric's per-pair means; built from genuine replay runs."""
import base64
import gzip
import json
import re

import pytest

from eval_anything.leaderboard import load_runs, to_csv, to_markdown
from eval_anything.leaderboard.html import BoardOptions, build_board, render_html
from run_factory import PAYLOADS, edit_json, make_run, write_task

ITEMS = [{"id": f"q{i:02d}", "question": f"Say {i}", "answer": str(i)} for i in range(6)]
PROTOCOLS = 'protocol: paper\nprotocols:\n  extended:\n    prompt: "Question: {{ question }}"\n'
SYSTEM = "You grade answers. Reply with <verdict>yes</verdict> & nothing else."
USER = "Question: Say 1\nAnswer: 1" + PAYLOADS[0] + PAYLOADS[3]
SHA = "ab" * 32


def add_audit(run, payload_ids=("q01",)):
    """Judge verdicts with the audit the judge engine logs, on every sample of `run`'s proto task."""
    log = run / "samples" / "proto.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for record in records:
        user = USER if record["id"] in payload_ids else f"Question: {record['id']}"
        record["scores"]["exact_match"]["details"] = {"judge": [
            {"label": "rating", "raw": ["Rating: [[7]]"], "verdict": 7, "error": None, "calls": 1, "cached": False,
             "input_tokens": 40, "output_tokens": 5, "attempts": 1,
             "asked": {"system": SYSTEM, "user": user, "media": [{"modality": "image", "sha256": SHA}],
                       "temperature": 0.7, "max_new_tokens": 256, "seeds": [1234, 1235],
                       "api_key": "sk-must-not-be-copied"}},
            {"label": "reward", "raw": [], "verdict": 0.8, "error": None, "calls": 0, "cached": False,
             "input_tokens": 0, "output_tokens": 0, "attempts": 1,
             "asked": {"local": True, "user": "reward model input", "media": []}}],
            "synergy": {"ti": 0.7, "ta": 0.5}}
    log.write_text("".join(json.dumps(r) + "\n" for r in records))


def add_synergy(run):
    def change(results):
        metric = results["tasks"]["proto"]["metrics"]["exact_match"]
        metric.update(synergy_ti={"value": 0.7, "n": 6}, synergy_ta={"value": 0.5, "n": 4})
    edit_json(run / "results.json", change)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit-runs")
    tasks = write_task(root / "tasks", "proto", ITEMS, extra=PROTOCOLS)
    paper = make_run(root / "a", "paper-model", "proto", include=[tasks])
    extended = make_run(root / "b", "extended-model", "proto", include=[tasks], protocol="extended")
    plain = make_run(root / "c", "plain-model", "arith_mini")
    add_audit(paper)
    add_synergy(paper)
    return {"paper": paper, "extended": extended, "plain": plain}


def samples_of(board, blobs, key):
    blob = dict(blobs)[board["pages"][key]["blobs"][0]]
    return json.loads(gzip.decompress(base64.b64decode(blob)))


def test_drill_down_carries_the_audit_of_each_verdict(runs):
    board, blobs, _ = build_board(load_runs([runs["paper"]]))
    samples = {s["id"]: s for s in samples_of(board, blobs, "0|proto")}
    rating, reward = samples["q01"]["scores"]["exact_match"]["judge"]
    assert rating["asked"] == {"system": SYSTEM, "user": USER, "media": [{"modality": "image", "sha256": SHA}],
                               "temperature": 0.7, "max_new_tokens": 256, "seeds": [1234, 1235]}
    assert rating["raw"] == ["Rating: [[7]]"] and rating["calls"] == 1
    assert reward["asked"] == {"local": True, "user": "reward model input", "media": []}
    assert "sk-must-not-be-copied" not in json.dumps(samples)  # only the named audit fields are copied


def test_audit_texts_respect_the_text_cap(runs):
    board, blobs, _ = build_board(load_runs([runs["paper"]]), BoardOptions(text_cap=20))
    asked = {s["id"]: s for s in samples_of(board, blobs, "0|proto")}["q01"]["scores"]["exact_match"]["judge"][0]["asked"]
    assert asked["system"] == SYSTEM[:20] + f"… [{len(SYSTEM) - 20} more characters not shown]"
    assert asked["user"].startswith(USER[:20] + "… [")


def test_html_holds_audit_text_as_data_never_as_markup(runs):
    html = render_html(load_runs([runs["paper"], runs["extended"]]))
    for text in (PAYLOADS[0], PAYLOADS[3], SYSTEM, "<verdict>"):
        assert text not in html
    assert "sk-must-not-be-copied" not in html
    scripts = re.findall(r"<script\b([^>]*)>", html)
    executable = [a for a in scripts if "application/json" not in a and "application/octet-stream" not in a]
    assert len(executable) == 1 and "nonce=" in executable[0]
    # the page renders the audit with textContent, in a <details> that starts closed
    js = html[html.index("<script nonce="):]
    assert ".innerHTML" not in js and "insertAdjacentHTML" not in js
    assert 'el("details", { cls: "audit" }' in js and "audit-system" in js and "audit-user" in js


def test_protocol_labels_and_the_mark_where_runs_differ(runs):
    loaded = load_runs([runs["paper"], runs["extended"], runs["plain"]])
    board, _, _ = build_board(loaded)
    column = next(c for c in board["columns"] if c["key"] == "proto/exact_match")
    assert column["protocols"] == ["extended", "paper"] and column["protocol_conflict"] is True
    arith = next(c for c in board["columns"] if c["key"] == "arith_mini/numeric")
    assert arith["protocols"] == [] and arith["protocol_conflict"] is False  # no protocol: no label
    assert [board["cells"][i]["proto/exact_match"].get("protocol") for i in range(3)] == ["paper", "extended", None]
    assert board["pages"]["0|proto"]["protocol"] == "paper" and board["pages"]["1|proto"]["protocol"] == "extended"
    text = to_markdown(loaded)
    assert "proto / exact_match (protocols differ: extended / paper)" in text.splitlines()[0]
    assert ("- proto: scored under different protocols (replay:paper-model.jsonl: paper; "
            "replay:extended-model.jsonl: extended); these numbers are not comparable") in text
    assert "protocol" in to_csv(loaded).splitlines()[0].split(",")
    # one protocol on the board: a label, no mark
    same, _, _ = build_board(load_runs([runs["paper"], runs["plain"]]))
    column = next(c for c in same["columns"] if c["key"] == "proto/exact_match")
    assert column["protocols"] == ["paper"] and column["protocol_conflict"] is False
    assert "proto / exact_match (protocol paper)" in to_markdown(load_runs([runs["paper"]])).splitlines()[0]


def test_synergy_parts_beside_the_value(runs):
    loaded = load_runs([runs["paper"], runs["extended"]])
    board, _, _ = build_board(loaded)
    cell = board["cells"][0]["proto/exact_match"]
    assert cell["value"] == 1.0 and cell["synergy"] == {"ti": 0.7, "ta": 0.5}
    assert board["cells"][0]["proto/exact_match/components/synergy_ti"]["value"] == 0.7
    assert board["cells"][0]["proto/exact_match/components/synergy_ta"]["n"] == 4
    assert "synergy" not in board["cells"][1]["proto/exact_match"]
    assert "proto / exact_match / synergy_ti" in to_markdown(loaded).splitlines()[0]


def test_a_genuinely_judged_run_logs_and_shows_what_the_judge_was_asked(tmp_path, monkeypatch):
    """The real runner and judge engine, with a system message, through an OpenAI-compatible stub."""
    from eval_anything.models import ModelSpec, resolve_spec
    from eval_anything.runner import evaluate
    from eval_anything.settings import JudgeSettings, RunSettings
    from eval_anything.tasks import Catalog
    from stub_openai import StubServer, completion

    monkeypatch.setenv("EVAL_ANYTHING_TEST_AUDIT_JUDGE_KEY", "sk-audit-test-not-real")
    folder = tmp_path / "tasks"
    folder.mkdir()
    grader = folder / "grader.jinja"  # by absolute path: scorers look a relative one up before they know the task
    grader.write_text("You are a strict grader of <b>answers</b> & nothing else.")
    write_task(folder, "judged", ITEMS[:3],
               scorer="{name: judge_rating, args: {system_template: %s, temperature: 0.5}}" % json.dumps(str(grader)))
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": f"q{i:02d}", "text": f"{i}" + (PAYLOADS[0] if i == 1 else "")}) + "\n"
                                   for i in range(3)))
    with StubServer(lambda call, body, auth: (200, {}, completion("Rating: [[8]]", 30, 5), 0.0)) as server:
        spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url, "max_retries": 1,
                                                  "api_key_env": "EVAL_ANYTHING_TEST_AUDIT_JUDGE_KEY"})
        report = evaluate(resolve_spec(str(predictions)), Catalog([folder]).resolve("judged"),
                          RunSettings(output_dir=tmp_path / "runs",
                                      judge=JudgeSettings(spec, cache_path=tmp_path / "cache.sqlite")))
        sent = server.bodies
    assert sent[0]["messages"][0]["role"] == "system"
    board, blobs, _ = build_board(load_runs([report.run_dir]))
    samples = {s["id"]: s for s in samples_of(board, blobs, "0|judged")}
    asked = samples["q01"]["scores"]["judge_rating"]["judge"][0]["asked"]
    assert asked["system"] == "You are a strict grader of <b>answers</b> & nothing else."
    assert PAYLOADS[0] in asked["user"] and asked["temperature"] == 0.5 and len(asked["seeds"]) == 1
    html = render_html(load_runs([report.run_dir]))
    assert PAYLOADS[0] not in html and "<b>answers</b>" not in html and "sk-audit-test-not-real" not in html


def test_browser_audit_opens_on_click_and_shows_text(runs, tmp_path):
    """In headless Chromium, where installed: the audit starts closed, opens, and shows markup as text."""
    from browser import chromium_session, file_url, wait_for

    path = tmp_path / "board.html"
    path.write_text(render_html(load_runs([runs["paper"], runs["extended"]])), encoding="utf-8")
    with chromium_session() as driver:
        from selenium.webdriver.common.by import By

        driver.get(file_url(path))
        wait_for(driver, "document.body.dataset.state === 'ready'")
        header = driver.find_element(By.CSS_SELECTOR, '#overview th[data-col="proto/exact_match"]').text
        assert "protocols differ: extended / paper" in header
        driver.find_element(By.CSS_SELECTOR, '#overview tbody tr td[data-col="proto/exact_match"]').click()
        wait_for(driver, "document.body.dataset.drill === 'ready' && document.querySelectorAll('#samples .sample').length > 0")
        assert "protocol paper" in driver.find_element(By.ID, "drill-count").text
        card = driver.find_element(By.CSS_SELECTOR, '#samples .sample[data-id="q01"]')
        audit = card.find_element(By.CSS_SELECTOR, "details.audit")
        assert audit.get_attribute("open") is None  # collapsed by default
        driver.execute_script("arguments[0].closest('details:not(.audit)').open = true", audit)
        audit.find_element(By.CSS_SELECTOR, "summary").click()
        wait_for(driver, "document.querySelector('#samples .sample[data-id=\"q01\"] details.audit').open")
        assert driver.execute_script("return arguments[0].querySelector('.audit-user').textContent", audit) == USER
        assert driver.execute_script("return arguments[0].querySelector('.audit-system').textContent", audit) == SYSTEM
        assert SHA in audit.text and "temperature 0.7" in audit.text and "seeds 1234, 1235" in audit.text
        assert driver.execute_script("return window.__pwned") is None
        assert driver.execute_script("return document.querySelectorAll('#samples script, #samples verdict').length") == 0
