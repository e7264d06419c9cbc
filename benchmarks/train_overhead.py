"""Training overhead against TRL. Three parts, each side of a comparison in a fresh process:

    python benchmarks/train_overhead.py --part dpo|ppo|all|gpu [--model DIR | --shape NAME [--tokenizer DIR]]
        [--steps N] [--batch-size N] [--max-length N] [--repeats N] [--completion-tokens N]
        [--activation-checkpointing]
        [--ppo-iterations N] [--ppo-batch-size N] [--ppo-response-length N] [--num-generations N]
        [--device cuda|cpu] [--dtype bf16|fp32] [--sides dpo-trl,dpo-ours,...] [--side-timeout S] [--budget S]
        [--json PATH]

--part dpo: the same DPO config through `eval_anything.align`'s dpo stage and through TRL's DPOTrainer called
directly, on the CPU in float32. Both sides load the model from the same folder, train on the same preference
pairs (prompts rendered with the model's chat template) with the same DPOConfig values, and save the trained
model; timed from before the model loads to after it is saved (Python imports excluded, they are the same).
Our side also fingerprints its inputs, renders prompts through the hf backend's InputProcessor, and writes the
manifest, metrics file and lineage. Prints samples/s of each and the ratio (ours / TRL); the goal is >= 0.95.
Default model: the embedded SmolLM2-135M-Instruct. Defaults: 8 steps x batch 2, max_length 256. --repeats N
runs both sides N times, the order swapped each time, so a shared machine's load falls on both alike.

Activation (gradient) checkpointing is set explicitly and equally on every side (off unless
--activation-checkpointing): TRL 1.16's configs turn it on by default (trl/trainer/base_config.py,
`gradient_checkpointing=True`, which transformers 5 copies into `activation_checkpointing` when that is unset),
our stages default to off. Metrics go to no tracker on either side (report_to none).

--part ppo: PPO's data-parallel scaling, samples/s of the ppo stage's iterations on 2 gloo processes over 1.
The same policy, the reward model a sequence-classification head on the same weights (random head: the
benchmark times the work, not the learning). Each process runs `ppo-batch-size` prompts per iteration (so 2
processes do twice the samples per iteration); timed over `ppo-iterations` iterations after one warm-up
iteration, between barriers, model loading excluded. Each process gets cores / processes threads. Goal: 2
processes >= 1.6 x the samples/s of 1. Defaults: 4 iterations x 4 prompts, 16 new tokens. --part all: dpo and ppo.

--part gpu (one CUDA GPU; --device cpu smoke-runs it here): five sides, each a fresh process with its own
timeout (--side-timeout), the JSON file (--json) rewritten after each:
    dpo-trl    TRL's DPOTrainer called directly         dpo-ours   our `align dpo` stage (train_dpo)
    rloo-trl   TRL's RLOOTrainer called directly        rloo-ours  our `align rloo` stage (train_rloo)
    ppo-ours   our `align ppo` stage (train_ppo: GAE with a critic started from the reward model)
Same model folder, data and lengths on every side: DPO pairs whose chosen and rejected answers are filled to
--completion-tokens tokens; RL prompts from the same questions, `ppo-batch-size` completions per step
(rloo: ppo-batch-size / num-generations prompts x num-generations; ppo: ppo-batch-size prompts x 1) of up to
`ppo-response-length` sampled tokens (a random model seldom samples EOS, so completions run to the limit on
every side), `ppo-iterations` optimiser steps, one pass over each rollout, KL coefficient 0.04, the reward
model a random score head on the policy's weights. Precision: --dtype (bf16 on cuda). Our stages get
`dtype: bf16` (and `master_weights: fp32` where the config has that knob): the trained weights stay fp32 under
bf16 autocast, frozen models (references, the scoring reward model) load in bf16. The TRL sides do the same
work: they load the trained model in fp32 and set bf16=True, load the reward model in bf16, and have TRL build
its references in bf16 (model_init_kwargs, as align/train.py's reference_loading does). The JSON records each
side's trained-weight dtype (read from the model that trains) and our stages' precision record, so a reader
can check that the two sides match.
Measured per side:
    trained tokens   the non-padding tokens (attention_mask's sum) of every forward pass of the trained causal LM
                     that builds a gradient: DPO's chosen + rejected sequences, RL's prompt + completion; not
                     generation, reference or reward passes (found by a forward hook on the outermost causal LM)
    tokens/s         trained tokens after the first training forward over the time from its end to the last
                     one's end (CUDA synchronised at each): the steady rate, warm-up, loading and saving excluded
    end-to-end       wall time from before the model loads to after the trained model is saved (imports excluded)
    peak memory      torch.cuda.max_memory_allocated on cuda; ru_maxrss (the whole process) on cpu
Defaults on cuda, sized to about 3 minutes for all five sides on an H200 with a ~0.5B model (the default
--shape qwen2.5-0.5b, built by random_model.py before the sides start): DPO 40 steps x 8 pairs, 224-token
answers, max_length 512; RL 8 steps x 32 completions of 64 tokens, 4 generations per prompt; at most 180 s
per side and 450 s for all (--budget; a side not started in time is recorded as not run), so one call of the
device tool (about 9 minutes a command) always returns the JSON.
On cpu: --shape tiny, DPO 2 x 2, 16-token answers; RL 2 x 4 completions of 8 tokens, 2 generations.

On the GPU machine (no network), benchmarks/device/session.sh runs this part after installing the wheels that
benchmarks/device/fetch_wheels.sh gathers and building the model; by hand, after the same preparation:
    python benchmarks/train_overhead.py --part gpu --model DIR --json $OUT/train_overhead.json
Give --budget a little less than the command's own limit, so the table is printed before that limit ends it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from timing import command_line, machine, markdown_table, spread, today  # benchmarks/timing.py, beside this script

from eval_anything.rundir import write_json_atomic

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
PPO_PROMPTS = [q for q, _, _ in QUESTIONS]
GPU_SIDES = ("dpo-trl", "dpo-ours", "rloo-trl", "rloo-ours", "ppo-ours")
DEFAULTS = {
    "dpo": dict(steps=8, batch_size=2, max_length=256, completion_tokens=None),
    "ppo": dict(ppo_iterations=4, ppo_batch_size=4, ppo_response_length=16),
    "gpu-cuda": dict(shape="qwen2.5-0.5b", dtype="bf16", steps=40, batch_size=8, max_length=512,
                     completion_tokens=224, ppo_iterations=8, ppo_batch_size=32, ppo_response_length=64,
                     num_generations=4, side_timeout=180, budget=450),
    "gpu-cpu": dict(shape="tiny", dtype="fp32", steps=2, batch_size=2, max_length=128, completion_tokens=16,
                    ppo_iterations=2, ppo_batch_size=4, ppo_response_length=8, num_generations=2,
                    side_timeout=300, budget=0),
}


@dataclass(frozen=True)
class Settings:
    """What every side of a comparison trains with (written to the work folder for the side processes)."""

    model: str
    device: str = "cpu"
    """cuda or cpu; on cpu the side processes see no GPU."""
    dtype: str = "fp32"
    """bf16 (trained weights fp32 under bf16 autocast) or fp32."""
    activation_checkpointing: bool = False
    steps: int = 8
    batch_size: int = 2
    max_length: int = 256
    rl_steps: int = 8
    rl_completions: int = 32
    """Completions per optimiser step on every RL side."""
    num_generations: int = 4
    response_length: int = 64
    beta: float = 0.04
    """The RL sides' KL coefficient (DPO keeps beta 0.1)."""
    learning_rate: float = 1e-6


def write_pairs(path: Path, count: int, fill: Callable[[str], str] = lambda text: text) -> None:
    with path.open("w") as handle:
        for i in range(count):
            q, good, bad = QUESTIONS[i % len(QUESTIONS)]
            handle.write(json.dumps({"id": f"p{i}", "prompt": q, "chosen": fill(good), "rejected": fill(bad)}) + "\n")


def write_prompts(path: Path, count: int) -> None:
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": PPO_PROMPTS[i % len(PPO_PROMPTS)]}) + "\n"
                            for i in range(count)))


def filler(tokenizer: Any, tokens: int) -> Callable[[str], str]:
    """A function that repeats a sentence until it is `tokens` tokens long (whole repeats, then cut)."""
    def fill(text: str) -> str:
        ids: list[int] = []
        while len(ids) < tokens:
            ids += tokenizer(text + " ", add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[:tokens])
    return fill


def checkpointing_flag(config_class: type, on: bool) -> dict[str, bool]:
    """Activation checkpointing for a TRL/transformers config class, under the name its version reads
    (transformers 5.2x renamed gradient_checkpointing; TRL's own default for the old name is True)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on}


def our_knobs(config_class: type, s: Settings) -> dict[str, Any]:
    """The precision and logging keys every one of our stages gets."""
    knobs = {"dtype": s.dtype, "gradient_checkpointing": s.activation_checkpointing, "report_to": "none",
             "seed": 42}
    if "master_weights" in {f.name for f in config_class.fields()}:
        knobs["master_weights"] = "fp32"
    return knobs


def trl_knobs(config_class: type, s: Settings, out: Path) -> dict[str, Any]:
    """The TRL config values our stages set through align/train.py's training_arguments and reference_loading:
    under bf16, the reference TRL builds loads in bf16 (model_init_kwargs; TRL would copy the fp32 policy's
    dtype, and logs that it ignores model_init_kwargs for a policy given as a model, but loads the reference
    with them)."""
    frozen = {"model_init_kwargs": {"dtype": "bfloat16"}} if s.dtype == "bf16" else {}
    return dict(output_dir=str(out / "checkpoints"), logging_steps=1, report_to="none", bf16=s.dtype == "bf16",
                fp16=False, seed=42, save_strategy="no", use_cpu=s.device == "cpu", disable_tqdm=True,
                dataloader_num_workers=0, save_total_limit=2, learning_rate=s.learning_rate,
                **checkpointing_flag(config_class, s.activation_checkpointing), **frozen)


# -- the sides (each runs in its own process; imports come before the clock) --------------------------------

def dpo_ours(s: Settings, work: Path) -> dict[str, Any]:
    from eval_anything.align.config import DPOConfig
    from eval_anything.align.train import train_dpo
    import datasets, peft, transformers, trl  # noqa: F401,E401  imported before the clock, as on the TRL side
    from trl import DPOConfig as _, DPOTrainer as _t  # noqa: F401  (trl imports lazily)

    config = DPOConfig.from_dict({"model": s.model, "pairs": str(work / "pairs.jsonl"),
                                  "output_dir": str(work / "dpo-ours"), "max_steps": s.steps,
                                  "batch_size": s.batch_size, "max_length": s.max_length,
                                  "learning_rate": s.learning_rate, **our_knobs(DPOConfig, s)})
    started = time.perf_counter()
    result = train_dpo(config)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "samples": s.steps * s.batch_size, "precision": result.manifest.get("precision"),
            "train_samples_per_second": result.manifest["final_metrics"].get("train_samples_per_second")}


def dpo_trl(s: Settings, work: Path) -> dict[str, Any]:
    import peft  # noqa: F401  (TRL imports it too; kept outside the clock on both sides)
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    out = work / "dpo-trl"
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(s.model)
    policy = AutoModelForCausalLM.from_pretrained(s.model, dtype=torch.float32)
    rows = []
    for line in (work / "pairs.jsonl").read_text().splitlines():
        record = json.loads(line)
        rows.append({"prompt": chat_prompt(tokenizer, record["prompt"]), "chosen": record["chosen"],
                     "rejected": record["rejected"]})
    args = DPOConfig(max_steps=s.steps, per_device_train_batch_size=s.batch_size, beta=0.1, max_length=s.max_length,
                     **trl_knobs(DPOConfig, s, out))
    trainer = DPOTrainer(model=policy, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    metrics = trainer.train().metrics
    trainer.save_model(str(out / "model"))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "samples": s.steps * s.batch_size,
            "train_samples_per_second": metrics.get("train_samples_per_second")}


def chat_prompt(tokenizer: Any, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)


def rloo_ours(s: Settings, work: Path) -> dict[str, Any]:
    from eval_anything.align.config import RLOOConfig
    from eval_anything.align.rl import train_rloo
    import datasets, peft, transformers, trl  # noqa: F401,E401
    from trl import RLOOConfig as _, RLOOTrainer as _t  # noqa: F401

    config = RLOOConfig.from_dict({"model": s.model, "reward_model": s.model, "prompts": str(work / "prompts.jsonl"),
                                   "output_dir": str(work / "rloo-ours"), "max_steps": s.rl_steps,
                                   "batch_size": s.rl_completions, "num_generations": s.num_generations,
                                   "max_completion_length": s.response_length, "beta": s.beta,
                                   "learning_rate": s.learning_rate, **our_knobs(RLOOConfig, s)})
    started = time.perf_counter()
    result = train_rloo(config)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "samples": s.rl_steps * s.rl_completions, "precision": result.manifest.get("precision")}


def rloo_trl(s: Settings, work: Path) -> dict[str, Any]:
    import peft  # noqa: F401
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import RLOOConfig, RLOOTrainer

    out = work / "rloo-trl"
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(s.model)
    policy = AutoModelForCausalLM.from_pretrained(s.model, dtype=torch.float32)
    frozen = torch.bfloat16 if s.dtype == "bf16" else torch.float32
    reward = AutoModelForSequenceClassification.from_pretrained(s.model, num_labels=1, dtype=frozen)
    reward.config.pad_token_id = tokenizer.pad_token_id
    prompts = [json.loads(line)["prompt"] for line in (work / "prompts.jsonl").read_text().splitlines()]
    args = RLOOConfig(max_steps=s.rl_steps, per_device_train_batch_size=s.rl_completions,
                      num_generations=s.num_generations, max_completion_length=s.response_length, beta=s.beta,
                      **trl_knobs(RLOOConfig, s, out))
    trainer = RLOOTrainer(model=policy, reward_funcs=[reward], args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_list([{"prompt": chat_prompt(tokenizer, p)} for p in prompts]),
                          reward_processing_classes=[tokenizer])
    trainer.train()
    trainer.save_model(str(out / "model"))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "samples": s.rl_steps * s.rl_completions}


def ppo_ours(s: Settings, work: Path) -> dict[str, Any]:
    from eval_anything.align.config import PPOConfig
    from eval_anything.align.ppo import train_ppo

    config = PPOConfig.from_dict({"model": s.model, "reward_model": s.model, "prompts": str(work / "prompts.jsonl"),
                                  "output_dir": str(work / "ppo-ours"), "max_steps": s.rl_steps,
                                  "batch_size": s.rl_completions, "response_length": s.response_length,
                                  "ppo_epochs": 1, "mini_batches": 1, "kl_coef": s.beta,
                                  "learning_rate": s.learning_rate, **our_knobs(PPOConfig, s)})
    started = time.perf_counter()
    result = train_ppo(config)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "samples": s.rl_steps * s.rl_completions, "precision": result.manifest.get("precision")}


SIDES: dict[str, Callable[[Settings, Path], dict[str, Any]]] = {
    "dpo-trl": dpo_trl, "dpo-ours": dpo_ours, "rloo-trl": rloo_trl, "rloo-ours": rloo_ours, "ppo-ours": ppo_ours}


class TrainedTokens:
    """Counts the tokens of the forward passes of the trained causal LM that build a gradient, each with the
    time it ended. A hook on every module finds that model (the first causal LM called with gradients on),
    then hands over to a hook on it alone, so the other models' passes cost nothing after the first step."""

    def __init__(self, cuda: bool) -> None:
        import torch
        from transformers import GenerationMixin

        self.torch, self.causal_lm, self.cuda = torch, GenerationMixin, cuda
        self.calls: list[tuple[float, int]] = []
        self.trained_dtype: str | None = None
        self.handle = torch.nn.modules.module.register_module_forward_hook(self._find, with_kwargs=True)

    def _find(self, module: Any, args: Any, kwargs: Any, output: Any) -> None:
        if not self.torch.is_grad_enabled() or not isinstance(module, self.causal_lm):
            return
        self.handle.remove()
        self.handle = module.register_forward_hook(self._count, with_kwargs=True)
        self.trained_dtype = str(next(module.parameters()).dtype).removeprefix("torch.")
        self._count(module, args, kwargs, output)

    def _count(self, module: Any, args: Any, kwargs: Any, output: Any) -> None:
        if not self.torch.is_grad_enabled():
            return
        mask = kwargs.get("attention_mask")
        tokens = int(mask.sum()) if mask is not None else kwargs.get("input_ids", args[0] if args else None).numel()
        if self.cuda:
            self.torch.cuda.synchronize()
        self.calls.append((time.perf_counter(), tokens))

    def summary(self) -> dict[str, Any]:
        steady = sum(n for _, n in self.calls[1:])
        span = self.calls[-1][0] - self.calls[0][0] if len(self.calls) > 1 else 0.0
        return {"trained_tokens": sum(n for _, n in self.calls), "training_forwards": len(self.calls),
                "steady_tokens_per_second": steady / span if span > 0 else None, "trained_dtype": self.trained_dtype}


def run_side(name: str, work: Path) -> None:
    """One side in this process: its result, token counts and peak memory to WORK/NAME.json."""
    import resource

    import torch
    import transformers

    s = Settings(**json.loads((work / "settings.json").read_text()))
    cuda = s.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    counter = TrainedTokens(cuda)
    result = SIDES[name](s, work)
    result.update(counter.summary())
    result["tokens_per_second_end_to_end"] = result["trained_tokens"] / result["wall_s"]
    if cuda:
        result.update(peak_memory_mib=torch.cuda.max_memory_allocated() / 2**20,
                      peak_memory_source="torch.cuda.max_memory_allocated", device_name=torch.cuda.get_device_name())
    else:
        result.update(peak_memory_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      peak_memory_source="ru_maxrss", device_name="cpu")
    import trl

    result["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}
    (work / f"{name}.json").write_text(json.dumps(result, indent=1))


def side_process(name: str, work: Path, s: Settings, timeout: float) -> dict[str, Any]:
    """Runs one side in a fresh process; its result, or what went wrong."""
    env = dict(os.environ)
    if s.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # our stages pick CUDA whenever they see it
    command = [sys.executable, __file__, "--arm", name, "--workdir", str(work)]
    shutil.rmtree(work / name, ignore_errors=True)  # our stages skip a folder they already completed
    (work / f"{name}.json").unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return {"error": f"timed out after {timeout:.0f} s", "stderr_tail": _text(exc.stderr)[-3000:]}
    if done.returncode != 0 or not (work / f"{name}.json").exists():
        return {"error": f"exit status {done.returncode}", "stderr_tail": done.stderr[-3000:]}
    return {**json.loads((work / f"{name}.json").read_text()), "process_s": time.perf_counter() - started}


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def write_json(path: Path | None, report: dict[str, Any]) -> None:
    if path is not None:
        write_json_atomic(path, report)


# -- the dpo part ----------------------------------------------------------------------------------------------

def results_table(s: Settings, runs: list[dict[str, dict]]) -> tuple[list[str], list[list[str]]]:
    """docs/performance.md's columns: end-to-end samples/s (and wall time) of each side, ratio ours / TRL, one
    row per repeat (each run holds the sides' results under "ours" and "trl")."""
    samples = s.steps * s.batch_size
    rows = []
    for number, run in enumerate(runs, 1):
        ours, trl = (samples / run[arm]["wall_s"] for arm in ("ours", "trl"))
        rows.append([f"{number} ({run['order']} first)", f"{ours:.2f} samples/s ({run['ours']['wall_s']:.1f} s)",
                     f"{trl:.2f} samples/s ({run['trl']['wall_s']:.1f} s)", f"{ours / trl:.3f}"])
    return ["run", "`align dpo`", "TRL `DPOTrainer`", "ratio"], rows


def dpo_part(args: argparse.Namespace) -> None:
    """`repeats` runs of both sides, the order swapped each time (trl first, then ours first, ...), so a
    shared machine's load falls on both alike."""
    s = Settings(model=args.model, steps=args.steps, batch_size=args.batch_size, max_length=args.max_length,
                 activation_checkpointing=args.activation_checkpointing)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "settings.json").write_text(json.dumps(dataclasses.asdict(s)))
        write_pairs(work / "pairs.jsonl", s.steps * s.batch_size)
        for repeat in range(args.repeats):
            order = ("trl", "ours") if repeat % 2 == 0 else ("ours", "trl")
            run: dict[str, Any] = {"order": order[0]}
            for arm in order:
                result = side_process(f"dpo-{arm}", work, s, timeout=3600)
                if "error" in result:
                    raise SystemExit(f"dpo-{arm} failed: {result['error']}\n{result['stderr_tail']}")
                run[arm] = result
            runs.append(run)
            print_dpo_run(s, run)
    ratios = sorted(run["trl"]["wall_s"] / run["ours"]["wall_s"] for run in runs)
    print(f"model {s.model}, {s.steps} steps x batch {s.batch_size}, max_length {s.max_length}, activation "
          f"checkpointing {'on' if s.activation_checkpointing else 'off'} on both sides; ratio ours/trl "
          f"{spread(ratios, '{:.3f}')} over {len(runs)} run{'s' if len(runs) > 1 else ''} (goal >= 0.95)")
    markdown_table(TITLE, *results_table(s, runs))


def print_dpo_run(s: Settings, run: dict[str, Any]) -> None:
    samples = s.steps * s.batch_size
    for arm in ("trl", "ours"):
        r = run[arm]
        print(f"  {arm:<4}  {samples / r['wall_s']:6.2f} samples/s end to end ({r['wall_s']:.1f} s); trainer loop "
              f"{r['train_samples_per_second']} samples/s; {r['trained_tokens']} trained tokens, weights "
              f"{r['trained_dtype']}", flush=True)
    print(f"  ratio ours/trl: {run['trl']['wall_s'] / run['ours']['wall_s']:.3f}", flush=True)


# -- the ppo part (data parallelism) ----------------------------------------------------------------------------

def run_ppo_worker(model: str, workdir: Path, iterations: int, batch: int, response_length: int) -> dict:
    """One process of the PPO arm (RANK/WORLD_SIZE in the environment when there are 2)."""
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
    started = time.perf_counter()
    for _ in range(iterations):
        trainer.step(next(batches)[1])
    trainer.accelerator.wait_for_everyone()
    wall = time.perf_counter() - started
    if dist.is_initialized():
        dist.destroy_process_group()
    return {"wall_s": wall, "samples": iterations * batch * trainer.world, "world": trainer.world}


def run_ppo_arm(model: str, workdir: Path, processes: int, args: argparse.Namespace) -> dict:
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


def ppo_part(args: argparse.Namespace) -> None:
    ppo = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_prompts(work / "prompts.jsonl", len(PPO_PROMPTS))
        for processes in (1, 2):
            ppo[processes] = run_ppo_arm(args.model, work, processes, args)
    for processes, r in ppo.items():
        print(f"  ppo {processes} process{'es' if processes > 1 else ''}: "
              f"{r['samples'] / r['wall_s']:.2f} samples/s ({r['wall_s']:.1f} s)")
    markdown_table("PPO data parallelism", *ppo_table(args, ppo))


# -- the gpu part ------------------------------------------------------------------------------------------------

def gpu_settings(args: argparse.Namespace) -> Settings:
    if args.ppo_batch_size % args.num_generations:
        raise SystemExit(f"--ppo-batch-size {args.ppo_batch_size} must be a multiple of --num-generations "
                         f"{args.num_generations} (RLOO compares the completions of one prompt)")
    return Settings(model=args.model, device=args.device, dtype=args.dtype,
                    activation_checkpointing=args.activation_checkpointing, steps=args.steps,
                    batch_size=args.batch_size, max_length=args.max_length, rl_steps=args.ppo_iterations,
                    rl_completions=args.ppo_batch_size, num_generations=args.num_generations,
                    response_length=args.ppo_response_length)


def prepare_gpu_work(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The model folder (random weights of --shape unless --model) and the data every side reads."""
    from transformers import AutoTokenizer

    import random_model  # benchmarks/random_model.py, beside this script

    described: dict[str, Any] = {"path": args.model}
    if args.model is None:
        tokenizer_dir = args.tokenizer or random_model.embedded_tokenizer_dir()
        args.model = str(work / "model")
        parameters = random_model.build(args.shape, Path(args.model), Path(tokenizer_dir))
        described = {"path": "random weights", "shape": args.shape, "parameters": parameters}
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    write_pairs(work / "pairs.jsonl", args.steps * args.batch_size, filler(tokenizer, args.completion_tokens))
    write_prompts(work / "prompts.jsonl", args.ppo_iterations * args.ppo_batch_size)
    return described


def gpu_part(args: argparse.Namespace) -> None:
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA GPU here; use --device cpu for a smoke run")
    sides = [side.strip() for side in args.sides.split(",")] if args.sides else list(GPU_SIDES)
    unknown = [side for side in sides if side not in SIDES]
    if unknown:
        raise SystemExit(f"--sides: unknown side {unknown[0]!r}; choose from {', '.join(GPU_SIDES)}")
    report: dict[str, Any] = {"benchmark": "train_overhead --part gpu", "date": today(), "machine": machine(),
                              "command": command_line(), "sides": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report["model"] = prepare_gpu_work(args, work)
        s = gpu_settings(args)
        report["settings"] = dataclasses.asdict(s)
        (work / "settings.json").write_text(json.dumps(report["settings"]))
        write_json(args.json, report)
        deadline = time.monotonic() + args.budget if args.budget else None
        for side in sides:
            timeout = args.side_timeout if deadline is None else min(args.side_timeout, deadline - time.monotonic())
            if timeout <= 0:
                report["sides"][side] = {"error": f"not run: the --budget of {args.budget:.0f} s was spent"}
                write_json(args.json, report)
                continue
            print(f"{side}: running (timeout {timeout:.0f} s)", flush=True)
            report["sides"][side] = side_process(side, work, s, timeout)
            write_json(args.json, report)
            print(f"{side}: {describe(report['sides'][side])}", flush=True)
    markdown_table("Training against TRL on one device", *gpu_table(s, report["sides"]))


def describe(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"FAILED ({r['error']}): {r.get('stderr_tail', '')[-600:]}"
    steady = r["steady_tokens_per_second"]
    return (f"{r['trained_tokens']} trained tokens, {steady:.0f} tokens/s steady" if steady else
            f"{r['trained_tokens']} trained tokens") + (f", {r['wall_s']:.1f} s end to end, "
                                                         f"peak {r['peak_memory_mib']:.0f} MiB, "
                                                         f"trained weights {r['trained_dtype']}")


def gpu_table(s: Settings, sides: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """One row per side: tokens trained, steady tokens/s (ratio to TRL's side of the same method), end-to-end
    wall, peak memory."""
    rows = []
    for side, r in sides.items():
        if "error" in r:
            rows.append([side, "—", r["error"], "—", "—", "—"])
            continue
        baseline = sides.get("dpo-trl" if side.startswith("dpo") else "rloo-trl", {})
        ratio = (f"{r['steady_tokens_per_second'] / baseline['steady_tokens_per_second']:.2f}"
                 if r.get("steady_tokens_per_second") and baseline.get("steady_tokens_per_second") else "—")
        rows.append([side, str(r["trained_tokens"]), f"{r['steady_tokens_per_second'] or 0:.0f}", ratio,
                     f"{r['wall_s']:.1f} s", f"{r['peak_memory_mib']:.0f} MiB ({r['peak_memory_source']})"])
    return (["side", "trained tokens", "tokens/s (steady)", "ratio to TRL", "end to end", "peak memory"], rows)


# -- command line --------------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "dpo", "ppo", "gpu"), default="all", help="which benchmark to run")
    parser.add_argument("--model", help="a transformers model folder (default: the embedded SmolLM2-135M-Instruct; "
                        "--part gpu: random weights of --shape)")
    parser.add_argument("--shape", help="--part gpu: random_model.py's shape (qwen2.5-0.5b on cuda, tiny on cpu)")
    parser.add_argument("--tokenizer", type=Path, help="--part gpu: the tokenizer folder of the random model "
                        "(default: the embedded model's)")
    parser.add_argument("--steps", type=int, help="DPO optimiser steps")
    parser.add_argument("--batch-size", type=int, help="DPO pairs per step")
    parser.add_argument("--max-length", type=int, help="DPO tokens kept per sequence")
    parser.add_argument("--repeats", type=int, default=1, help="--part dpo: runs of both sides, the order "
                        "swapped each time")
    parser.add_argument("--completion-tokens", type=int, help="--part gpu: tokens of each chosen and rejected answer")
    parser.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction, default=False,
                        help="activation checkpointing on every side (default: off on every side)")
    parser.add_argument("--ppo-iterations", type=int, help="PPO iterations; --part gpu: every RL side's steps")
    parser.add_argument("--ppo-batch-size", type=int, help="prompts per PPO process; --part gpu: completions per "
                        "RL step")
    parser.add_argument("--ppo-response-length", type=int, help="tokens sampled per response")
    parser.add_argument("--num-generations", type=int, help="--part gpu: RLOO completions per prompt")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="--part gpu: where the sides train")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), help="--part gpu: training precision (bf16 on cuda)")
    parser.add_argument("--sides", help=f"--part gpu: some of {','.join(GPU_SIDES)} (default: all, in that order)")
    parser.add_argument("--side-timeout", type=float, help="--part gpu: seconds each side may take")
    parser.add_argument("--budget", type=float, help="--part gpu: seconds all sides may take together (the sides "
                        "left when it is spent are recorded as not run; default on cuda 450, on cpu none)")
    parser.add_argument("--json", type=Path, help="--part gpu: write the results here (rewritten after each side)")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    parts = [f"gpu-{args.device}"] if args.part == "gpu" else ["dpo", "ppo"] if args.part == "all" else [args.part]
    for part in parts:
        for key, value in DEFAULTS[part].items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    return args


def main() -> None:
    args = parse_args()
    if args.arm == "ppo":
        print(json.dumps(run_ppo_worker(args.model, args.workdir, args.ppo_iterations, args.ppo_batch_size,
                                        args.ppo_response_length)))
        return
    if args.arm:  # a side process: reads WORKDIR/settings.json, writes WORKDIR/ARM.json
        run_side(args.arm, args.workdir)
        return
    if args.part == "gpu":
        gpu_part(args)
        return
    if args.model is None:
        from eval_anything.models.embedded import embedded_model_dir

        args.model = str(embedded_model_dir())
    if args.part in ("all", "ppo"):
        ppo_part(args)
    if args.part in ("all", "dpo"):
        dpo_part(args)


if __name__ == "__main__":
    main()
