"""Per-step training metrics kept in the stage folder (metrics.jsonl), whatever else they are sent to.

Each line is one logging step: {"step": N, "loss": ..., "rewards/margins": ..., ...} with the
trainer's own metric names (TRL's for the TRL stages, ppo.py's for PPO). A resumed run appends
after the last step already written, so the file holds each step once. The trainers' own printing
of each step's dict to stdout is replaced by a progress bar on stderr (shown on a terminal only).
"""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping

METRICS_FILE = "metrics.jsonl"


def resolve_report_to(value: str) -> str:
    """auto: tensorboard when it is installed, else none; other values as given."""
    if value != "auto":
        return value
    return "tensorboard" if importlib.util.find_spec("tensorboard") is not None else "none"


class MetricsFile:
    """Appends metric rows to FOLDER/metrics.jsonl; rows at or before the last written step are skipped."""

    def __init__(self, folder: Path | str) -> None:
        self.path = Path(folder) / METRICS_FILE
        self.last_step = max((row["step"] for row in read_metrics(self.path)), default=0)

    def write(self, step: int, values: Mapping[str, Any]) -> None:
        if step <= self.last_step:
            return
        row = {"step": step, **{k: _number(v) for k, v in values.items() if _number(v) is not None}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        self.last_step = step


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_metrics(path: Path | str) -> list[dict[str, float]]:
    """The rows of a metrics.jsonl (a torn last line from a crash is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def metrics_callback(folder: Path | str) -> Any:
    """A transformers TrainerCallback writing every on_log (training rows, not the final summary) on rank 0."""
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        def __init__(self) -> None:
            self.file = MetricsFile(folder)

        def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return
            self.file.write(state.global_step, logs)

    return MetricsCallback()


def quiet_progress(trainer: Any) -> None:
    """Replace the trainer's printing of every log dict to stdout (transformers' PrinterCallback, used
    with disable_tqdm) by a progress bar on stderr with the latest loss; the dicts are in metrics.jsonl."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_progress_callback())


def _progress_callback() -> Any:
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        """Steps done of max_steps on rank 0; off where stderr is not a terminal (tqdm's disable=None)."""

        bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, file=sys.stderr, disable=None,
                                desc="training", unit="step", dynamic_ncols=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if self.bar is not None and logs and _number(logs.get("loss")) is not None:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4g}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return StepProgress()
