"""`align compare`: LLF against binary preference feedback, fairly.

One budget B of human-labelled rows per seed, drawn once and shared by every arm: the LLF arms
train the critic on those rows' critiques (so the critic's data is the LLF side's B) and make
their pairs on those rows' prompts; the binary arms train on the annotators' preference for the
same prompts. Every arm uses the same optimiser settings and seed, so only the feedback differs.
`binary_budget` gives the binary arms more (or fewer) rows, the LLF rows being the first of theirs:
the paper's "25% of LLF data against 100% of binary" is budget 250, binary_budget 1000.
Repeated over k seeds (another draw of rows, another training seed), each checkpoint evaluated on
the same tasks; compare.json keeps everything and compare.md shows, per task, each arm's mean with a
95% interval and a paired test between the LLF and binary arm of each optimiser.

Work folder: seed-N/rows.jsonl (the drawn LLF rows), seed-N/binary.jsonl (their binary pairs),
seed-N/llf/ (critic-sft, sample, critique, refine, pairs), seed-N/ARM/ (its trained stages).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from eval_anything.align.artifacts import fingerprint
from eval_anything.align.compare_stats import summarise, to_markdown
from eval_anything.align.config import CompareConfig, ConfigError, LLFConfig
from eval_anything.align.data import load_llf_records, load_preference_records, require_binary_preferences
from eval_anything.align.evaluation import evaluate_checkpoint
from eval_anything.align.pipeline import make_llf_pairs, optimise
from eval_anything.align.records import LLFRecord, PreferenceRecord, write_jsonl
from eval_anything.align.train import describe_data
from eval_anything.rundir import write_json_atomic

log = logging.getLogger("eval_anything.align")
SUMMARY, TABLE = "compare.json", "compare.md"
SEEDED_SECTIONS = ("critic_sft", "sample", "critique", "refine", "dpo", "rm", "ppo")
"""Stage sections whose seed each comparison seed sets."""


@dataclass(frozen=True)
class Draw:
    """One seed's labelled rows, shared by every arm."""

    seed: int
    rows: Path
    """The drawn rows as LLF records (prompt, media, response, critique, refinement)."""
    binary: Path
    """The annotators' preference pair for each drawn prompt."""
    count: int
    """LLF rows."""
    binary_count: int
    """Binary rows (count unless binary_budget differs)."""


def usable_rows(config: CompareConfig) -> list[tuple[LLFRecord, PreferenceRecord]]:
    """Rows with a response and a critique, each with its binary pair (by id within one file, else by prompt)."""
    binary_source = config.binary_data or config.data
    require_binary_preferences(binary_source)
    preferences = load_preference_records(binary_source)
    same_file = config.binary_data is None
    by_key: dict[str, PreferenceRecord] = {}
    for pair in preferences:
        by_key.setdefault(pair.id if same_file else pair.prompt, pair)
    rows = []
    for record in load_llf_records(config.data):
        pair = by_key.get(record.id if same_file else record.prompt)
        if record.response and record.critique and pair is not None:
            rows.append((record, pair))
    return rows


def budgets_of(config: CompareConfig, rows: Sequence[Any]) -> tuple[int, int]:
    """(LLF rows, binary rows) per seed: `budget` each unless `binary_budget` gives the binary arms another."""
    budget = len(rows) if config.budget is None else config.budget
    binary = budget if config.binary_budget is None else config.binary_budget
    for name, value in (("budget", budget), ("binary_budget", binary)):
        if value > len(rows):
            raise ConfigError(f"compare: {name} {value} is more than the {len(rows)} rows of {config.data} that have "
                              f"a response, a critique and a binary preference; lower {name}")
    return budget, binary


def draw(config: CompareConfig, rows: Sequence[tuple[LLFRecord, PreferenceRecord]], seed: int, folder: Path) -> Draw:
    """The seed's rows: the LLF arms' are the first `budget` of the binary arms' (the same ones when equal)."""
    budget, binary_budget = budgets_of(config, rows)
    chosen = random.Random(seed).sample(list(rows), max(budget, binary_budget))
    folder.mkdir(parents=True, exist_ok=True)
    records = folder / "rows.jsonl"
    binary = folder / "binary.jsonl"
    write_jsonl(records, [record for record, _ in chosen[:budget]])
    write_jsonl(binary, [PreferenceRecord(pair.id, pair.prompt, pair.chosen, pair.rejected, pair.media, "binary",
                                          pair.metadata) for _, pair in chosen[:binary_budget]])
    return Draw(seed, records, binary, budget, binary_budget)


def seed_config(config: CompareConfig, rows: Draw, folder: Path) -> LLFConfig:
    """The LLF pipeline's config for one seed: the drawn rows as data and prompts, every stage seeded."""
    own = {k: v for k, v in config.to_dict().items() if k in {f.name for f in LLFConfig.fields()}}
    sections = {name: {**getattr(config, name), "seed": rows.seed} for name in SEEDED_SECTIONS}
    return LLFConfig.from_dict({**own, **sections, "data": str(rows.rows), "prompts": str(rows.rows),
                                "work_dir": str(folder), "tasks": []}, "compare")


def train_arms(config: CompareConfig, rows: Draw, folder: Path) -> dict[str, str]:
    """arm -> its trained checkpoint, for one seed."""
    llf_config = seed_config(config, rows, folder / "llf")
    source = fingerprint(config.data)
    pipeline = {"name": "compare", "seed": rows.seed, "budget": rows.count, "binary_budget": rows.binary_count,
                "data": source,
                "rows": fingerprint(rows.rows), "summary": str(Path(config.work_dir).resolve() / SUMMARY)}
    pairs: dict[str, str] = {}
    if any(arm.startswith("llf-") for arm in config.arms):
        made = make_llf_pairs(llf_config)
        pairs["llf"] = str(made.pairs.path)
        pipeline["critic"] = str(made.critic.model_dir)
    pairs["binary"] = str(rows.binary)
    checkpoints = {}
    for arm in config.arms:
        feedback, optimiser = arm.split("-")
        extra = {"data": describe_data([source]), "pipeline": {**pipeline, "arm": arm, "pairs": pairs[feedback]}}
        final, _ = optimise(llf_config, optimiser, pairs[feedback], str(rows.rows), folder / arm, arm, extra)
        checkpoints[arm] = str(final.model_dir)
    return checkpoints


def run_compare(config: CompareConfig, command: Sequence[str] = ()) -> dict[str, Any]:
    """Train every arm on each seed's draw, evaluate them and the base; write compare.json and compare.md."""
    work = Path(config.work_dir)
    rows = usable_rows(config)
    budgets_of(config, rows)  # before anything is evaluated or trained
    summary: dict[str, Any] = {"config": config.to_dict(), "usable_rows": len(rows), "seeds": [], "runs": {}}

    def evaluate(model: str, own_command: Sequence[str] = ()) -> str:
        report = evaluate_checkpoint(model, config.tasks, config.eval_output_dir, config.eval_limit,
                                     config.eval_max_new_tokens, own_command, config.judge, config.judge_args)
        return str(report.run_dir)

    if config.tasks and config.evaluate_base:
        summary["runs"]["base"] = [evaluate(config.model)]
    for index in range(config.seeds):
        seed = config.seed + index
        folder = work / f"seed-{seed}"
        drawn = draw(config, rows, seed, folder)
        checkpoints = train_arms(config, drawn, folder)
        summary["seeds"].append({"seed": seed, "rows": str(drawn.rows), "binary_pairs": str(drawn.binary),
                                 "budget": drawn.count, "binary_budget": drawn.binary_count,
                                 "checkpoints": checkpoints})
        for arm, checkpoint in checkpoints.items():
            if config.tasks:
                summary["runs"].setdefault(arm, []).append(evaluate(checkpoint, command))
        write_json_atomic(work / SUMMARY, summary)  # a crash keeps the seeds done so far (their stages resume)
    summary["table"] = summarise(summary["runs"], config.arms, seed=config.seed)
    write_json_atomic(work / SUMMARY, summary)
    (work / TABLE).write_text(to_markdown(summary["table"], summary), encoding="utf-8")
    return summary
