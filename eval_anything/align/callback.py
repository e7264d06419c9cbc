"""In-loop evaluation: a transformers TrainerCallback that evaluates the live model every N steps
on harness tasks, without saving it or loading a second copy.

    from eval_anything.align.callback import EvalAnythingCallback
    trainer = DPOTrainer(..., callbacks=[EvalAnythingCallback(tasks=["arith_mini"], every=50)])

Works with any transformers or TRL trainer (it reads the `model` and `processing_class` the
trainer hands its callbacks). Each evaluation is a normal run directory under `output_dir`: the
model is named `live:FOLDER` (models/live.py), FOLDER being `eval-anything/step-N` under the
trainer's output_dir and holding the lineage file (base model, method, step), so the run's manifest
carries the lineage and the board can place the run at its step.

Under a multi-process launch every rank evaluates: the main one writes the lineage, then each takes
its share of the items into the one run directory (the runner's data parallelism, as under
`accelerate launch ... eval-anything run`), and all meet at a barrier before training goes on.
Under DeepSpeed ZeRO-3 each rank gathers the whole model first, so generation makes no collective
calls and the ranks may generate different numbers of answers. The evaluation leaves training's
random state (torch on CPU and CUDA, Python, NumPy) as it found it.
"""
from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Sequence

from transformers import TrainerCallback

from eval_anything import __version__
from eval_anything.align.artifacts import now
from eval_anything.errors import UsageError
from eval_anything.manifest import LINEAGE_FILE
from eval_anything.rundir import write_json_atomic

log = logging.getLogger("eval_anything.align")
FOLDER = "eval-anything"
"""Under the trainer's output_dir: step-N/ holds each evaluated step's lineage."""


@dataclass(frozen=True)
class InLoopRun:
    """One in-loop evaluation."""

    step: int
    run_dir: Path
    metrics: dict[str, dict[str, float]]
    """task -> metric -> value, from the run's results."""


class EvalAnythingCallback(TrainerCallback):
    """Evaluate the model being trained on `tasks` every `every` optimiser steps (and, with
    `at_end`, after the last one). `limit`, `max_new_tokens`, `judge` (BACKEND:REF) and
    `judge_args` are those of `eval-anything run`; `base_model` and `method` go into each run's
    lineage (default: the model's own name and the trainer's class). `processor` overrides the
    trainer's processing_class, for a trainer that has none."""

    def __init__(self, tasks: Sequence[str], every: int, output_dir: str | Path = "runs", limit: int | None = None,
                 max_new_tokens: int | None = None, judge: str | None = None, judge_args: dict[str, Any] | None = None,
                 base_model: str | None = None, method: str | None = None, lineage: dict[str, Any] | None = None,
                 processor: Any = None, at_end: bool = False) -> None:
        if every < 1:
            raise UsageError("EvalAnythingCallback: every must be at least 1 (steps between evaluations)")
        if not tasks:
            raise UsageError("EvalAnythingCallback: name at least one task")
        from eval_anything.tasks import Catalog

        self.tasks = Catalog().resolve(",".join(tasks))  # an unknown task fails now, not at step N
        self.every, self.output_dir, self.limit, self.max_new_tokens = every, Path(output_dir), limit, max_new_tokens
        self.judge, self.judge_args, self.processor, self.at_end = judge, judge_args, processor, at_end
        self.base_model, self.method, self.extra = base_model, method, dict(lineage or {})
        self.runs: list[InLoopRun] = []
        """Every evaluation so far, in step order."""

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step % self.every == 0:
            with _whole_model(model, kwargs.get("optimizer")) as whole:
                self.evaluate(whole, kwargs.get("processing_class"), state.global_step, args.output_dir)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.at_end and not any(r.step == state.global_step for r in self.runs):
            with _whole_model(model, kwargs.get("optimizer")) as whole:
                self.evaluate(whole, kwargs.get("processing_class"), state.global_step, args.output_dir)

    def evaluate(self, model: Any, processing_class: Any, step: int, trainer_output_dir: str | Path) -> InLoopRun:
        """Evaluate `model` as it is now; the run directory's lineage names base, method and step. In a
        distributed run every rank calls this, with the whole model (gathered under ZeRO-3)."""
        from eval_anything.align.evaluation import judge_settings
        from eval_anything.models import ModelSpec
        from eval_anything.models.live import attach, detach
        from eval_anything.rundir import RunDirectory
        from eval_anything.runner import evaluate
        from eval_anything.settings import RunSettings

        processor = self.processor or processing_class
        if processor is None:
            raise UsageError("EvalAnythingCallback: the trainer has no processing_class; pass processor=")
        folder = Path(trainer_output_dir) / FOLDER / f"step-{step}"
        main = _rank() == 0
        if main:
            write_json_atomic(folder / LINEAGE_FILE, self._lineage(model, step, trainer_output_dir))
        _barrier()  # the lineage is part of the run's identity: every rank must read the one written
        settings = RunSettings(output_dir=self.output_dir, limit=self.limit, max_new_tokens=self.max_new_tokens,
                               judge=judge_settings(self.judge, self.judge_args),
                               command=("in-loop", "EvalAnythingCallback", f"step={step}"))
        reference = attach(folder, getattr(model, "module", model), processor)
        try:
            with _random_state_kept():
                report = evaluate(ModelSpec("live", reference), self.tasks, settings)
        finally:
            detach(folder)
        _barrier()  # the main rank has merged the shards and written results.json
        results = report.results if report.primary else RunDirectory(report.run_dir).read_results()
        metrics = {task: {name: m.get("value") for name, m in (result.get("metrics") or {}).items()}
                   for task, result in results["tasks"].items()}
        run = InLoopRun(step, Path(report.run_dir), metrics)
        self.runs.append(run)
        if main:
            log.info("in-loop evaluation at step %d: %s  %s", step, run.run_dir, metrics)
        return run

    def _lineage(self, model: Any, step: int, trainer_output_dir: str | Path) -> dict[str, Any]:
        config = getattr(model, "config", None)
        base = self.base_model or getattr(config, "_name_or_path", None) or "?"
        return {"base_model": base, "method": self.method or "training", "data": None, "config_hash": None,
                **self.extra, "step": step, "trainer_output_dir": str(Path(trainer_output_dir).resolve()), "in_loop": True,
                "created_at": now(), "eval_anything": __version__, "format_version": 1}


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def _random_state_kept() -> Iterator[None]:
    """Training's random state put back after the block: the runner seeds torch for each batch it generates,
    which would change the next dropout masks and samples (and so the trained weights)."""
    import numpy
    import torch

    python, numpy_state = random.getstate(), numpy.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python)
            numpy.random.set_state(numpy_state)


@contextlib.contextmanager
def _whole_model(model: Any, optimizer: Any) -> Iterator[Any]:
    """`model` with all its weights on this rank. Under ZeRO-3 the shards are gathered and DeepSpeed's
    per-layer gather hooks are off for the block, as TRL's unwrap_model_for_generation does, so generating
    makes no collective calls and the ranks may generate different numbers of answers."""
    params = list(model.parameters())
    if not any(hasattr(p, "ds_id") for p in params):
        yield model
        return
    import deepspeed
    from trl.models.utils import add_hooks, remove_hooks

    # the hooks are the ZeRO-3 optimizer's; TRL's helpers read it as `engine.optimizer`
    engine = SimpleNamespace(optimizer=getattr(optimizer, "optimizer", optimizer))
    with deepspeed.zero.GatheredParameters(params):
        remove_hooks(engine)
        try:
            yield model
        finally:
            add_hooks(engine)


def stage_callbacks(config: Any, method: str) -> list[EvalAnythingCallback]:
    """The in-loop evaluation an align stage's config asks for (`eval_every`, `eval_tasks`...), if any."""
    if not getattr(config, "eval_every", 0):
        return []
    from eval_anything.align.artifacts import fingerprint
    from eval_anything.align.train import describe_data, lineage

    source = next(getattr(config, name) for name in ("pairs", "prompts", "data") if getattr(config, name, None))
    data = [fingerprint(source)]
    described = lineage(method, config, data, {})  # base_model: followed back through a trained parent
    return [EvalAnythingCallback(config.eval_tasks, config.eval_every, config.eval_output_dir, config.eval_limit,
                                 config.eval_max_new_tokens, base_model=described["base_model"], method=method,
                                 lineage={"data": describe_data(data), "config_hash": config.config_hash(),
                                          "trained_from": config.model})]
