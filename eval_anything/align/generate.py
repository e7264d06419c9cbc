"""The generation stages: sample, critique, refine — and pairs, which only rearranges.

All generation goes through the project's own backends (`eval_anything.models`: HFModel.generate
with Request objects), so media are handled exactly as in `eval-anything run`. What each stage is
shown is in prompts.py (the authors' lang_feedback conversations); their sampling (temperature 1.0,
repetition penalty 1.1, up to 2048 new tokens, 4096 to refine) is the stages' default, and the
shipped smoke preset (configs/smoke.yaml) makes it greedy and short for tests.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from eval_anything.align.artifacts import Artifact, fingerprint, write_records
from eval_anything.align.config import CritiqueConfig, GeneratingStageConfig, PairsConfig, RefineConfig, SampleConfig
from eval_anything.align.data import llf_pairs, load_llf_records
from eval_anything.align.prompts import (Conversation, critique_conversation, refine_conversation, sample_conversation,
                                        template_fingerprint)
from eval_anything.align.records import LLFRecord

log = logging.getLogger("eval_anything.align")

def critique_prompt(record: LLFRecord) -> str:
    """The critic's input text, in training (critic-sft) and in use (critique)."""
    return critique_conversation(record.prompt, record.response or "").request


def _sample_conversation(record: LLFRecord) -> Conversation:
    return sample_conversation(record.prompt)


def _critique_conversation(record: LLFRecord) -> Conversation:
    return critique_conversation(record.prompt, record.response or "")


def _refine_conversation(record: LLFRecord) -> Conversation:
    return refine_conversation(record.prompt, record.response or "", record.critique or "")


def stage_request(stage: str, record: LLFRecord, conversation: Conversation, generation: Any) -> Any:
    """The backend request for one record: its media and the conversation's last turn as parts,
    the earlier turns as history."""
    from eval_anything.datamodel import Request

    return Request(task=stage, sample_id=record.id, variant=0, parts=record.parts(conversation.request),
                   history=conversation.history, generation=generation)


def _load_backend(reference: str, config: GeneratingStageConfig):
    from eval_anything.models import backend_traits, load_model, resolve_spec

    spec = resolve_spec(reference)
    traits = backend_traits(spec.backend)
    if traits.batch_size_flag:  # a backend whose batch the flags set takes the stage's batch and frames
        spec = resolve_spec(reference, {traits.batch_argument: config.batch_size, "video_frames": config.video_frames})
    return load_model(spec)


def _generate_stage(stage: str, config: GeneratingStageConfig, model_ref: str, source: str,
                    records: Sequence[LLFRecord], converse: Callable[[LLFRecord], Conversation], fill: str) -> Artifact:
    from eval_anything.datamodel import GenerationConfig

    artifact = Artifact(config.output_dir)
    inputs = [fingerprint(source), fingerprint(model_ref), template_fingerprint(stage)]
    if artifact.open(stage, config, inputs, model={"reference": model_ref}):
        log.info("%s: %s is complete; nothing to do", stage, artifact.path)
        return artifact
    if config.limit is not None:
        records = records[: config.limit]
    done = artifact.done()
    todo = [r for r in records if r.id not in done]
    errors: dict[str, str] = {}
    if todo:
        model = _load_backend(model_ref, config)
        generation = GenerationConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                      top_p=config.top_p, seed=config.seed,
                                      repetition_penalty=config.repetition_penalty)
        try:
            for start in range(0, len(todo), config.batch_size):
                chunk = todo[start : start + config.batch_size]
                requests = [stage_request(stage, r, converse(r), generation) for r in chunk]
                outputs = model.generate(requests)
                finished = []
                for record, output in zip(chunk, outputs):
                    if output.error is not None:
                        errors[record.id] = output.error
                    else:
                        finished.append(record.with_(**{fill: output.text}))
                write_records(artifact, finished)  # fsynced per batch: a kill loses at most this batch
        finally:
            model.close()
    manifest = artifact.finish(generated=len(todo) - len(errors), resumed=len(done), errors=errors)
    log.info("%s: %d records in %s (%d generated, %d errors)", stage, manifest["count"], artifact.path,
             len(todo) - len(errors), len(errors))
    return artifact


def run_sample(config: SampleConfig) -> Artifact:
    """y ~ policy(. | x) for every prompt record."""
    records = [r.with_(response=None, critique=None, refinement=None) for r in load_llf_records(config.prompts)]
    return _generate_stage("sample", config, config.policy, config.prompts, records, _sample_conversation, "response")


def run_critique(config: CritiqueConfig) -> Artifact:
    """c = critic(x, y) for every sampled response."""
    records = [r for r in load_llf_records(config.responses) if r.response]
    return _generate_stage("critique", config, config.critic, config.responses, records, _critique_conversation, "critique")


def run_refine(config: RefineConfig) -> Artifact:
    """y* = policy(x, y, c) for every critiqued response."""
    records = [r for r in load_llf_records(config.critiques) if r.critique is not None]
    return _generate_stage("refine", config, config.policy, config.critiques, records, _refine_conversation, "refinement")


def run_pairs(config: PairsConfig) -> Artifact:
    """chosen = refinement, rejected = response; identical or empty pairs are dropped."""
    artifact = Artifact(config.output_dir)
    if artifact.open("pairs", config, [fingerprint(config.refinements)]):
        log.info("pairs: %s is complete; nothing to do", artifact.path)
        return artifact
    records = load_llf_records(config.refinements)
    pairs = llf_pairs(records, config.keep_identical)
    write_records(artifact, pairs)
    manifest = artifact.finish(dropped=len(records) - len(pairs))
    log.info("pairs: %d pairs in %s (%d dropped: identical or empty)", manifest["count"], artifact.path,
             len(records) - len(pairs))
    return artifact
