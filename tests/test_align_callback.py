"""align: the in-loop evaluation callback evaluates the model in training, in memory, and scores
exactly what a separate run on the checkpoint saved at that step scores."""
import json

from eval_anything.align.config import DPOConfig
from eval_anything.align.records import write_jsonl

PAIRS = [{"id": f"p{i}", "prompt": prompt, "chosen": chosen, "rejected": rejected}
         for i, (prompt, chosen, rejected) in enumerate([("What is 2+2?", "4", "5"), ("What is 3+3?", "6", "9"),
                                                         ("What is 1+4?", "5", "3"), ("What is 2+5?", "7", "1")])]


def answers(run_dir):
    return {r["id"]: (r["outputs"][0]["text"], {name: s["value"] for name, s in r["scores"].items()})
            for r in map(json.loads, (run_dir / "samples" / "arith_mini.jsonl").read_text().splitlines())}


def test_in_loop_scores_equal_a_separate_run_on_the_saved_checkpoint(tmp_path, tiny_llama_dir):
    from eval_anything.align.callback import stage_callbacks
    from eval_anything.align.train import train_dpo
    from eval_anything.models import resolve_spec
    from eval_anything.runner import evaluate
    from eval_anything.settings import RunSettings
    from eval_anything.tasks import Catalog

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, PAIRS)
    config = DPOConfig.from_dict({"model": str(tiny_llama_dir), "pairs": str(pairs), "output_dir": str(tmp_path / "dpo"),
                                  "max_steps": 3, "save_steps": 2, "learning_rate": 1e-2, "max_length": 64,
                                  "eval_every": 2, "eval_tasks": ["arith_mini"], "eval_limit": 4,
                                  "eval_max_new_tokens": 4, "eval_output_dir": str(tmp_path / "runs")})
    (callback,) = stage_callbacks(config, "dpo")
    result = train_dpo(config, callbacks=[callback])
    assert result.manifest["global_step"] == 3  # training went on after the evaluation at step 2
    (in_loop,) = callback.runs
    manifest = json.loads((in_loop.run_dir / "manifest.json").read_text())
    lineage = manifest["lineage"]
    assert manifest["model"]["backend"] == "live"
    assert (lineage["base_model"], lineage["method"], lineage["step"]) == (str(tiny_llama_dir), "dpo", 2)
    assert lineage["config_hash"] == config.config_hash() and str(pairs) in lineage["data"]
    # a separate run on the step-2 checkpoint (linears unpacked, as the live model's are) answers the same
    settings = RunSettings(output_dir=tmp_path / "separate", limit=4, max_new_tokens=4)
    arith = Catalog().resolve("arith_mini")
    checkpoint = tmp_path / "dpo" / "checkpoints" / "checkpoint-2"
    separate = evaluate(resolve_spec(f"hf:{checkpoint}", {"packed_linears": False}), arith, settings)
    assert answers(in_loop.run_dir) == answers(separate.run_dir)
    assert in_loop.metrics["arith_mini"] == {m: v["value"] for m, v in
                                             separate.results["tasks"]["arith_mini"]["metrics"].items()}
    base = evaluate(resolve_spec(str(tiny_llama_dir), {"packed_linears": False}), arith, settings)
    assert answers(base.run_dir) != answers(in_loop.run_dir)  # it evaluated the trained weights, not the base's
