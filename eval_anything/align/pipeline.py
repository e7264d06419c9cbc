"""The LLF pipeline end to end and the evaluation of what it trained (the comparison with binary
feedback is compare.py)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from eval_anything.align.artifacts import Artifact, fingerprint
from eval_anything.align.config import (CriticSFTConfig, CritiqueConfig, DPOConfig, LLFConfig, PairsConfig, PPOConfig,
                                        RefineConfig, RMConfig, SampleConfig, StageConfig)
from eval_anything.align.evaluation import evaluate_checkpoint
from eval_anything.align.generate import run_critique, run_pairs, run_refine, run_sample
from eval_anything.align.train import TrainResult, describe_data, train_critic, train_dpo, train_reward_model
from eval_anything.rundir import write_json_atomic

log = logging.getLogger("eval_anything.align")


@dataclass
class LLFResult:
    stages: dict[str, str] = field(default_factory=dict)
    """Stage name -> its folder."""
    checkpoint: Path | None = None
    runs: dict[str, str] = field(default_factory=dict)
    """'trained' / 'base' -> evaluation run directory."""
    results: dict[str, Any] = field(default_factory=dict)


def _section(cls: type[StageConfig], defaults: dict[str, Any], overrides: dict[str, Any], name: str) -> Any:
    return cls.from_dict({**defaults, **overrides}, f"llf.{name}")


@dataclass
class LLFPairs:
    """What the generating half of LLF left: its stages' folders, the critic and the pairs."""

    stages: dict[str, str]
    critic: TrainResult
    pairs: Artifact


def make_llf_pairs(config: LLFConfig) -> LLFPairs:
    """critic-sft -> sample -> critique -> refine -> pairs, each stage in its folder under work_dir."""
    work = Path(config.work_dir)
    prompts = config.prompts or config.data
    critic = train_critic(_section(CriticSFTConfig, {"model": config.critic_model or config.model, "data": config.data,
                                                     "output_dir": str(work / "critic-sft")}, config.section("critic_sft"),
                                   "critic_sft"))
    sample = run_sample(_section(SampleConfig, {"policy": config.model, "prompts": prompts,
                                                "output_dir": str(work / "sample")}, config.section("sample"), "sample"))
    critique = run_critique(_section(CritiqueConfig, {"critic": str(critic.model_dir), "responses": str(sample.path),
                                                      "output_dir": str(work / "critique")}, config.section("critique"),
                                     "critique"))
    refine = run_refine(_section(RefineConfig, {"policy": config.model, "critiques": str(critique.path),
                                                "output_dir": str(work / "refine")}, config.section("refine"), "refine"))
    pairs = run_pairs(_section(PairsConfig, {"refinements": str(refine.path), "output_dir": str(work / "pairs")},
                               config.section("pairs"), "pairs"))
    stages = {"critic-sft": str(critic.output_dir), "sample": str(sample.path), "critique": str(critique.path),
              "refine": str(refine.path), "pairs": str(pairs.path)}
    return LLFPairs(stages, critic, pairs)


def optimise(config: LLFConfig, optimiser: str, pairs: str, prompts: str, work: Path, method: str,
             lineage_extra: dict[str, Any]) -> tuple[TrainResult, dict[str, str]]:
    """DPO on the pairs, or a reward model on them and PPO on the prompts: (the trained policy, stage folders)."""
    if optimiser == "dpo":
        dpo = _section(DPOConfig, {"model": config.model, "pairs": pairs, "output_dir": str(work / "dpo")},
                       config.section("dpo"), "dpo")
        callbacks = []
        if dpo.eval_every:
            from eval_anything.align.callback import stage_callbacks

            callbacks = stage_callbacks(dpo, method)
        final = train_dpo(dpo, method=method, lineage_extra=lineage_extra, callbacks=callbacks)
        return final, {"dpo": str(final.output_dir)}
    from eval_anything.align.callback import stage_callbacks
    from eval_anything.align.ppo import train_ppo

    rm = train_reward_model(_section(RMConfig, {"model": config.model, "pairs": pairs, "output_dir": str(work / "rm")},
                                     config.section("rm"), "rm"))
    ppo = _section(PPOConfig, {"model": config.model, "reward_model": str(rm.model_dir), "prompts": prompts,
                               "output_dir": str(work / "ppo")}, config.section("ppo"), "ppo")
    final = train_ppo(ppo, method=method, lineage_extra=lineage_extra, evaluators=stage_callbacks(ppo, method))
    return final, {"rm": str(rm.output_dir), "ppo": str(final.output_dir)}


def run_llf(config: LLFConfig, command: Sequence[str] = ()) -> LLFResult:
    """critic-sft -> sample -> critique -> refine -> pairs -> dpo (or rm + ppo) -> evaluation.
    Every stage is resumable and skipped when already complete, so rerunning resumes the pipeline."""
    work = Path(config.work_dir)
    result = LLFResult()
    made = make_llf_pairs(config)
    result.stages = dict(made.stages)
    source = fingerprint(config.data)
    extra = {"data": describe_data([source]), "pipeline": {"name": "llf", "config_hash": config.config_hash(),
                                                          "data": source, "critic": str(made.critic.model_dir),
                                                          "pairs": str(made.pairs.path)}}
    final, stages = optimise(config, config.method, str(made.pairs.path), config.prompts or config.data, work,
                             f"llf-{config.method}", extra)
    result.stages.update(stages)
    result.checkpoint = final.model_dir
    if config.tasks:
        trained = evaluate_checkpoint(str(final.model_dir), config.tasks, config.eval_output_dir, config.eval_limit,
                                      config.eval_max_new_tokens, command)
        result.runs["trained"] = str(trained.run_dir)
        result.results["trained"] = trained.results
        if config.evaluate_base:
            base = evaluate_checkpoint(config.model, config.tasks, config.eval_output_dir, config.eval_limit,
                                       config.eval_max_new_tokens)
            result.runs["base"] = str(base.run_dir)
            result.results["base"] = base.results
    write_json_atomic(work / "llf.json", {"config": config.to_dict(), "config_hash": config.config_hash(),
                                         "stages": result.stages, "checkpoint": str(result.checkpoint),
                                         "runs": result.runs})
    return result
