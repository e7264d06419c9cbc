"""align ppo on 2 gloo processes under DDP and, at the same time, a second pair under DeepSpeed:
disjoint prompt shards and per-rank sampling, and one optimizer step on 2 processes x batch 2 equals
one step of 1 process on the 4 rollouts together; the DeepSpeed pair steps under ZeRO-2, then ZeRO-3 (15 s with
both pairs, 6 s with DDP alone, on 2 cores).

The file doubles as the worker: `python THIS --worker OUT MODE` is one rank (RANK/WORLD_SIZE in the env).
"""
import os
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


def worker(out: Path, mode: str) -> None:
    """One rank of the DDP pair, or of the DeepSpeed pair, which steps under ZeRO-2 and then ZeRO-3 in the same
    processes (a pair of processes costs about 8 s on 2 cores)."""
    import torch
    from accelerate.state import AcceleratorState

    for stage in DEEPSPEED if mode == "deepspeed" else [mode]:
        AcceleratorState._reset_state()  # a fresh accelerator for each stage; the process group stays
        deepspeed = {"deepspeed": str(DEEPSPEED[stage])} if stage in DEEPSPEED else {}
        trainer = _trainer(_config(out.parent, 2, f"ppo-{stage}", **deepspeed))
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


def test_two_gloo_processes_shard_prompts_and_step_like_one_process_on_the_doubled_batch(setup):
    import torch

    from eval_anything.align.ppo import Samples

    root, shards = setup, setup / "shards"
    shards.mkdir()
    # DeepSpeed's CPU communication op is JIT-built and needs g++ and ninja
    modes = ["ddp"] + (["deepspeed"] if shutil.which("g++") and shutil.which("ninja") else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2", "DS_ACCELERATOR": "cpu",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    ports = {mode: str(_free_port()) for mode in modes}
    ranks = [subprocess.Popen([sys.executable, __file__, "--worker", str(shards), mode], cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**env, "MASTER_PORT": ports[mode], "RANK": str(r), "LOCAL_RANK": str(r)})
             for mode in modes for r in range(2)]
    logs = [p.communicate(timeout=400)[0] for p in ranks]
    assert all(p.returncode == 0 for p in ranks), "\n".join(log[-3000:] for log in logs)
    rank0, rank1 = (torch.load(shards / f"ddp-rank{r}.pt") for r in range(2))
    assert rank0["world"] == rank1["world"] == 2 and not rank0["deepspeed"]
    assert not set(rank0["prompts"]) & set(rank1["prompts"])  # disjoint shards
    assert len(set(rank0["prompts"] + rank1["prompts"])) == 4

    single = _trainer(_config(root, 4, "ppo-1"))
    assert single.world == 1
    _, prompts = next(single.batches())
    assert prompts == rank0["prompts"] + rank1["prompts"]  # the same global batch, in rank order
    first_seed_sample = single.generate(rank0["prompts"])  # rank 0 samples with the run's seed, rank 1 with seed + 1
    assert torch.equal(first_seed_sample.responses, rank0["responses"])
    assert not torch.equal(rank0["responses"][: len(rank1["responses"])], rank1["responses"])

    tokenizer = single.tokenizer
    query = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    width = max(rank0["responses"].shape[1], rank1["responses"].shape[1])

    def widen(t, fill):
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill)

    samples = Samples(prompts, query["input_ids"], query["attention_mask"],
                      torch.cat([widen(rank0["responses"], tokenizer.pad_token_id),
                                 widen(rank1["responses"], tokenizer.pad_token_id)]),
                      torch.cat([widen(rank0["mask"], 0), widen(rank1["mask"], 0)]),
                      torch.cat([rank0["truncated"], rank1["truncated"]]))
    before = _policy_weights(single)
    single.learn(single.evaluate(samples))
    after = _policy_weights(single)
    moved = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert moved > LEARNING_RATE / 2  # the step did something
    for mode in ["ddp"] + (list(DEEPSPEED) if "deepspeed" in modes else []):
        result = torch.load(shards / f"{mode}-rank0.pt")
        assert result["deepspeed"] == (mode in DEEPSPEED) and result["sharded"] == (mode == "zero3")
        assert torch.equal(result["responses"], rank0["responses"])  # same seed, same weights: same samples
        worst = max(float((after[k] - result["weights"][k]).abs().max()) for k in before)
        assert worst < LEARNING_RATE * 0.01, (mode, worst, moved)  # measured: about 2e-7


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(Path(sys.argv[2]), sys.argv[3])
