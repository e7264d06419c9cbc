"""align: the LLF pipeline end to end on a tiny random Llama (SmolLM2's tokenizer), resume of
generation and training stages, and lineage flowing into the evaluation run."""
import json
import subprocess
import sys

import pytest

from eval_anything.align.config import DPOConfig, SampleConfig
from eval_anything.align.records import write_jsonl

LLF_DATA = [
    {"id": "q1", "prompt": "What is 2+2?", "response": "5", "critique": "Wrong sum: 2+2 is 4.", "refinement": "4"},
    {"id": "q2", "prompt": "Name the colour of the sky.", "response": "Green", "critique": "The sky is blue.",
     "refinement": "Blue"},
    {"id": "q3", "prompt": "What is 3*3?", "response": "6", "critique": "3*3 is 9; 6 is 3+3.", "refinement": "9"},
    {"id": "q4", "prompt": "Capital of France?", "response": "Lyon", "critique": "The capital is Paris.",
     "refinement": "Paris"},
]


@pytest.fixture
def llf_data(tmp_path):
    path = tmp_path / "llf.jsonl"
    write_jsonl(path, LLF_DATA)
    return path


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "eval_anything", *args], capture_output=True, text=True,
                          timeout=400, cwd=cwd)


def test_llf_end_to_end_through_the_cli(tmp_path, llf_data, tiny_llama_dir):
    (tmp_path / "llf.yaml").write_text(f"""
model: {tiny_llama_dir}
data: {llf_data}
work_dir: {tmp_path / 'work'}
tasks: [arith_mini]
eval_limit: 2
eval_max_new_tokens: 4
eval_output_dir: {tmp_path / 'runs'}
preset: smoke
critic_sft: {{max_steps: 4, learning_rate: 0.001, max_length: 128}}
sample: {{max_new_tokens: 6, temperature: 1.0}}
critique: {{max_new_tokens: 6}}
refine: {{max_new_tokens: 6, temperature: 1.0, seed: 7}}
dpo: {{max_steps: 2, learning_rate: 0.001, max_length: 128}}
""")
    result = cli("align", "llf", "--config", "llf.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    work = tmp_path / "work"
    critic = json.loads((work / "critic-sft" / "manifest.json").read_text())
    assert critic["status"] == "complete" and critic["losses"][-1] < critic["losses"][0]
    refined = [json.loads(line) for line in (work / "refine" / "records.jsonl").read_text().splitlines()]
    assert len(refined) == 4 and all(r["critique"] is not None and r["refinement"] is not None for r in refined)
    pairs = [json.loads(line) for line in (work / "pairs" / "records.jsonl").read_text().splitlines()]
    assert pairs and all(set(p) >= {"prompt", "chosen", "rejected"} for p in pairs)
    assert {p["chosen"] for p in pairs} <= {r["refinement"] for r in refined}
    dpo = json.loads((work / "dpo" / "manifest.json").read_text())
    assert dpo["global_step"] == 2 and dpo["lineage"]["method"] == "llf-dpo"
    # the checkpoint was evaluated by the runner; its run directory carries the lineage
    runs = {json.loads((d / "manifest.json").read_text())["model"]["reference"]: d for d in (tmp_path / "runs").iterdir()}
    trained = json.loads((runs[str(work / "dpo" / "model")] / "manifest.json").read_text())
    lineage = trained["lineage"]
    assert lineage["base_model"] == str(tiny_llama_dir) and lineage["method"] == "llf-dpo"
    assert lineage["config_hash"] == dpo["config_hash"] and str(llf_data) in lineage["data"]
    assert lineage["inputs"][0]["kind"] == "pairs" and lineage["pipeline"]["data"]["sha256"]
    assert json.loads((work / "dpo" / "model" / "eval_anything_lineage.json").read_text()) == lineage
    results = json.loads((runs[str(work / "dpo" / "model")] / "results.json").read_text())
    assert results["tasks"]["arith_mini"]["counts"]["samples"] == 2
    base = json.loads((runs[str(tiny_llama_dir)] / "manifest.json").read_text())
    assert base["lineage"] is None  # the untrained base, beside it on the leaderboard
    # and `eval-anything run` on the checkpoint, as a user would, carries it too
    run = cli("run", "--model", str(work / "dpo" / "model"), "--tasks", "arith_mini", "--limit", "1",
              "--max-new-tokens", "2", "--output-dir", "cli-runs", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    (cli_run,) = (tmp_path / "cli-runs").iterdir()
    assert json.loads((cli_run / "manifest.json").read_text())["lineage"] == lineage
    # rerunning the finished pipeline does nothing
    stamp = (work / "dpo" / "model" / "model.safetensors").stat().st_mtime_ns
    again = cli("align", "llf", "--config", "llf.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("nothing to do") == 6
    assert (work / "dpo" / "model" / "model.safetensors").stat().st_mtime_ns == stamp


def test_killed_generation_stage_resumes_without_duplicates(tmp_path, llf_data, tiny_llama_dir, monkeypatch):
    from eval_anything.align.generate import run_sample
    from eval_anything.models.hf import HFModel

    config = SampleConfig.from_dict({"policy": str(tiny_llama_dir), "prompts": str(llf_data),
                                     "output_dir": str(tmp_path / "sample"), "batch_size": 2, "max_new_tokens": 4})
    real = HFModel.generate
    calls = []

    def dies_on_second_batch(self, requests):
        calls.append(len(requests))
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for a kill after the first batch was made durable
        return real(self, requests)

    monkeypatch.setattr(HFModel, "generate", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        run_sample(config)
    monkeypatch.setattr(HFModel, "generate", real)
    artifact = run_sample(config)
    manifest = artifact.manifest()
    ids = [json.loads(line)["id"] for line in artifact.records_path.read_text().splitlines()]
    assert sorted(ids) == ["q1", "q2", "q3", "q4"] and manifest["resumed"] == 2 and manifest["generated"] == 2
    assert manifest["inputs"][2]["path"] == "prompts:sample"  # what the policy was shown is part of the identity
    assert run_sample(config).manifest()["finished_at"] == manifest["finished_at"]  # complete: nothing to do


def test_training_resumes_from_its_last_checkpoint(tmp_path, tiny_llama_dir):
    from transformers import TrainerCallback

    from eval_anything.align.train import train_dpo

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"id": r["id"], "prompt": r["prompt"], "chosen": r["refinement"], "rejected": r["response"]}
                        for r in LLF_DATA])
    config = DPOConfig.from_dict({"model": str(tiny_llama_dir), "pairs": str(pairs), "output_dir": str(tmp_path / "dpo"),
                                  "max_steps": 3, "save_steps": 2, "learning_rate": 1e-3, "max_length": 64})

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        train_dpo(config, callbacks=[Crash()])
    assert (tmp_path / "dpo" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "dpo" / "model").exists()
    class Count(TrainerCallback):
        steps = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    result = train_dpo(config, callbacks=[Count()])
    assert result.resumed_from.endswith("checkpoint-2") and result.manifest["global_step"] == 3
    assert Count.steps == [3] and len(result.losses) == 3  # only step 3 trained again; the log is continuous
    assert (result.model_dir / "eval_anything_lineage.json").exists()
