"""The LLF pipeline end to end, evaluation of what it trained, and the LLF-vs-binary comparison."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from eval_anything.align.artifacts import Artifact, fingerprint, write_records
from eval_anything.align.config import (BinaryPairsConfig, CompareConfig, CriticSFTConfig, CritiqueConfig, DPOConfig, LLFConfig, PairsConfig, PPOConfig,
                                        RefineConfig, RMConfig, SampleConfig, StageConfig)
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


def evaluate_checkpoint(model: str, tasks: Sequence[str], output_dir: str, limit: int | None,
                        max_new_tokens: int | None, command: Sequence[str] = ()) -> Any:
    """`eval-anything run` on a checkpoint: its run directory's manifest carries the lineage."""
    from eval_anything.models import resolve_spec
    from eval_anything.runner import evaluate
    from eval_anything.settings import RunSettings
    from eval_anything.tasks import Catalog

    spec = resolve_spec(model)
    settings = RunSettings(output_dir=Path(output_dir), limit=limit, max_new_tokens=max_new_tokens,
                           command=tuple(command) or ("eval-anything", "run", "--model", model))
    return evaluate(spec, Catalog().resolve(",".join(tasks)), settings)


def run_llf(config: LLFConfig, command: Sequence[str] = ()) -> LLFResult:
    """critic-sft -> sample -> critique -> refine -> pairs -> dpo (or rm + ppo) -> evaluation.
    Every stage is resumable and skipped when already complete, so rerunning resumes the pipeline."""
    work = Path(config.work_dir)
    result = LLFResult()
    prompts = config.prompts or config.data
    critic = train_critic(_section(CriticSFTConfig, {"model": config.critic_model or config.model, "data": config.data,
                                                     "output_dir": str(work / "critic-sft")}, config.section("critic_sft"),
                                   "critic_sft"))
    sample = run_sample(_section(SampleConfig, {"policy": config.model, "prompts": prompts,
                                                "output_dir": str(work / "sample")}, config.section("sample"), "sample"))
    critique = run_critique(_section(CritiqueConfig, {"critic": str(critic.model_dir), "responses": str(sample.path),
                                                      "output_dir": str(work / "critique")}, config.section("critique"), "critique"))
    refine = run_refine(_section(RefineConfig, {"policy": config.model, "critiques": str(critique.path),
                                                "output_dir": str(work / "refine")}, config.section("refine"), "refine"))
    pairs = run_pairs(_section(PairsConfig, {"refinements": str(refine.path), "output_dir": str(work / "pairs")},
                               config.section("pairs"), "pairs"))
    result.stages = {"critic-sft": str(critic.output_dir), "sample": str(sample.path), "critique": str(critique.path),
                     "refine": str(refine.path), "pairs": str(pairs.path)}
    source = fingerprint(config.data)
    extra = {"data": describe_data([source]), "pipeline": {"name": "llf", "config_hash": config.config_hash(),
                                                          "data": source, "critic": str(critic.model_dir),
                                                          "pairs": str(pairs.path)}}
    final: TrainResult
    if config.method == "dpo":
        final = train_dpo(_section(DPOConfig, {"model": config.model, "pairs": str(pairs.path),
                                               "output_dir": str(work / "dpo")}, config.section("dpo"), "dpo"),
                          method="llf-dpo", lineage_extra=extra)
        result.stages["dpo"] = str(final.output_dir)
    else:
        from eval_anything.align.ppo import train_ppo

        rm = train_reward_model(_section(RMConfig, {"model": config.model, "pairs": str(pairs.path),
                                                    "output_dir": str(work / "rm")}, config.section("rm"), "rm"))
        final = train_ppo(_section(PPOConfig, {"model": config.model, "reward_model": str(rm.model_dir),
                                               "prompts": prompts, "output_dir": str(work / "ppo")}, config.section("ppo"), "ppo"),
                          method="llf-ppo", lineage_extra=extra)
        result.stages.update(rm=str(rm.output_dir), ppo=str(final.output_dir))
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


def binary_pairs(config: BinaryPairsConfig) -> Artifact:
    """The binary-preference artefact: chosen/rejected from the overall preference, first `limit` pairs."""
    from eval_anything.align.data import load_preference_records

    artifact = Artifact(config.output_dir)
    if artifact.open("binary-pairs", config, [fingerprint(config.data)]):
        return artifact
    records = load_preference_records(config.data)
    write_records(artifact, records if config.limit is None else records[: config.limit])
    artifact.finish()
    return artifact


def run_compare(config: CompareConfig, command: Sequence[str] = ()) -> dict[str, Any]:
    """LLF versus binary feedback on the same number of preference pairs; writes compare.json."""
    work = Path(config.work_dir)
    sample = {**config.sample, **({"limit": config.budget} if config.budget is not None else {})}
    llf_config = LLFConfig.from_dict({**{k: v for k, v in config.to_dict().items()
                                         if k not in ("budget", "binary_data")},
                                      "work_dir": str(work / "llf"), "tasks": [], "sample": sample}, "compare")
    llf = run_llf(llf_config)
    llf_pairs = (Artifact(llf.stages["pairs"]).manifest() or {}).get("count", 0)
    binary = binary_pairs(BinaryPairsConfig.from_dict({"data": config.binary_data or config.data, "limit": llf_pairs,
                                                       "output_dir": str(work / "binary-pairs")}, "compare"))
    dpo = _section(DPOConfig, {"model": config.model, "pairs": str(binary.path),
                               "output_dir": str(work / "binary-dpo")}, config.section("dpo"), "dpo")
    source = fingerprint(config.binary_data or config.data)
    binary_model = train_dpo(dpo, method="binary-dpo", lineage_extra={
        "data": describe_data([source]), "pipeline": {"name": "binary", "data": source, "pairs": str(binary.path)}})
    arms = {"base": config.model, "llf": str(llf.checkpoint), "binary": str(binary_model.model_dir)}
    summary: dict[str, Any] = {"config": config.to_dict(), "pairs": {"llf": llf_pairs,
                                                                      "binary": (binary.manifest() or {}).get("count")},
                               "checkpoints": arms, "runs": {}, "metrics": {}}
    for arm, model in arms.items():
        if not config.tasks:
            break
        report = evaluate_checkpoint(model, config.tasks, config.eval_output_dir, config.eval_limit,
                                     config.eval_max_new_tokens, command if arm != "base" else ())
        summary["runs"][arm] = str(report.run_dir)
        summary["metrics"][arm] = {task: {name: m["value"] for name, m in result.get("metrics", {}).items()}
                                   for task, result in report.results["tasks"].items()}
    write_json_atomic(work / "compare.json", summary)
    return summary
