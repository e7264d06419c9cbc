"""align compare: every arm on one seeded draw of the same labelled rows, k seeds, evaluated by a
scripted judge, summarised as means with intervals and a paired test; LLF data refused as binary."""
import hashlib
import json
from pathlib import Path

import pytest

from eval_anything.align.config import CompareConfig, ConfigError
from eval_anything.align.records import write_jsonl
from stub_openai import StubServer, completion, user_text

ROWS = [("What is 2+2?", "5", "4", "Wrong sum: 2+2 is 4."), ("Name the colour of the sky.", "Green", "Blue", "It is blue."),
        ("What is 3*3?", "6", "9", "3*3 is 9."), ("Capital of France?", "Lyon", "Paris", "The capital is Paris.")]


def judge_reply(call, body, auth):
    """A rating that depends on what is judged, so arms can differ."""
    score = int(hashlib.sha256(user_text(body).encode()).hexdigest(), 16) % 10 + 1
    return 200, {}, completion(f"<Explanation>: [[ok]]\n<Score>: [[{score}]]"), 0.0


@pytest.fixture
def published(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": p, "response_1": worse, "response_2": better, "overall_response": 2,
             "text_critique_1": critique, "text_critique_2": "fine", "overall_textfeedback": critique}
            for p, worse, better, critique in ROWS]
    data = tmp_path / "text-to-text" / "train.parquet"
    data.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), data)
    return data


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_compare_shares_one_budget_across_arms_over_seeds(tmp_path, tiny_llama_dir, published, monkeypatch):
    from eval_anything.align.compare import run_compare

    monkeypatch.setenv("EVAL_ANYTHING_CACHE", str(tmp_path / "cache"))
    llf_layout = tmp_path / "llf.jsonl"
    write_jsonl(llf_layout, [{"id": f"q{i}", "prompt": p, "response": w, "critique": c, "refinement": b}
                             for i, (p, w, b, c) in enumerate(ROWS)])
    base = {"model": str(tiny_llama_dir), "data": str(published), "work_dir": str(tmp_path / "cmp"), "budget": 3,
            "seeds": 2, "tasks": ["amg_if_text"], "eval_limit": 2, "eval_max_new_tokens": 3,
            "eval_output_dir": str(tmp_path / "runs"), "preset": "smoke",
            "critic_sft": {"max_steps": 1, "learning_rate": 1e-3, "max_length": 96},
            "sample": {"max_new_tokens": 4}, "critique": {"max_new_tokens": 4},
            "refine": {"max_new_tokens": 4, "temperature": 1.0}, "dpo": {"max_steps": 1, "max_length": 96}}
    with pytest.raises(ConfigError, match="dpo.seed cannot be set"):
        CompareConfig.from_dict({**base, "dpo": {"seed": 3}})
    with pytest.raises(ValueError, match=f"binary_data {llf_layout} is in the LLF layout.*response_1, response_2"):
        run_compare(CompareConfig.from_dict({**base, "binary_data": str(llf_layout)}))
    # the paper's 25%-vs-100%: the binary arms get more rows, the LLF rows being the first of theirs
    from eval_anything.align.compare import draw, usable_rows

    wider = CompareConfig.from_dict({**base, "budget": 1, "binary_budget": 4})
    drawn = draw(wider, usable_rows(wider), 5, tmp_path / "wider")
    llf_prompts, binary_prompts = ([r["prompt"] for r in read(p)] for p in (drawn.rows, drawn.binary))
    assert len(llf_prompts) == 1 and len(binary_prompts) == 4 and binary_prompts[:1] == llf_prompts
    with StubServer(judge_reply) as server:
        summary = run_compare(CompareConfig.from_dict({**base, "judge": "openai:stub-judge",
                                                       "judge_args": {"base_url": server.base_url}}))
    work = tmp_path / "cmp"
    drawn = []
    for entry in summary["seeds"]:
        folder = work / f"seed-{entry['seed']}"
        rows, binary = read(folder / "rows.jsonl"), read(folder / "binary.jsonl")
        # one budget: the critic trains on the drawn rows only, and both arms see the same prompts
        assert len(rows) == 3 and [r["prompt"] for r in rows] == [b["prompt"] for b in binary]
        critic = json.loads((folder / "llf" / "critic-sft" / "manifest.json").read_text())
        assert critic["inputs"][0]["path"] == str((folder / "rows.jsonl").resolve())
        assert {r["prompt"] for r in read(folder / "llf" / "sample" / "records.jsonl")} == {r["prompt"] for r in rows}
        assert all(b["chosen"] == dict((p, better) for p, _, better, _ in ROWS)[b["prompt"]] for b in binary)
        configs = {arm: json.loads((folder / arm / "dpo" / "manifest.json").read_text())["config"]
                   for arm in ("llf-dpo", "binary-dpo")}
        same = [{k: v for k, v in c.items() if k not in ("pairs", "output_dir")} for c in configs.values()]
        assert same[0] == same[1] and same[0]["seed"] == entry["seed"]  # only the feedback differs
        drawn.append([r["id"] for r in rows])
    assert len(summary["seeds"]) == 2 and drawn[0] != drawn[1]  # another seed, another draw
    # every evaluation is a run directory whose lineage names its arm and seed
    for arm in ("llf-dpo", "binary-dpo"):
        lineages = [json.loads((tmp_path / "runs" / d.split("/")[-1] / "manifest.json").read_text())["lineage"]
                    for d in summary["runs"][arm]]
        assert [(l["method"], l["pipeline"]["arm"], l["pipeline"]["seed"]) for l in lineages] == \
            [(arm, arm, s["seed"]) for s in summary["seeds"]]
    # the table: each arm's mean is the mean over seeds of its runs' task score, inside its interval
    entry = summary["table"]["tasks"]["amg_if_text"]
    for arm, dirs in summary["runs"].items():
        values = [json.loads((tmp_path / "runs" / d.split("/")[-1] / "results.json").read_text())
                  ["tasks"]["amg_if_text"]["metrics"][entry["metric"]]["value"] for d in dirs]
        stats = entry["arms"][arm]
        assert stats["mean"] == pytest.approx(sum(values) / len(values))
        assert stats["low"] <= stats["mean"] <= stats["high"] and stats["n"] == 2 * len(dirs)
    (paired,) = entry["paired"]
    assert (paired["llf"], paired["binary"], paired["n"]) == ("llf-dpo", "binary-dpo", 4)
    assert paired["diff"] == pytest.approx(entry["arms"]["llf-dpo"]["mean"] - entry["arms"]["binary-dpo"]["mean"])
    assert 0 < paired["p"] <= 1
    table = (work / "compare.md").read_text()
    assert "| amg_if_text | judge_rating |" in table and "| llf-dpo − binary-dpo |" in table


def test_the_ppo_arms_train_a_reward_model_on_the_same_rows_and_are_evaluated(tmp_path, tiny_llama_dir, published,
                                                                               monkeypatch):
    from eval_anything.align.compare import run_compare

    monkeypatch.setenv("EVAL_ANYTHING_CACHE", str(tmp_path / "cache"))
    config = {"model": str(tiny_llama_dir), "data": str(published), "work_dir": str(tmp_path / "cmp"), "budget": 2,
              "seeds": 1, "arms": ["llf-ppo", "binary-ppo"], "tasks": ["amg_if_text"], "eval_limit": 1,
              "eval_max_new_tokens": 3, "eval_output_dir": str(tmp_path / "runs"), "preset": "smoke",
              "critic_sft": {"max_steps": 1, "max_length": 96}, "sample": {"max_new_tokens": 3},
              "critique": {"max_new_tokens": 3}, "refine": {"max_new_tokens": 3},
              "rm": {"max_steps": 1, "max_length": 96},
              "ppo": {"max_steps": 1, "batch_size": 2, "response_length": 3, "ppo_epochs": 1}}
    with StubServer(judge_reply) as server:
        summary = run_compare(CompareConfig.from_dict({**config, "judge": "openai:stub-judge",
                                                       "judge_args": {"base_url": server.base_url}}))
    (entry,) = summary["seeds"]
    folder = tmp_path / "cmp" / f"seed-{entry['seed']}"
    # each arm's reward model learns its own feedback on the drawn rows, and PPO rolls out on those rows' prompts
    for arm, pairs in (("llf-ppo", folder / "llf" / "pairs"), ("binary-ppo", folder / "binary.jsonl")):
        rm = json.loads((folder / arm / "rm" / "manifest.json").read_text())["config"]
        ppo = json.loads((folder / arm / "ppo" / "manifest.json").read_text())["config"]
        assert Path(rm["pairs"]) == pairs and Path(ppo["reward_model"]) == folder / arm / "rm" / "model"
        assert Path(ppo["prompts"]) == folder / "rows.jsonl" and ppo["seed"] == rm["seed"] == entry["seed"]
        (run,) = summary["runs"][arm]
        lineage = json.loads((tmp_path / "runs" / run.split("/")[-1] / "manifest.json").read_text())["lineage"]
        assert (lineage["method"], lineage["pipeline"]["arm"]) == (arm, arm)
    (paired,) = summary["table"]["tasks"]["amg_if_text"]["paired"]
    assert (paired["llf"], paired["binary"]) == ("llf-ppo", "binary-ppo")
