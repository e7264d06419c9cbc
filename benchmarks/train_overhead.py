"""Training overhead: the same DPO config through `eval_anything.align`'s dpo stage and through
TRL's DPOTrainer called directly, one run each, each in a fresh process; and PPO's data-parallel
scaling: samples/s of the ppo stage's iterations on 2 gloo processes over 1 process.

    python benchmarks/train_overhead.py [--model DIR] [--steps 8] [--batch-size 2] [--max-length 256]
        [--part all|dpo|ppo] [--ppo-iterations 4] [--ppo-batch-size 4] [--ppo-response-length 16]

Both sides load the model from the same folder in float32, train on the same preference pairs
(prompts rendered with the model's chat template), with the same DPOConfig values, and save the
trained model. Timed from before the model loads to after it is saved (Python imports excluded,
they are the same). Our side also fingerprints its inputs, renders prompts through the hf
backend's InputProcessor, and writes the manifest and lineage. Prints samples/s of each and the
ratio (ours / TRL); the goal is >= 0.95. Default model: the embedded SmolLM2-135M-Instruct.

PPO: the same policy, the reward model a sequence-classification head on the same weights (random
head: the benchmark times the work, not the learning). Each process runs `ppo-batch-size` prompts
per iteration (so 2 processes do twice the samples per iteration); timed over `ppo-iterations`
iterations after one warm-up iteration, between barriers, model loading excluded. Each process gets
cores / processes threads. Goal: 2 processes >= 1.6 x the samples/s of 1.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import markdown_table  # benchmarks/timing.py, beside this script

TITLE = "Training overhead"
QUESTIONS = [
    ("What is 12 + 30?", "12 + 30 = 42.", "It is 52."),
    ("Name the largest planet.", "Jupiter is the largest planet.", "Mars."),
    ("Translate 'bonjour' to English.", "'Bonjour' means 'hello'.", "It means goodbye."),
    ("What colour do you get mixing blue and yellow?", "Green.", "Purple."),
    ("How many legs does a spider have?", "A spider has eight legs.", "Six legs."),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius.", "50 degrees Celsius."),
    ("Who wrote 'Hamlet'?", "William Shakespeare wrote Hamlet.", "Charles Dickens."),
    ("What is the square root of 81?", "The square root of 81 is 9.", "It is 8."),
]


def write_pairs(path: Path, count: int) -> None:
    with path.open("w") as handle:
        for i in range(count):
            q, good, bad = QUESTIONS[i % len(QUESTIONS)]
            handle.write(json.dumps({"id": f"p{i}", "prompt": q, "chosen": good, "rejected": bad}) + "\n")


def run_ours(model: str, pairs: Path, out: Path, steps: int, batch: int, max_length: int) -> dict:
    from eval_anything.align.config import DPOConfig
    from eval_anything.align.train import train_dpo
    import datasets, peft, transformers, trl  # noqa: F401,E401  imported before the clock, as on the TRL side
    from trl import DPOConfig as _, DPOTrainer as _t  # noqa: F401  (trl imports lazily)

    config = DPOConfig.from_dict({"model": model, "pairs": str(pairs), "output_dir": str(out), "max_steps": steps,
                                  "batch_size": batch, "max_length": max_length, "learning_rate": 5e-6})
    started = time.perf_counter()
    result = train_dpo(config)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "train_samples_per_second": result.manifest["final_metrics"].get("train_samples_per_second")}


def run_trl(model: str, pairs: Path, out: Path, steps: int, batch: int, max_length: int) -> dict:
    import peft  # noqa: F401  (TRL imports it too; kept outside the clock on both sides)
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    rows = []
    for line in pairs.read_text().splitlines():
        record = json.loads(line)
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": record["prompt"]}],
                                               add_generation_prompt=True, tokenize=False)
        rows.append({"prompt": prompt, "chosen": record["chosen"], "rejected": record["rejected"]})
    args = DPOConfig(output_dir=str(out / "checkpoints"), max_steps=steps, per_device_train_batch_size=batch,
                     learning_rate=5e-6, beta=0.1, max_length=max_length, logging_steps=1, report_to="none",
                     bf16=False, fp16=False, seed=42, save_strategy="no", use_cpu=True, disable_tqdm=True,
                     dataloader_num_workers=0, save_total_limit=2)
    trainer = DPOTrainer(model=policy, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    metrics = trainer.train().metrics
    trainer.save_model(str(out / "model"))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "train_samples_per_second": metrics.get("train_samples_per_second")}


PPO_PROMPTS = [q for q, _, _ in QUESTIONS]


def run_ppo_worker(model: str, workdir: Path, iterations: int, batch: int, response_length: int) -> dict:
    """One process of the PPO arm (RANK/WORLD_SIZE in the environment when there are 2)."""
    import time as clock

    import torch.distributed as dist

    from eval_anything.align.config import PPOConfig
    from eval_anything.align.ppo import PPOTrainer

    config = PPOConfig.from_dict({"model": model, "reward_model": model, "prompts": str(workdir / "prompts.jsonl"),
                                  "output_dir": str(workdir / "ppo"), "max_steps": iterations + 1,
                                  "batch_size": batch, "response_length": response_length, "ppo_epochs": 1,
                                  "learning_rate": 1e-6})
    trainer = PPOTrainer(config, [])
    trainer.prompts.extend(trainer.tokenizer.apply_chat_template([{"role": "user", "content": q}],
                                                                 add_generation_prompt=True, tokenize=False)
                           for q in PPO_PROMPTS)
    batches = trainer.batches()
    trainer.step(next(batches)[1])  # warm-up
    trainer.accelerator.wait_for_everyone()
    started = clock.perf_counter()
    for _ in range(iterations):
        trainer.step(next(batches)[1])
    trainer.accelerator.wait_for_everyone()
    wall = clock.perf_counter() - started
    if dist.is_initialized():
        dist.destroy_process_group()
    return {"wall_s": wall, "samples": iterations * batch * trainer.world, "world": trainer.world}


def run_ppo_arm(model: str, workdir: Path, processes: int, args: argparse.Namespace) -> dict:
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    command = [sys.executable, __file__, "--arm", "ppo", "--workdir", str(workdir), "--model", model,
               "--ppo-iterations", str(args.ppo_iterations), "--ppo-batch-size", str(args.ppo_batch_size),
               "--ppo-response-length", str(args.ppo_response_length)]
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    if processes > 1:
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(processes))
    children = [subprocess.Popen(command, env={**env, **({"RANK": str(r), "LOCAL_RANK": str(r)} if processes > 1
                                                          else {})},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(processes)]
    outputs = [child.communicate() for child in children]
    for child, (out, err) in zip(children, outputs):
        if child.returncode != 0:
            raise SystemExit(f"ppo arm ({processes} processes) failed:\n{out[-2000:]}\n{err[-3000:]}")
    return json.loads(outputs[0][0].strip().splitlines()[-1])


def ppo_table(args: argparse.Namespace, results: dict[int, dict]) -> tuple[list[str], list[list[str]]]:
    one, two = (results[n]["samples"] / results[n]["wall_s"] for n in (1, 2))
    return (["run", "1 process", "2 gloo processes", "ratio (goal ≥ 1.6)"],
            [[f"{args.ppo_iterations} iterations × {args.ppo_batch_size} prompts per process, "
              f"{args.ppo_response_length} new tokens",
              f"{one:.2f} samples/s ({results[1]['wall_s']:.1f} s)",
              f"{two:.2f} samples/s ({results[2]['wall_s']:.1f} s)", f"{two / one:.2f}"]])


def results_table(steps: int, batch: int, max_length: int, results: dict[str, dict]
                  ) -> tuple[list[str], list[list[str]]]:
    """docs/performance.md's columns: end-to-end samples/s (and wall time) of each side, ratio ours / TRL
    (`results` holds each child's JSON line under "ours" and "trl")."""
    samples = steps * batch
    ours, trl = (samples / results[arm]["wall_s"] for arm in ("ours", "trl"))
    return (["run", "`align dpo`", "TRL `DPOTrainer`", "ratio"],
            [[f"{steps} step{'s' if steps != 1 else ''} × batch {batch}, max_length {max_length}",
              f"{ours:.2f} samples/s ({results['ours']['wall_s']:.1f} s)",
              f"{trl:.2f} samples/s ({results['trl']['wall_s']:.1f} s)", f"{ours / trl:.3f}"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a transformers model folder (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--part", choices=("all", "dpo", "ppo"), default="all", help="which benchmark to run")
    parser.add_argument("--ppo-iterations", type=int, default=4)
    parser.add_argument("--ppo-batch-size", type=int, default=4)
    parser.add_argument("--ppo-response-length", type=int, default=16)
    parser.add_argument("--arm", choices=("ours", "trl", "ppo"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm == "ppo":
        print(json.dumps(run_ppo_worker(args.model, args.workdir, args.ppo_iterations, args.ppo_batch_size,
                                        args.ppo_response_length)))
        return
    if args.arm:  # a child process: one side, result as JSON on the last line
        run = run_ours if args.arm == "ours" else run_trl
        result = run(args.model, args.workdir / "pairs.jsonl", args.workdir / args.arm, args.steps, args.batch_size,
                     args.max_length)
        print(json.dumps(result))
        return
    if args.model is None:
        from eval_anything.models.embedded import embedded_model_dir

        args.model = str(embedded_model_dir())
    if args.part in ("all", "ppo"):
        ppo = {}
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "prompts.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": q}) + "\n"
                                                        for i, q in enumerate(PPO_PROMPTS)))
            for processes in (1, 2):
                ppo[processes] = run_ppo_arm(args.model, work, processes, args)
        for processes, r in ppo.items():
            print(f"  ppo {processes} process{'es' if processes > 1 else ''}: "
                  f"{r['samples'] / r['wall_s']:.2f} samples/s ({r['wall_s']:.1f} s)")
        markdown_table("PPO data parallelism", *ppo_table(args, ppo))
    if args.part == "ppo":
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_pairs(work / "pairs.jsonl", args.steps * args.batch_size)
        for arm in ("trl", "ours"):
            out = subprocess.run([sys.executable, __file__, "--arm", arm, "--workdir", str(work), "--model", args.model,
                                  "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                                  "--max-length", str(args.max_length)], capture_output=True, text=True, check=True)
            results[arm] = json.loads(out.stdout.strip().splitlines()[-1])
    samples = args.steps * args.batch_size
    print(f"model {args.model}, {args.steps} steps x batch {args.batch_size}, max_length {args.max_length}")
    for arm in ("trl", "ours"):
        r = results[arm]
        print(f"  {arm:<4}  {samples / r['wall_s']:6.2f} samples/s end to end ({r['wall_s']:.1f} s); "
              f"trainer loop {r['train_samples_per_second']} samples/s")
    ratio = (samples / results["ours"]["wall_s"]) / (samples / results["trl"]["wall_s"])
    print(f"  ratio ours/trl: {ratio:.3f} (goal >= 0.95)")
    markdown_table(TITLE, *results_table(args.steps, args.batch_size, args.max_length, results))


if __name__ == "__main__":
    main()
