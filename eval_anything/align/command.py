"""`eval-anything align ...`: one sub-command per stage, flags derived from the stage's Config.

Light to import (the CLI lists commands without torch); trainers load inside the handlers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from eval_anything.align import config as cfg

EXAMPLES = """examples:
  eval-anything align llf --config llf.yaml            # the whole pipeline, then evaluation
  eval-anything align critic-sft --model embedded:smollm2-135m-instruct --data llf.jsonl --output-dir out/critic
  eval-anything align sample --policy DIR --prompts data.parquet --output-dir out/sample
  eval-anything align dpo --model DIR --pairs out/pairs --output-dir out/dpo --max-steps 100
  eval-anything align rm --model DIR --pairs out/pairs --output-dir out/rm
  eval-anything align ppo --model DIR --reward-model out/rm/model --prompts data.jsonl --output-dir out/ppo
  eval-anything align report out/ppo                 # plot the stage's metrics.jsonl into out/ppo/report/

Every stage writes its folder (records.jsonl or model/, plus manifest.json). Rerunning a finished
stage does nothing; rerunning a killed one resumes it. Multi-GPU / multi-node: launch the same
command with `accelerate launch --config_file eval_anything/align/accelerate/zero2.yaml -m eval_anything align dpo ...`."""


def _stage(name: str, config_class: type[cfg.StageConfig], run: Callable[[Any], Any]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        _logging()
        result = run(config_class.from_args(args))
        _report(name, result)
        return 0

    return handler


def _logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


def _report(name: str, result: Any) -> None:
    if int(os.environ.get("RANK") or 0) != 0:  # under a launcher every process returns the same result
        return
    if hasattr(result, "manifest") and callable(result.manifest):  # an artefact
        manifest = result.manifest() or {}
        print(f"{name}: {manifest.get('count', 0)} records in {result.path}")
    elif hasattr(result, "model_dir"):
        if result.skipped:
            print(f"{name}: {result.output_dir} is complete; nothing to do")
        else:
            losses = getattr(result, "losses", [])
            print(f"{name}: checkpoint {result.model_dir}"
                  + (f"  loss {losses[0]:.4f} -> {losses[-1]:.4f}" if losses else ""))


def _in_loop(c, method):
    """The in-loop evaluation the stage's config asks for (eval_every), as trainer callbacks."""
    if not c.eval_every:
        return []
    from eval_anything.align.callback import stage_callbacks

    return stage_callbacks(c, method)


def _critic(c):
    from eval_anything.align.train import train_critic

    return train_critic(c, callbacks=_in_loop(c, "critic-sft"))


def _sample(c):
    from eval_anything.align.generate import run_sample

    return run_sample(c)


def _critique(c):
    from eval_anything.align.generate import run_critique

    return run_critique(c)


def _refine(c):
    from eval_anything.align.generate import run_refine

    return run_refine(c)


def _pairs(c):
    from eval_anything.align.generate import run_pairs

    return run_pairs(c)


def _dpo(c):
    from eval_anything.align.train import train_dpo

    return train_dpo(c, callbacks=_in_loop(c, "dpo"))


def _rm(c):
    from eval_anything.align.train import train_reward_model

    return train_reward_model(c)


def _ppo(c):
    from eval_anything.align.ppo import train_ppo

    return train_ppo(c, evaluators=_in_loop(c, "ppo"))


def _rloo(c):
    from eval_anything.align.rl import train_rloo

    return train_rloo(c, callbacks=_in_loop(c, "rloo"))


def _grpo(c):
    from eval_anything.align.rl import train_grpo

    return train_grpo(c, callbacks=_in_loop(c, "grpo"))


def _llf(args: argparse.Namespace) -> int:
    from eval_anything.align.pipeline import run_llf

    _logging()
    config = cfg.LLFConfig.from_args(args)
    result = run_llf(config, command=("eval-anything", *getattr(args, "argv", ())))
    print(f"llf: checkpoint {result.checkpoint}")
    for name, folder in result.stages.items():
        print(f"  {name:<10} {folder}")
    for which, run_dir in result.runs.items():
        tasks = result.results[which]["tasks"]
        metrics = {t: {m: v["value"] for m, v in r.get("metrics", {}).items()} for t, r in tasks.items()}
        print(f"  eval {which:<7} {run_dir}  {json.dumps(metrics)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from eval_anything.align.compare import TABLE, run_compare

    _logging()
    config = cfg.CompareConfig.from_args(args)
    summary = run_compare(config, command=("eval-anything", *getattr(args, "argv", ())))
    print(f"compare: {', '.join(config.arms)} on {summary['usable_rows']} usable rows, "
          f"{len(summary['seeds'])} seeds; the table is {config.work_dir}/{TABLE}")
    if summary["table"]["tasks"]:
        from eval_anything.align.compare_stats import to_markdown

        print(to_markdown(summary["table"], summary))
    return 0


def _report_command(args: argparse.Namespace) -> int:
    from eval_anything.align.report import write_report

    try:
        report = write_report(args.dir, args.output)
    except FileNotFoundError as exc:
        print(f"align report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {report.html} ({len(report.series)} plots)")
    if report.message:
        print(f"  {report.message}", file=sys.stderr)
    return 0


STAGES: dict[str, tuple[type[cfg.StageConfig], Callable[[Any], Any], str]] = {
    "critic-sft": (cfg.CriticSFTConfig, _critic, "train the critic: SFT on (prompt, response) -> critique"),
    "sample": (cfg.SampleConfig, _sample, "sample the policy's responses to the prompts"),
    "critique": (cfg.CritiqueConfig, _critique, "critique each response with the critic"),
    "refine": (cfg.RefineConfig, _refine, "refine each response given its critique"),
    "pairs": (cfg.PairsConfig, _pairs, "preference pairs: chosen = refinement, rejected = response"),
    "dpo": (cfg.DPOConfig, _dpo, "DPO on preference pairs (TRL)"),
    "rm": (cfg.RMConfig, _rm, "train a reward model on preference pairs (TRL)"),
    "ppo": (cfg.PPOConfig, _ppo, "PPO against the trained reward model"),
    "rloo": (cfg.RLOOConfig, _rloo, "RLOO against the trained reward model (TRL; ours for media prompts)"),
    "grpo": (cfg.GRPOConfig, _grpo, "GRPO against the trained reward model (TRL; ours for media prompts)"),
}


def add_command(subparsers: Any) -> None:
    align = subparsers.add_parser("align", help="train with learning from language feedback (LLF)",
                                  description="Learning from language feedback: each stage, or the whole pipeline.",
                                  epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = align.add_subparsers(dest="align_command", required=True, metavar="STAGE")
    llf = stages.add_parser("llf", help="the whole pipeline, then evaluate the checkpoint",
                            description=cfg.LLFConfig.__doc__)
    cfg.LLFConfig.add_arguments(llf)
    llf.set_defaults(handler=_llf)
    compare = stages.add_parser("compare", help="LLF vs binary feedback on one budget of labelled rows, k seeds",
                                description=cfg.CompareConfig.__doc__)
    cfg.CompareConfig.add_arguments(compare)
    compare.set_defaults(handler=_compare)
    report = stages.add_parser("report", help="plot the per-step training metrics of the stages under DIR",
                               description="Plots every stage's metrics.jsonl under DIR (a stage folder or an llf "
                               "work_dir) into DIR/report/index.html, and PNGs when matplotlib is installed.")
    report.add_argument("dir", metavar="DIR", help="a training stage's folder, or an llf work_dir")
    report.add_argument("-o", "--output", metavar="FOLDER", help="where the report goes (default: DIR/report)")
    report.set_defaults(handler=_report_command)
    for name, (config_class, run, help_text) in STAGES.items():
        parser = stages.add_parser(name, help=help_text, description=config_class.__doc__)
        config_class.add_arguments(parser)
        parser.set_defaults(handler=_stage(name, config_class, run))
