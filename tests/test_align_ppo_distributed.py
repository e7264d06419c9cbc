"""align ppo on 2 gloo processes through the CLI (`accelerate launch -m eval_anything align ppo`, DDP) with
in-loop evaluation and, at the same time, a second pair under DeepSpeed: disjoint prompt shards and per-rank
sampling, and one optimizer step on 2 processes x batch 2 equals one step of 1 process on the 4 rollouts
together; the DeepSpeed pair steps under ZeRO-2, then ZeRO-3. The CLI run's in-loop evaluation is one run
directory that both ranks filled, and its metrics are means over the processes, written once.

The file doubles as the worker: `python THIS --worker OUT MODE` is one rank (RANK/WORLD_SIZE in the env).
"""
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PROMPTS = [f"Question {i}: is {i} even?" for i in range(8)]
LEARNING_RATE = 1e-3


DEEPSPEED = {mode: Path(__file__).resolve().parent.parent / "eval_anything" / "align" / "deepspeed" / f"{mode}.json"
             for mode in ("zero2", "zero3")}


def _config(root: Path, batch_size: int, output: str, **changes):
    from eval_anything.align.config import PPOConfig

    return PPOConfig.from_dict({**changes,
        "model": str(root / "policy"), "reward_model": str(root / "reward"), "prompts": str(root / "prompts.jsonl"),
        "output_dir": str(root / output), "max_steps": 1, "learning_rate": LEARNING_RATE, "batch_size": batch_size,
        "response_length": 6, "ppo_epochs": 1, "mini_batches": 1, "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0, "max_grad_norm": None})


def _trainer(config):
    from eval_anything.align.ppo import PPOTrainer
    from eval_anything.align.records import LLFRecord
    from eval_anything.align.train import render_prompt

    trainer = PPOTrainer(config, [])
    trainer.prompts.extend(render_prompt(trainer.inputs, LLFRecord("x", p).parts())[0] for p in PROMPTS)
    return trainer


def _policy_weights(trainer):
    with trainer.whole_policy() as policy:  # under ZeRO-3 every rank gathers its shards
        return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def worker(out: Path) -> None:
    """One rank of the DeepSpeed pair, which steps under ZeRO-2 and then ZeRO-3 in the same processes (a pair
    of processes costs about 8 s on 2 cores)."""
    import torch
    from accelerate.state import AcceleratorState

    for stage in DEEPSPEED:
        AcceleratorState._reset_state()  # a fresh accelerator for each stage; the process group stays
        trainer = _trainer(_config(out.parent, 2, f"ppo-{stage}", deepspeed=str(DEEPSPEED[stage])))
        _, prompts = next(trainer.batches())
        samples = trainer.generate(prompts)
        trainer.learn(trainer.evaluate(samples))
        rank = trainer.rank
        weights = _policy_weights(trainer)
        # ZeRO-3 leaves each parameter's data empty outside a gather (its shard is elsewhere)
        sharded = any(getattr(p, "ds_numel", 0) > 0 and p.numel() == 0 for p in trainer.model.parameters())
        torch.save({"prompts": prompts, "responses": samples.responses, "mask": samples.mask,
                    "truncated": samples.truncated, "world": trainer.world, "deepspeed": trainer.deepspeed,
                    "sharded": sharded, "weights": weights if rank == 0 else None}, out / f"{stage}-rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_llama_dir, smollm2_dir):
    from tiny_models import make_tiny_llama_reward

    from eval_anything.align.records import write_jsonl

    root = tmp_path_factory.mktemp("ppo-dist")
    write_jsonl(root / "prompts.jsonl", [{"id": f"p{i}", "prompt": p} for i, p in enumerate(PROMPTS)])
    (root / "policy").symlink_to(tiny_llama_dir)
    make_tiny_llama_reward(root / "reward", smollm2_dir)
    return root


EVAL_LIMIT = 5
"""Odd: the ranks' shares of the in-loop evaluation differ in size."""


def _launch_cli(root: Path, env: dict) -> subprocess.Popen:
    """`accelerate launch` of `eval-anything align ppo --config` on 2 CPU processes (DDP over gloo), evaluating
    in the loop after its one iteration."""
    config = _config(root, 2, "ppo-cli", eval_every=1, eval_tasks=["arith_mini"], eval_limit=EVAL_LIMIT,
                     eval_max_new_tokens=3, eval_output_dir=str(root / "runs"))
    (root / "ppo.yaml").write_text(json.dumps(config.to_dict()))  # JSON is YAML
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "eval_anything", "align", "ppo",
               "--config", str(root / "ppo.yaml")]
    return subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**env, "ACCELERATE_USE_CPU": "true"})


def _deepspeed_pair(root: Path, shards: Path, env: dict) -> list[subprocess.Popen]:
    port = str(_free_port())
    return [subprocess.Popen([sys.executable, __file__, "--worker", str(shards)], cwd=root, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             env={**env, "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2", "DS_ACCELERATOR": "cpu",
                                  "MASTER_PORT": port, "RANK": str(r), "LOCAL_RANK": str(r)})
            for r in range(2)]


def _assert_one_in_loop_run(root: Path, log: str) -> None:
    """Both ranks evaluated into one complete run directory: each sample once, the lineage of step 1."""
    from eval_anything.align.metrics import read_metrics
    from eval_anything.tasks import Catalog

    (run_dir,) = (root / "runs").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["data_parallel"] == {"world_size": 2}
    lineage = manifest["lineage"]
    assert (lineage["base_model"], lineage["method"], lineage["step"]) == (str(root / "policy"), "ppo", 1)
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"
    records = [json.loads(line) for line in (run_dir / "samples" / "arith_mini.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [s.id for s in Catalog().tasks["arith_mini"].samples(EVAL_LIMIT)]
    assert not list((run_dir / "samples").glob("*.rank*"))  # the ranks' shards were merged
    assert [row["step"] for row in read_metrics(root / "ppo-cli" / "metrics.jsonl")] == [1]
    assert log.count("ppo: iteration 1 ") == 1 and log.count("in-loop evaluation at step 1") == 1


def test_two_gloo_processes_shard_prompts_and_step_like_one_process_on_the_doubled_batch(setup):
    import torch
    from accelerate.utils import set_seed
    from safetensors.torch import load_file

    from eval_anything.align.callback import EvalAnythingCallback
    from eval_anything.align.metrics import read_metrics
    from eval_anything.align.ppo import Samples, _evaluate_in_loop

    root, shards = setup, setup / "shards"
    shards.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EVAL_ANYTHING_RANK_TIMEOUT_S": "60",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    # DeepSpeed's CPU communication op is JIT-built and needs g++ and ninja
    deepspeed = bool(shutil.which("g++") and shutil.which("ninja"))
    processes = [_launch_cli(root, env)] + (_deepspeed_pair(root, shards, env) if deepspeed else [])
    logs = [p.communicate(timeout=400)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), "\n".join(log[-3000:] for log in logs)
    _assert_one_in_loop_run(root, logs[0])

    single = _trainer(_config(root, 4, "ppo-1"))
    assert single.world == 1
    _, prompts = next(single.batches())
    shard0, shard1 = prompts[:2], prompts[2:]  # the same global batch, in rank order
    rank0 = single.generate(shard0)  # rank 0 samples with the run's seed, rank 1 with seed + 1
    set_seed(single.config.seed + 1)
    rank1 = single.generate(shard1)
    assert not torch.equal(rank0.responses[: len(rank1.responses)], rank1.responses)

    tokenizer = single.tokenizer
    query = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    width = max(rank0.responses.shape[1], rank1.responses.shape[1])

    def widen(t, fill):
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill)

    samples = Samples(prompts, query["input_ids"], query["attention_mask"],
                      torch.cat([widen(rank0.responses, tokenizer.pad_token_id),
                                 widen(rank1.responses, tokenizer.pad_token_id)]),
                      torch.cat([widen(rank0.mask, 0), widen(rank1.mask, 0)]), torch.cat([rank0.truncated, rank1.truncated]))
    before = _policy_weights(single)
    record = single.learn(single.evaluate(samples))
    after = _policy_weights(single)
    moved = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert moved > LEARNING_RATE / 2  # the step did something
    (row,) = read_metrics(root / "ppo-cli" / "metrics.jsonl")
    # the score over both ranks' rollouts, not rank 0's alone (they differ: different responses)
    assert abs(row["score"] - record["score"]) < 1e-5 and row["response_length"] == record["response_length"]
    saved = load_file(root / "ppo-cli" / "model" / "model.safetensors")
    worst = max(float((after[k] - saved[k]).abs().max()) for k in saved)
    assert worst < LEARNING_RATE * 0.01, ("cli", worst, moved)
    for stage in DEEPSPEED if deepspeed else []:
        result, other = (torch.load(shards / f"{stage}-rank{r}.pt") for r in range(2))
        assert result["world"] == 2 and result["deepspeed"] and result["sharded"] == (stage == "zero3")
        assert (result["prompts"], other["prompts"]) == (shard0, shard1)  # disjoint shards
        assert torch.equal(result["responses"], rank0.responses)  # same seed, same weights: same samples
        assert torch.equal(other["responses"], rank1.responses)
        worst = max(float((after[k] - result["weights"][k]).abs().max()) for k in before)
        assert worst < LEARNING_RATE * 0.01, (stage, worst, moved)  # measured: about 2e-7

    # the in-loop evaluation leaves training's random state as it was (the runner seeds generation)
    state = torch.get_rng_state(), random.getstate()
    evaluator = EvalAnythingCallback(["arith_mini"], every=1, output_dir=root / "runs-1", limit=2, max_new_tokens=2)
    _evaluate_in_loop(single, [evaluator], 1, root / "ppo-1")
    assert len(evaluator.runs) == 1
    assert torch.equal(torch.get_rng_state(), state[0]) and random.getstate() == state[1]


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(Path(sys.argv[2]))
