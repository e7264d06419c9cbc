"""Trainers: critic SFT, DPO and reward modelling through TRL; shared loading, saving, resume, lineage.

Kept thin on purpose (TRL's trainers change quickly): each stage builds a dataset of rendered
prompts and completions and hands it to the TRL trainer. Prompts are rendered, and media decoded,
by the hf evaluation backend's InputProcessor, so a model is trained on exactly the inputs it is
evaluated on.

Output folder of every training stage:
    checkpoints/checkpoint-N/   resumable Trainer checkpoints (save_steps); a rerun resumes from the last
    model/                      the trained checkpoint (LoRA merged), processor, eval_anything_lineage.json
    manifest.json               stage, config and hash, inputs with hashes, status, losses, precision, lineage
    metrics.jsonl               one line of the trainer's metrics per logged step (align/metrics.py)
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from eval_anything import __version__
from eval_anything.align.artifacts import Artifact, fingerprint, now
from eval_anything.align.config import CriticSFTConfig, DPOConfig, RMConfig, TrainConfig
from eval_anything.align.data import load_llf_records, load_preference_records
from eval_anything.align.generate import critique_prompt
from eval_anything.align.metrics import metrics_callback, quiet_progress, resolve_report_to
from eval_anything.align.precision import Precision, cast_trained, load_kwargs, resolve
from eval_anything.datamodel import Part
from eval_anything.errors import UsageError
from eval_anything.manifest import LINEAGE_FILE
from eval_anything.rundir import read_json, write_json_atomic

log = logging.getLogger("eval_anything.align")
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"


@dataclass
class TrainResult:
    """What a training stage left behind."""

    output_dir: Path
    model_dir: Path
    manifest: dict[str, Any]
    skipped: bool = False
    """True when the stage was already complete with this identity: nothing was trained."""
    losses: list[float] = field(default_factory=list)
    resumed_from: str | None = None


def model_dir(reference: str) -> Path:
    """A local model folder for `embedded:NAME`, `DIR`, a Hub id `ORG/NAME[@REV]`, or either behind a
    backend with local weights (`hf:DIR`, `vllm:ORG/NAME`)."""
    from eval_anything.models import local_weights_dir

    return local_weights_dir(reference)


def load_for_training(reference: str, video_frames: int = 8, head: str = "causal", precision: Precision | None = None,
                      frozen: bool = False):
    """(model, processor, InputProcessor) — loaded as the hf backend loads them, in `precision`'s dtype for
    weights being trained, or for frozen ones (a LoRA base, a reference; float32 without a precision),
    quantised when it says so."""
    import transformers

    from eval_anything.models.hf import load_generative_model
    from eval_anything.models.inputs import InputProcessor, input_modalities_of, load_processor

    path = model_dir(reference)
    processor = load_processor(transformers, path)
    tokenizer = getattr(processor, "tokenizer", processor)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype, extra = (precision.load_dtype(frozen), load_kwargs(precision)) if precision is not None else (_float32(), {})
    if head == "reward":
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype,
                                                                                 **extra)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = load_generative_model(transformers, path, dtype, extra, input_modalities_of(processor))
    return model, processor, InputProcessor(processor, video_frames, str(path))


def load_stage_model(config: TrainConfig, head: str = "causal") -> tuple[Any, Any, Any]:
    """load_for_training for the model a stage trains: with LoRA, its base is frozen."""
    return load_for_training(config.model, config.video_frames, head, precision=resolve(config), frozen=config.lora)


def reference_loading(config: TrainConfig) -> dict[str, Any]:
    """TRL's model_init_kwargs for the frozen reference it builds for a trained policy (DPO, RLOO, GRPO: it
    would copy the policy's dtype); none with LoRA (the reference is the base without the adapter).
    TRL logs that model_init_kwargs are ignored because the policy is given; they still load the reference."""
    precision = resolve(config)
    if config.lora or precision.frozen_dtype == precision.trained_dtype:
        return {}
    return {"model_init_kwargs": {"dtype": str(precision.frozen_dtype).removeprefix("torch.")}}


def _float32() -> Any:
    import torch

    return torch.float32


def render_prompt(inputs: Any, parts: Sequence[Part]) -> tuple[str, list[Any]]:
    """The chat-template prompt and its images, through the evaluation backend's input path."""
    prepared = inputs.prepare(parts)
    text = "\n".join(p.text for p in parts if p.text)
    return inputs.render(prepared, text), prepared.images


class MediaCollator:
    """Batches for prompts with media, in the layout TRL's losses read (input_ids, attention_mask,
    completion_mask or labels, plus the processor's media features: pixel_values, input_features...).
    Prompts are encoded by the hf backend's InputProcessor — media decoded, resampled and turned into
    tokens exactly as in evaluation — so images, video and audio all train; completions are tokenized
    as TRL does and appended. `completions` names the completion fields: ("chosen", "rejected") for
    preference data (DPO), ("completion",) for SFT."""

    def __init__(self, inputs: Any, max_length: int | None, completions: Sequence[str]) -> None:
        self.inputs = inputs
        self.max_length = max_length
        self.completions = tuple(completions)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        from trl.trainer.utils import flush_left, pad

        from eval_anything.align.records import Media

        copies = len(self.completions)
        prepared = [self.inputs.prepare([Media(**m).part() for m in e["media"]]) for e in examples]
        prompts = self.inputs.encode([e["prompt"] for e in examples] * copies, prepared * copies, padding_side="left")
        tokenizer = self.inputs.tokenizer
        completions = [tokenizer([e[key] for e in examples], padding=True, padding_side="right", return_tensors="pt",
                                 add_special_tokens=False) for key in self.completions]
        completion_ids = torch.cat(tuple(pad([c["input_ids"] for c in completions], padding_value=tokenizer.pad_token_id)))
        completion_mask = torch.cat(tuple(pad([c["attention_mask"] for c in completions], padding_value=0)))
        prompt_mask = prompts["attention_mask"]
        input_ids = torch.cat((prompts["input_ids"], completion_ids), dim=1)
        attention_mask = torch.cat((prompt_mask, completion_mask), dim=1)
        completion_mask = torch.cat((torch.zeros_like(prompt_mask), completion_mask), dim=1)
        attention_mask, input_ids, completion_mask = flush_left(attention_mask, input_ids, completion_mask)
        if self.max_length is not None:
            input_ids, attention_mask, completion_mask = (t[:, : self.max_length] for t in
                                                          (input_ids, attention_mask, completion_mask))
        batch = dict(prompts)
        batch.update(input_ids=input_ids, attention_mask=attention_mask)
        if copies == 1:  # SFT: the loss on the completion only
            batch["labels"] = input_ids.masked_fill(completion_mask == 0, -100)
        else:
            batch["completion_mask"] = completion_mask
        return batch


def _media_rows(rows: list[dict[str, Any]], eos: str, completions: Sequence[str]) -> bool:
    """Mark rows for MediaCollator when any has media: EOS-ended completions (TRL adds EOS only to
    text data), an empty `images` column (it only tells TRL the data are multimodal). True if so."""
    if not any(row.get("media") for row in rows):
        for row in rows:
            row.pop("media", None)
        return False
    for row in rows:
        row.setdefault("media", [])
        row["images"] = []
        for key in completions:
            row[key] = row[key] + eos
    return True


def describe_data(inputs: Sequence[dict[str, Any]]) -> str:
    """Data inputs in one line for tables: each path with the start of its content hash."""
    return "; ".join(f"{i['path']} (sha256 {str(i.get('sha256'))[:12]})" for i in inputs)


def lineage(method: str, config: TrainConfig, data: Sequence[dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """Where a checkpoint came from: base_model, method, data and config_hash (one line each, as the
    leaderboard shows them), then the details. `base_model` follows parents back to the untrained
    model; the full config is in the training stage's manifest.json (`training_manifest`)."""
    parent_file = model_dir(config.model) / LINEAGE_FILE
    parent = read_json(parent_file) if parent_file.exists() else None
    return {
        "base_model": parent["base_model"] if parent else config.model,
        "method": method,
        "data": describe_data(data),
        "config_hash": config.config_hash(),
        "base_model_sha256": parent.get("base_model_sha256") if parent else base.get("sha256"),
        "base_model_commit": parent.get("base_model_commit") if parent else base.get("commit"),
        "trained_from": config.model,
        "trained_from_sha256": base.get("sha256"),
        "trained_from_commit": base.get("commit"),
        "parent": {k: parent[k] for k in ("method", "data", "config_hash") if k in parent} if parent else None,
        "inputs": list(data),
        "training_manifest": str((Path(config.output_dir) / "manifest.json").resolve()),
        "created_at": now(),
        "eval_anything": __version__,
        "format_version": 1,
    }


def training_arguments(cls: type, config: TrainConfig, **extra: Any) -> Any:
    """The TRL/transformers config for a stage: CPU unless CUDA, gloo for multi-process CPU."""
    import torch

    kwargs: dict[str, Any] = dict(
        output_dir=str(Path(config.output_dir) / CHECKPOINTS_DIR), max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate, logging_steps=1, report_to=resolve_report_to(config.report_to),
        **resolve(config).trainer_flags({f.name for f in dataclasses.fields(cls)}),
        seed=config.seed, save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps or 500,
        save_total_limit=2, disable_tqdm=True, dataloader_num_workers=0, deepspeed=config.deepspeed,
    )
    if "max_length" in {f.name for f in dataclasses.fields(cls)}:
        kwargs["max_length"] = config.max_length
    if not torch.cuda.is_available():
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1 or config.deepspeed
        if distributed:
            kwargs["ddp_backend"] = "gloo"  # accelerate picks no backend without a GPU (see the notes)
        else:
            kwargs["use_cpu"] = True
    kwargs.update(extra)
    return cls(**kwargs)


def lora_config(config: TrainConfig, task_type: str) -> Any:
    if not config.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules=list(config.lora_targets),
                      task_type=task_type)


def _last_checkpoint(output_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = output_dir / CHECKPOINTS_DIR
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def run_training(stage: str, config: TrainConfig, data_path: str,
                 build: Callable[[], tuple[Any, Any]], method: str | None = None,
                 callbacks: Sequence[Any] = (), lineage_extra: dict[str, Any] | None = None,
                 extra_inputs: Sequence[str] = (), save: Callable[[Any, Path], None] | None = None) -> TrainResult:
    """Skip if complete, else build the trainer, resume from the last checkpoint, save `model/` with lineage
    (`save(model, folder)` for a model that is not a transformers one)."""
    out = Path(config.output_dir)
    artifact = Artifact(out)
    data = [fingerprint(data_path), *(fingerprint(path) for path in extra_inputs)]
    base = fingerprint(config.model)
    if artifact.open(stage, config, data + [base], model={"reference": config.model}):
        manifest = artifact.manifest() or {}
        log.info("%s: %s is complete; nothing to do", stage, out)
        return TrainResult(out, out / MODEL_DIR, manifest, skipped=True, losses=manifest.get("losses", []))
    trainer, processor = build()
    cast_trained(trainer.model, resolve(config))
    quiet_progress(trainer)
    trainer.add_callback(metrics_callback(out))
    for callback in callbacks:
        trainer.add_callback(callback)
    resume = _last_checkpoint(out)
    if resume:
        log.info("%s: resuming from %s", stage, resume)
    trainer.train(resume_from_checkpoint=resume)
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    info = {**lineage(method or stage, config, data, base), **(lineage_extra or {})}
    final = out / MODEL_DIR
    partial = out / (MODEL_DIR + ".partial")
    if trainer.is_world_process_zero():
        shutil.rmtree(partial, ignore_errors=True)
    model = trainer.model
    if config.lora and hasattr(model, "merge_and_unload"):
        model = trainer.accelerator.unwrap_model(model).merge_and_unload()
        if trainer.is_world_process_zero():
            model.save_pretrained(partial)
    elif save is not None:
        if trainer.is_world_process_zero():
            save(trainer.accelerator.unwrap_model(model), partial)
    else:
        trainer.save_model(str(partial))  # gathers the weights under DeepSpeed; writes on rank 0
    if not trainer.is_world_process_zero():
        return TrainResult(out, final, {}, losses=losses, resumed_from=resume)
    processor.save_pretrained(partial)
    write_json_atomic(partial / LINEAGE_FILE, info)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    metrics = {k: v for k, v in trainer.state.log_history[-1].items()} if trainer.state.log_history else {}
    manifest = artifact.finish(losses=losses, resumed_from=resume, global_step=trainer.state.global_step,
                               final_metrics=metrics, lineage=info, model_dir=str(final),
                               precision=resolve(config).to_json(),
                               distributed=_distributed(trainer.accelerator))
    log.info("%s: trained %d steps, loss %s -> %s; checkpoint %s", stage, trainer.state.global_step,
             f"{losses[0]:.4f}" if losses else "?", f"{losses[-1]:.4f}" if losses else "?", final)
    return TrainResult(out, final, manifest, losses=losses, resumed_from=resume)


def _distributed(accelerator: Any) -> dict[str, Any]:
    """How the run was spread: accelerate's distributed type, process count, ZeRO stage, backend."""
    state = accelerator.state
    plugin = getattr(state, "deepspeed_plugin", None)
    import torch.distributed as dist

    return {"type": str(state.distributed_type).split(".")[-1], "processes": state.num_processes,
            "zero_stage": plugin.zero_stage if plugin is not None else None,
            "backend": dist.get_backend() if dist.is_available() and dist.is_initialized() else None}


def _dataset(rows: list[dict[str, Any]]) -> Any:
    import datasets
    from datasets import Dataset

    datasets.disable_progress_bars()
    if not rows:
        raise UsageError("no training examples")
    return Dataset.from_list(rows)


def _limit(records: list[Any], limit: int | None) -> list[Any]:
    return records if limit is None else records[:limit]


# -- stages -------------------------------------------------------------------------------------

def train_critic(config: CriticSFTConfig, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Critic SFT: the critique given the critique prompt (prompt, response); loss on the critique only."""

    def build():
        from trl import SFTConfig, SFTTrainer

        model, processor, inputs = load_stage_model(config)
        tokenizer = getattr(processor, "tokenizer", processor)
        rows = []
        for record in _limit(load_llf_records(config.data), config.limit):
            if not record.response or not record.critique:
                continue
            prompt, _ = render_prompt(inputs, record.parts(critique_prompt(record)))
            rows.append({"prompt": prompt, "completion": record.critique,
                         "media": [{"modality": m.modality, "path": m.path} for m in record.media]})
        media = _media_rows(rows, tokenizer.eos_token, ("completion",))
        args = training_arguments(SFTConfig, config, completion_only_loss=True, remove_unused_columns=not media,
                                  **({"max_length": None} if media else {}))
        trainer = SFTTrainer(model=model, args=args, train_dataset=_dataset(rows), processing_class=processor,
                             data_collator=MediaCollator(inputs, config.max_length, ("completion",)) if media else None,
                             peft_config=lora_config(config, "CAUSAL_LM"))
        return trainer, processor

    return run_training("critic-sft", config, config.data, build, callbacks=callbacks)


def preference_rows(records: Sequence[Any], inputs: Any) -> list[dict[str, Any]]:
    """TRL preference rows: the rendered prompt, chosen, rejected, and media references."""
    rows = []
    for record in records:
        prompt, _ = render_prompt(inputs, record.parts())
        rows.append({"prompt": prompt, "chosen": record.chosen, "rejected": record.rejected,
                     "media": [{"modality": m.modality, "path": m.path} for m in record.media]})
    return rows


def dpo_trainer(config: DPOConfig) -> tuple[Any, Any]:
    """The TRL DPOTrainer for a DPO stage config (also used by benchmarks/train_overhead.py)."""
    from trl import DPOConfig as TRLDPOConfig, DPOTrainer

    model, processor, inputs = load_stage_model(config)
    tokenizer = getattr(processor, "tokenizer", processor)
    rows = preference_rows(_limit(load_preference_records(config.pairs), config.limit), inputs)
    media = _media_rows(rows, tokenizer.eos_token, ("chosen", "rejected"))
    args = training_arguments(TRLDPOConfig, config, beta=config.beta, max_length=None if media else config.max_length,
                              remove_unused_columns=not media, **reference_loading(config))
    trainer = DPOTrainer(model=model, args=args, train_dataset=_dataset(rows), processing_class=processor,
                         data_collator=MediaCollator(inputs, config.max_length, ("chosen", "rejected")) if media else None,
                         peft_config=lora_config(config, "CAUSAL_LM"))
    return trainer, processor


def train_dpo(config: DPOConfig, method: str | None = None, callbacks: Sequence[Any] = (),
              lineage_extra: dict[str, Any] | None = None) -> TrainResult:
    """DPO on preference pairs (beta 0.1 by default, as in the paper)."""
    return run_training("dpo", config, config.pairs, lambda: dpo_trainer(config), method=method,
                        callbacks=callbacks, lineage_extra=lineage_extra)


def train_reward_model(config: RMConfig, callbacks: Sequence[Any] = ()) -> TrainResult:
    """A scalar reward model r with loss -log sigmoid(r(chosen) - r(rejected)): TRL's RewardTrainer on a
    sequence-classification model for text; for prompts with images, audio or video, the generative model
    plus a score head (align/score_model.py), its inputs encoded as evaluation encodes them."""
    if any(r.media for r in _limit(load_preference_records(config.pairs), config.limit)):
        return run_training("rm", config, config.pairs, lambda: _media_reward_trainer(config), callbacks=callbacks,
                            save=lambda model, folder: model.save(folder))

    def build():
        from trl import RewardConfig, RewardTrainer

        model, processor, inputs = load_stage_model(config, head="reward")
        tokenizer = getattr(processor, "tokenizer", processor)
        rows = preference_rows(_limit(load_preference_records(config.pairs), config.limit), inputs)
        _media_rows(rows, tokenizer.eos_token, ())
        args = training_arguments(RewardConfig, config)
        trainer = RewardTrainer(model=model, args=args, train_dataset=_dataset(rows), processing_class=tokenizer,
                                peft_config=lora_config(config, "SEQ_CLS"))
        return trainer, tokenizer

    return run_training("rm", config, config.pairs, build, callbacks=callbacks)


def _media_reward_trainer(config: RMConfig) -> tuple[Any, Any]:
    import torch
    import transformers

    from eval_anything.align.score_model import new_score_model

    if config.lora:
        raise UsageError("rm: lora is not supported for a reward model on media (it trains the whole model)")
    generative, processor, inputs = load_stage_model(config)
    tokenizer = getattr(processor, "tokenizer", processor)
    rows = preference_rows(_limit(load_preference_records(config.pairs), config.limit), inputs)
    _media_rows(rows, tokenizer.eos_token, ("chosen", "rejected"))

    class ScoreHeadTrainer(transformers.Trainer):
        """Bradley-Terry loss on the score at the last token; logs accuracy and margin as TRL's RewardTrainer."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.seen: list[tuple[float, float]] = []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = {k: v for k, v in inputs.items() if k != "completion_mask"}
            chosen, rejected = model(**inputs).chunk(2)
            loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
            with torch.no_grad():
                self.seen.append((float((chosen > rejected).float().mean()), float((chosen - rejected).mean())))
            return (loss, {"chosen": chosen, "rejected": rejected}) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            if self.seen and "loss" in logs:
                logs = {**logs, "accuracy": sum(a for a, _ in self.seen) / len(self.seen),
                        "margin": sum(m for _, m in self.seen) / len(self.seen)}
                self.seen.clear()
            return super().log(logs, *args, **kwargs)

    args = training_arguments(transformers.TrainingArguments, config, remove_unused_columns=False)
    trainer = ScoreHeadTrainer(model=new_score_model(generative), args=args, train_dataset=_dataset(rows),
                               data_collator=MediaCollator(inputs, config.max_length, ("chosen", "rejected")))
    return trainer, processor
