"""The board puts a trained run beside its base run (the difference per task, in the HTML board
and the markdown table) and shows the align compare table the runs' lineage points to."""
import json

import pytest

from eval_anything.align.compare_stats import summarise
from eval_anything.leaderboard import load_runs, to_markdown
from eval_anything.leaderboard.html import build_board, render_html
from browser import browser_missing, chromium_session, file_url, wait_for
from run_factory import edit_json, make_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lineage-board")
    arith = [f"arith-{i:03d}" for i in range(40)]
    base = make_run(root, "base-model", "arith_mini", wrong=arith[:20])
    trained = make_run(root, "trained-model", "arith_mini", wrong=arith[:14])
    binary = make_run(root, "binary-model", "arith_mini", wrong=arith[:18])
    base_reference = json.loads((base / "manifest.json").read_text())["model"]["reference"]
    summary = root / "compare.json"
    for run, arm in ((trained, "llf-dpo"), (binary, "binary-dpo")):
        edit_json(run / "manifest.json", lambda m, arm=arm: m.update(lineage={
            "base_model": base_reference, "method": arm, "data": "d.parquet (sha256 0123)", "config_hash": "abc",
            "pipeline": {"name": "compare", "arm": arm, "seed": 1, "summary": str(summary)}}))
    table = summarise({"base": [str(base)], "llf-dpo": [str(trained)], "binary-dpo": [str(binary)]},
                      ["llf-dpo", "binary-dpo"], resamples=200)
    summary.write_text(json.dumps({"config": {"arms": ["llf-dpo", "binary-dpo"]}, "seeds": [{"seed": 1}],
                                   "table": table}))
    steps = []
    for step, wrong in ((4, 10), (2, 16)):  # in-loop runs, out of order
        run = make_run(root, f"step-{step}", "arith_mini", wrong=arith[:wrong])
        edit_json(run / "manifest.json", lambda m, step=step: m.update(lineage={
            "base_model": base_reference, "method": "dpo", "step": step, "trainer_output_dir": "/t/dpo/checkpoints",
            "in_loop": True}))
        steps.append(run)
    return root, load_runs([base, trained, binary, *steps])


def test_trained_runs_show_their_difference_from_the_base_run_and_the_compare_table(runs):
    root, loaded = runs
    board, _, _ = build_board(loaded)
    base, trained, binary, _, _ = board["runs"]
    assert "vs_base" not in base
    assert trained["vs_base"]["base"] == base["label"] and trained["vs_base"]["base_index"] == 0
    assert trained["vs_base"]["deltas"]["arith_mini/numeric"] == pytest.approx(26 / 40 - 20 / 40)
    assert binary["vs_base"]["deltas"]["arith_mini/numeric"] == pytest.approx(22 / 40 - 20 / 40)
    (steps,) = [c for c in board["charts"] if c["kind"] == "steps"]
    assert steps["groups"] == ["step 2", "step 4"] and steps["title"].startswith("dpo from ")
    assert steps["series"] == [{"label": "arith_mini", "values": [pytest.approx(24 / 40), pytest.approx(30 / 40)]}]
    (compare,) = board["compare"]
    entry = compare["table"]["tasks"]["arith_mini"]
    assert entry["arms"]["llf-dpo"]["mean"] == pytest.approx(0.65) and entry["paired"][0]["diff"] == pytest.approx(0.1)
    assert f"{trained['label']} vs its base {base['label']}: arith_mini / numeric +0.150" in to_markdown(loaded)
    if browser_missing():
        pytest.skip(browser_missing())
    path = root / "board.html"
    path.write_text(render_html(loaded), encoding="utf-8")
    with chromium_session() as driver:
        driver.get(file_url(path))
        wait_for(driver, "document.body.dataset.state === 'ready'")
        texts = driver.execute_script("return [...document.querySelectorAll('#overview .delta')].map(e => e.textContent)")
        table = driver.execute_script("return document.getElementById('compare').textContent")
    assert texts == ["vs base +0.150", "vs base +0.050", "vs base +0.250", "vs base +0.100"]
    assert "llf-dpo − binary-dpo: +0.100" in table and "0.650 [" in table
