"""One Config dataclass per stage; YAML keys and CLI flags are derived from its fields.

Precedence: field defaults, then the YAML file (`--config`), then flags. Unknown YAML keys are
errors with a did-you-mean, never silently ignored. Nothing here imports torch.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

C = TypeVar("C", bound="StageConfig")


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the source and the key."""


def knob(default: Any, help: str, identity: bool = True) -> Any:
    """A config field with help text. `identity=False`: changing it does not change the result
    (batch size for generation, where outputs go), so it stays out of the config hash."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, "identity": identity})
    return field(default=default, metadata={"help": help, "identity": identity})


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the type a value converts to, whether None is allowed)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])[0], True
    return annotation, False


def _convert(name: str, annotation: Any, value: Any, source: str) -> Any:
    kind, optional = _base_type(annotation)
    if optional and isinstance(value, str) and value.lower() in ("none", "null", ""):
        value = None
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: {name} must not be empty")
    origin = typing.get_origin(kind)
    try:
        if origin in (list, tuple):
            (item,) = typing.get_args(kind)[:1] or (str,)
            items = value.split(",") if isinstance(value, str) else list(value)
            return [_convert(name, item, v.strip() if isinstance(v, str) else v, source) for v in items if v != ""]
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if kind in (int, float, str):
            return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name} must be {getattr(kind, '__name__', kind)}, got {value!r}") from None
    return value


@dataclass
class StageConfig:
    """Base of every stage's configuration."""

    STAGE = "stage"

    @classmethod
    def fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, source: str | None = None) -> C:
        """Build from a mapping; unknown keys and wrong types are errors naming `source` and the key."""
        source = source or cls.STAGE
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        names = [f.name for f in cls.fields()]
        unknown = [k for k in data if k.replace("-", "_") not in names]
        if unknown:
            hints_text = []
            for key in unknown:
                near = difflib.get_close_matches(key.replace("-", "_"), names, n=1)
                hints_text.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
            raise ConfigError(f"{source}: unknown key{'s' if len(unknown) > 1 else ''} " + ", ".join(hints_text)
                              + f"; {cls.STAGE} takes: " + ", ".join(names))
        values = {k.replace("-", "_"): _convert(k, hints[k.replace("-", "_")], v, source) for k, v in data.items()}
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ConfigError for inconsistent values; stages override."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self.fields()}

    def identity(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self.fields() if f.metadata.get("identity", True)}

    def config_hash(self) -> str:
        text = json.dumps({"stage": self.STAGE, **self.identity()}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)

    # -- command line -------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """`--config FILE` plus one flag per field (`--max-steps`); flags default to 'not given'."""
        parser.add_argument("--config", type=Path, metavar="YAML",
                            help=f"YAML file with {cls.STAGE} keys (flags override it)")
        hints = typing.get_type_hints(cls)
        for f in cls.fields():
            kind, _ = _base_type(hints[f.name])
            if kind is dict:
                continue  # nested sections (llf's per-stage keys) come from YAML only
            flag = "--" + f.name.replace("_", "-")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            help_text = f"{f.metadata.get('help', '')} (default: {default!r})".replace("%", "%%")
            if kind is bool:
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            else:
                metavar = "A,B" if typing.get_origin(kind) in (list, tuple) else f.name.upper()
                parser.add_argument(flag, default=None, metavar=metavar, help=help_text)

    @classmethod
    def from_args(cls: type[C], args: argparse.Namespace) -> C:
        data = load_yaml(args.config) if getattr(args, "config", None) else {}
        source = str(args.config) if getattr(args, "config", None) else "flags"
        for f in cls.fields():
            value = getattr(args, f.name, None)
            if value is not None:
                data[f.name] = value
        return cls.from_dict(data, source)


def load_yaml(path: Path | str) -> dict[str, Any]:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


# ---------------------------------------------------------------------------------------------
# Stage configurations
# ---------------------------------------------------------------------------------------------

@dataclass
class GeneratingStageConfig(StageConfig):
    """Knobs shared by the generation stages (sample, critique, refine)."""

    output_dir: str = knob("", "the stage's artefact folder (records.jsonl + manifest.json)", identity=False)
    max_new_tokens: int = knob(2048, "tokens generated per record (2048 in the authors' lang_feedback scripts)")
    temperature: float = knob(1.0, "sampling temperature; 0 is greedy (1.0 in the authors' scripts)")
    top_p: float = knob(1.0, "nucleus sampling mass")
    repetition_penalty: float = knob(1.1, "penalty on tokens already present; 1 is none (1.1 in the authors' scripts)")
    seed: int = knob(1234, "generation seed")
    batch_size: int = knob(8, "requests per generate() call", identity=False)
    video_frames: int = knob(8, "frames sampled from each video, as in `eval-anything run`")
    limit: int | None = knob(None, "only the first N records")

    def validate(self) -> None:
        if not self.output_dir:
            raise ConfigError(f"{self.STAGE}: output_dir is required")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError(f"{self.STAGE}: max_new_tokens and batch_size must be at least 1")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"{self.STAGE}: repetition_penalty must be positive (1 is no penalty)")


@dataclass
class SampleConfig(GeneratingStageConfig):
    """Stage 2: draw y ~ policy(. | x) for every prompt."""

    STAGE = "sample"
    policy: str = knob("embedded:smollm2-135m-instruct", "the policy: a model directory or BACKEND:REF")
    prompts: str = knob("", "LLF/prompt records: an artefact folder, a .jsonl, or align-anything .parquet")


@dataclass
class CritiqueConfig(GeneratingStageConfig):
    """Stage 3: c = critic(x, y)."""

    STAGE = "critique"
    critic: str = knob("", "the critic: a model directory (the critic-sft output's model/) or BACKEND:REF")
    responses: str = knob("", "the sample stage's artefact folder")


@dataclass
class RefineConfig(GeneratingStageConfig):
    """Stage 4: y* = policy(x, y, c)."""

    STAGE = "refine"
    max_new_tokens: int = knob(4096, "tokens generated per record (4096 in the authors' refine script)")
    policy: str = knob("embedded:smollm2-135m-instruct", "the policy that rewrites its answer")
    critiques: str = knob("", "the critique stage's artefact folder")


@dataclass
class PairsConfig(StageConfig):
    """Stage 5: chosen = refinement, rejected = original response."""

    STAGE = "pairs"
    refinements: str = knob("", "the refine stage's artefact folder")
    output_dir: str = knob("", "the pairs artefact folder", identity=False)
    keep_identical: bool = knob(False, "keep pairs whose refinement equals the response (normally dropped)")

    def validate(self) -> None:
        if not self.output_dir or not self.refinements:
            raise ConfigError("pairs: refinements and output_dir are required")


@dataclass
class TrainConfig(StageConfig):
    """Knobs shared by every trainer."""

    model: str = knob("embedded:smollm2-135m-instruct", "the model to train: a directory or embedded:NAME")
    output_dir: str = knob("", "where checkpoints/, model/ (the trained checkpoint) and manifest.json go",
                           identity=False)
    max_steps: int = knob(10, "optimizer steps")
    learning_rate: float = knob(5e-6, "peak learning rate")
    batch_size: int = knob(2, "examples per device per step")
    gradient_accumulation_steps: int = knob(1, "micro-batches per optimizer step")
    max_length: int | None = knob(512, "tokens kept per example (None: no truncation, needed with images)")
    seed: int = knob(42, "training seed")
    limit: int | None = knob(None, "train on the first N records only")
    lora: bool = knob(False, "train a LoRA adapter (merged into the saved checkpoint)")
    lora_r: int = knob(8, "LoRA rank")
    lora_alpha: int = knob(16, "LoRA alpha")
    lora_targets: list[str] = knob(["q_proj", "v_proj"], "LoRA target modules")
    save_steps: int = knob(0, "save a resumable checkpoint every N steps (0: only at the end)", identity=False)
    deepspeed: str | None = knob(None, "a DeepSpeed JSON config (e.g. one of eval_anything/align/deepspeed/)",
                                 identity=False)
    video_frames: int = knob(8, "frames sampled from each video, as in `eval-anything run`")
    dtype: str = knob("auto", "training precision: auto (bf16 on a GPU that has it, else fp16 on a GPU, "
                      "fp32 on CPU), bf16, fp16 or fp32")
    master_weights: str = knob("fp32", "under bf16, the dtype of the weights the optimizer updates: fp32 (mixed "
                               "precision) or bf16 (half the memory; updates under 1/256 of a weight are lost); "
                               "not with deepspeed, which keeps its own fp32 copy")
    gradient_checkpointing: bool = knob(False, "recompute activations in the backward pass (less memory)")
    quantization: str = knob("none", "load the frozen base in 4bit or 8bit for LoRA (needs bitsandbytes)")
    report_to: str = knob("auto", "where metrics also go: auto (tensorboard when installed, else none), "
                          "none, tensorboard, wandb", identity=False)

    def validate(self) -> None:
        from eval_anything.align.precision import DTYPES, MASTER_WEIGHTS, QUANTIZATIONS

        if not self.output_dir:
            raise ConfigError(f"{self.STAGE}: output_dir is required")
        if self.max_steps < 1 or self.batch_size < 1:
            raise ConfigError(f"{self.STAGE}: max_steps and batch_size must be at least 1")
        if self.dtype not in DTYPES:
            raise ConfigError(f"{self.STAGE}: dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.master_weights not in MASTER_WEIGHTS:
            raise ConfigError(f"{self.STAGE}: master_weights must be one of {', '.join(MASTER_WEIGHTS)}, "
                              f"got {self.master_weights!r}")
        if self.master_weights != "fp32" and self.deepspeed:
            raise ConfigError(f"{self.STAGE}: master_weights {self.master_weights} cannot be combined with deepspeed, "
                              "which keeps its own fp32 master copy; drop one of them")
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"{self.STAGE}: quantization must be one of {', '.join(QUANTIZATIONS)}, "
                              f"got {self.quantization!r}")
        if self.quantization != "none" and not self.lora:
            raise ConfigError(f"{self.STAGE}: quantization {self.quantization} loads a frozen base; set lora: true")
        if self.report_to not in ("auto", "none", "tensorboard", "wandb"):
            raise ConfigError(f"{self.STAGE}: report_to must be auto, none, tensorboard or wandb, got {self.report_to!r}")


@dataclass
class GeneratorTrainConfig(TrainConfig):
    """A trainer of a generative model, which can be evaluated on harness tasks as it trains (in memory,
    align/callback.py): critic-sft, dpo, ppo, rloo, grpo. Not rm: a reward model does not generate."""

    eval_every: int = knob(0, "evaluate the model in training every N steps on eval_tasks, in memory (0: never)",
                           identity=False)
    eval_tasks: list[str] = knob(["arith_mini"], "tasks of the in-loop evaluation", identity=False)
    eval_limit: int | None = knob(None, "in-loop evaluation: the first N items of each task", identity=False)
    eval_max_new_tokens: int | None = knob(None, "in-loop evaluation: override the tasks' generation length",
                                           identity=False)
    eval_output_dir: str = knob("runs", "where the in-loop evaluation run directories go", identity=False)

    def validate(self) -> None:
        super().validate()
        if self.eval_every < 0 or (self.eval_every and not self.eval_tasks):
            raise ConfigError(f"{self.STAGE}: eval_every must be 0 (no in-loop evaluation) or a step count "
                              "with eval_tasks")


@dataclass
class CriticSFTConfig(GeneratorTrainConfig):
    """Stage 1: supervised fine-tuning of the critic, minimising -log P(c | x, y)."""

    STAGE = "critic-sft"
    data: str = knob("", "LLF records with prompt, response and critique (.jsonl, artefact, or align-anything .parquet)")
    learning_rate: float = knob(1e-5, "peak learning rate")


@dataclass
class DPOConfig(GeneratorTrainConfig):
    """Stage 6: DPO on preference pairs (TRL DPOTrainer)."""

    STAGE = "dpo"
    pairs: str = knob("", "preference pairs: the pairs artefact, a .jsonl, or align-anything .parquet (binary)")
    beta: float = knob(0.1, "DPO beta (0.1 in the paper)")


@dataclass
class RMConfig(TrainConfig):
    """Reward model trained with -log sigmoid(r(chosen) - r(rejected)) (TRL RewardTrainer)."""

    STAGE = "rm"
    pairs: str = knob("", "preference pairs: the pairs artefact, a .jsonl, or align-anything .parquet (binary)")
    learning_rate: float = knob(1e-4, "peak learning rate")


@dataclass
class PPOConfig(GeneratorTrainConfig):
    """PPO against a trained reward model (hand-written on accelerate; see ppo.py)."""

    STAGE = "ppo"
    reward_model: str = knob("", "the rm stage's trained model directory")
    prompts: str = knob("", "prompt records (.jsonl, artefact, or align-anything .parquet)")
    learning_rate: float = knob(1e-5, "peak learning rate")
    batch_size: int = knob(4, "prompts per rollout")
    response_length: int = knob(16, "tokens sampled per response")
    temperature: float = knob(1.0, "rollout sampling temperature")
    ppo_epochs: int = knob(2, "optimisation passes over each rollout")
    mini_batches: int = knob(1, "minibatches per pass")
    clip_range: float = knob(0.2, "policy ratio clip")
    clip_range_value: float = knob(0.2, "value prediction clip")
    vf_coef: float = knob(0.1, "value loss weight")
    kl_coef: float = knob(0.05, "per-token KL penalty to the reference policy")
    gamma: float = knob(1.0, "discount")
    lam: float = knob(0.95, "GAE lambda")
    whiten_rewards: bool = knob(False, "whiten scores across the rollout")
    shared_trunk: bool = knob(False, "value head on the policy's trunk instead of a separate critic "
                              "initialised from the reward model")
    critic_learning_rate: float | None = knob(None, "the critic's peak learning rate (default: learning_rate)")
    max_grad_norm: float | None = knob(1.0, "clip the gradient norm to this (None: no clipping)")
    lr_scheduler_type: str = knob("cosine", "transformers scheduler: cosine, linear, constant_with_warmup, ...")
    warmup_ratio: float = knob(0.03, "share of the optimizer steps spent warming the learning rate up")
    normalize_reward: bool = knob(False, "normalise scores by the running mean and std of all scores so far")
    reward_clip: float | None = knob(50.0, "clip (normalised) scores to [-reward_clip, reward_clip]")
    missing_eos_penalty: float | None = knob(None, "subtract this from the score of a response with no EOS "
                                             "within response_length (None: score it as it is)")
    ptx_data: str | None = knob(None, "supervised records (prompt + response) mixed into every update (PTX)")
    ptx_coef: float = knob(16.0, "weight of the PTX language-modelling loss (16 in align-anything)")
    ptx_batch_size: int = knob(2, "PTX examples per update")
    critic_lora: bool = knob(False, "train a LoRA adapter on the critic's trunk too (with lora)")
    advantage_estimator: str = knob("gae", "gae (PPO with the critic), grpo (group-normalised scores, KL in the "
                                    "loss) or rloo (leave-one-out baseline, KL in the reward); no critic for those")
    num_generations: int = knob(1, "responses sampled per prompt (grpo and rloo need at least 2)")

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("ppo: warmup_ratio must be in [0, 1)")
        if self.advantage_estimator not in ("gae", "grpo", "rloo"):
            raise ConfigError(f"ppo: advantage_estimator must be gae, grpo or rloo, got {self.advantage_estimator!r}")
        if self.advantage_estimator != "gae" and self.num_generations < 2:
            raise ConfigError(f"ppo: advantage_estimator {self.advantage_estimator} compares the responses to one "
                              "prompt: set num_generations to 2 or more")
        if (self.batch_size * self.num_generations) % (self.mini_batches * self.gradient_accumulation_steps):
            raise ConfigError("ppo: batch_size x num_generations must be a multiple of "
                              "mini_batches x gradient_accumulation_steps")
        if self.critic_lora and (self.shared_trunk or not self.lora):
            raise ConfigError("ppo: critic_lora needs lora and a separate critic (shared_trunk: false)")


@dataclass
class RLConfig(GeneratorTrainConfig):
    """Knobs shared by the RL stages (RLOO, GRPO) rewarded by the trained reward model: TRL's trainers for
    text prompts, align/ppo.py's with that advantage estimator for prompts with media (align/rl.py)."""

    STAGE = "rl"
    reward_model: str = knob("", "the rm stage's trained model directory")
    prompts: str = knob("", "prompt records (.jsonl, artefact, or align-anything .parquet)")
    num_generations: int = knob(4, "completions per prompt")
    max_completion_length: int = knob(16, "tokens per completion")
    beta: float = knob(0.04, "KL coefficient")
    learning_rate: float = knob(1e-5, "peak learning rate")
    batch_size: int = knob(4, "completions per device per step (a multiple of num_generations)")


@dataclass
class RLOOConfig(RLConfig):
    """RLOO (REINFORCE leave-one-out) through TRL's RLOOTrainer (ours on media), rewarded by the trained
    reward model."""

    STAGE = "rloo"


@dataclass
class GRPOConfig(RLConfig):
    """GRPO (group-relative policy optimisation) through TRL's GRPOTrainer (ours on media), rewarded by the trained
    reward model."""

    STAGE = "grpo"


STAGE_CONFIGS: dict[str, type[StageConfig]] = {
    c.STAGE: c for c in (CriticSFTConfig, SampleConfig, CritiqueConfig, RefineConfig, PairsConfig,
                         DPOConfig, RMConfig, PPOConfig)
}


PRESETS_DIR = Path(__file__).parent / "configs"
"""Shipped presets: NAME.yaml, one mapping of stage keys per stage section."""


def preset_sections(name: str | None) -> dict[str, dict[str, Any]]:
    """The stage sections of the shipped preset `name` ({} for None)."""
    if not name:
        return {}
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        near = difflib.get_close_matches(name, known, n=1)
        raise ConfigError(f"unknown preset {name!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                          + f"; shipped presets: {', '.join(known)}")
    return load_yaml(path)


@dataclass
class LLFConfig(StageConfig):
    """The whole pipeline: critic-sft -> sample -> critique -> refine -> pairs -> dpo (or rm + ppo)
    -> evaluation. Per-stage sections hold that stage's keys; paths between stages are filled in."""

    STAGE = "llf"
    model: str = knob("embedded:smollm2-135m-instruct", "the policy to align (directory or embedded:NAME)")
    critic_model: str | None = knob(None, "the critic's starting model (default: model)")
    data: str = knob("", "LLF records for the critic (.jsonl or align-anything .parquet)")
    prompts: str | None = knob(None, "prompts to sample from (default: the prompts of data)")
    work_dir: str = knob("llf-run", "every stage's folder goes under here", identity=False)
    method: str = knob("dpo", "optimiser: dpo, or ppo (reward model + PPO)")
    tasks: list[str] = knob(["arith_mini"], "tasks to evaluate the trained checkpoint on (empty: no evaluation)")
    eval_limit: int | None = knob(None, "evaluate only the first N items of each task")
    eval_max_new_tokens: int | None = knob(None, "override the tasks' generation length")
    eval_output_dir: str = knob("runs", "where evaluation run directories go", identity=False)
    evaluate_base: bool = knob(True, "also evaluate the base model, for the leaderboard comparison")
    preset: str | None = knob(None, "a shipped preset of stage keys, under this config's own sections "
                              "(smoke: greedy, 64 new tokens; none: the authors' sampling)")
    critic_sft: dict = knob({}, "critic-sft keys")
    sample: dict = knob({}, "sample keys")
    critique: dict = knob({}, "critique keys")
    refine: dict = knob({}, "refine keys")
    pairs: dict = knob({}, "pairs keys")
    dpo: dict = knob({}, "dpo keys")
    rm: dict = knob({}, "rm keys")
    ppo: dict = knob({}, "ppo keys")

    def validate(self) -> None:
        if self.method not in ("dpo", "ppo"):
            raise ConfigError(f"llf: method must be 'dpo' or 'ppo', got {self.method!r}")
        if not self.data:
            raise ConfigError("llf: data is required")
        for name in ("critic_sft", "sample", "critique", "refine", "pairs", "dpo", "rm", "ppo"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"llf: {name} must be a mapping of {name} keys")
            section = self.section(name)
            allowed = {f.name for f in STAGE_CONFIGS[name.replace("_", "-")].fields()}
            unknown = [k for k in section if k.replace("-", "_") not in allowed]
            if unknown:
                near = difflib.get_close_matches(unknown[0].replace("-", "_"), sorted(allowed), n=1)
                raise ConfigError(f"llf.{name}: unknown key {unknown[0]!r}"
                                  + (f" (did you mean {near[0]!r}?)" if near else ""))

    def section(self, name: str) -> dict[str, Any]:
        """A stage section's keys: the preset's, then this config's own."""
        return {**preset_sections(self.preset).get(name, {}), **getattr(self, name)}


COMPARE_ARMS = ("llf-dpo", "binary-dpo", "llf-ppo", "binary-ppo")
"""feedback-optimiser: LLF pairs or the annotators' binary preferences, then DPO or reward model + PPO."""


@dataclass
class CompareConfig(LLFConfig):
    """LLF against binary preference feedback on one budget (the paper's comparison). For each of
    `seeds` seeds, `budget` human-labelled rows are drawn from `data`; every arm gets only those:
    the LLF arms train the critic on their critiques and make pairs on their prompts, the binary
    arms train on the annotators' preferences for the same prompts. Each arm is trained with the
    same optimiser settings and seed, evaluated on `tasks`, and compare.md gives each task's mean
    with a 95% interval and a paired test between the LLF and binary arm of each optimiser."""

    STAGE = "compare"
    budget: int | None = knob(None, "human-labelled rows per seed, shared by every arm (default: all usable rows)")
    binary_budget: int | None = knob(None, "labelled rows per seed for the binary arms (default: budget); the "
                                     "LLF rows are the first of them")
    binary_data: str | None = knob(None, "where the binary preferences come from (default: data); prompts are "
                                   "matched to data's by id when it is data, else by prompt text")
    seeds: int = knob(3, "how many times the whole comparison is repeated: another draw of rows and training seed")
    seed: int = knob(1234, "the first seed; the others follow it")
    arms: list[str] = knob(["llf-dpo", "binary-dpo"], "which arms to train: " + ", ".join(COMPARE_ARMS))
    tasks: list[str] = knob(["amg_if_text", "amu"], "tasks (or groups) every arm and the base are evaluated on")
    judge: str | None = knob(None, "the judge of judged tasks, BACKEND:REF (default: the embedded model, a weak judge)")
    judge_args: dict = knob({}, "backend arguments of the judge (base_url, concurrency, ...)")

    def validate(self) -> None:
        super().validate()
        unknown = [a for a in self.arms if a not in COMPARE_ARMS]
        if unknown or not self.arms:
            near = difflib.get_close_matches(unknown[0], COMPARE_ARMS, n=1) if unknown else []
            raise ConfigError(f"compare: arms must be some of {', '.join(COMPARE_ARMS)}"
                              + (f"; {unknown[0]!r} is not one" if unknown else "")
                              + (f" (did you mean {near[0]!r}?)" if near else ""))
        if self.prompts:
            raise ConfigError("compare: prompts cannot be set: every arm works on the prompts of the drawn rows")
        seeded = [f"{name}.seed" for name in ("critic_sft", "sample", "critique", "refine", "dpo", "rm", "ppo")
                  if "seed" in getattr(self, name)]
        if seeded:
            raise ConfigError(f"compare: {', '.join(seeded)} cannot be set: each comparison seed sets every stage's "
                              "seed (seed, seed + 1, ...)")
        if self.seeds < 1 or any(b is not None and b < 1 for b in (self.budget, self.binary_budget)):
            raise ConfigError("compare: seeds, budget and binary_budget must be at least 1")
