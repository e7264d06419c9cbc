"""Turning a tagged any-to-any answer into output parts: the text response, media the model made
itself, and media rendered from its instructions by generators. What cannot be rendered is noted
with the reason, so the scores that need it are not applicable rather than wrong."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

from eval_anything.datamodel import Modality, ModelOutput, Part
from eval_anything.suite.generators import Generator, GeneratorError
from eval_anything.suite.tagged import SECTION_PARSERS, combination


def render_answer(output: ModelOutput, generators: Mapping[Modality, Generator], media_dir: Path,
                  key: str, sections_by: str = "tagged") -> ModelOutput:
    """The answer with its used sections (read by `SECTION_PARSERS[sections_by]`) as parts."""
    if output.error:
        return output
    sections = SECTION_PARSERS[sections_by](output.text)
    native = [p for p in output.parts if p.modality is not Modality.TEXT]
    parts = [Part.of_text(sections[Modality.TEXT])] if Modality.TEXT in sections else []
    parts += native
    not_rendered: dict[str, str] = {}
    rendered: dict[str, str] = {}
    for modality, instruction in sections.items():
        if modality is Modality.TEXT or any(p.modality is modality for p in native):
            continue
        generator = generators.get(modality)
        if generator is None:
            not_rendered[modality.value] = (f"no generator for {modality.value} "
                                            f"(give one with --generator {modality.value}=NAME)")
            continue
        target = media_dir / f"{_safe(key)}_{modality.value}{generator.suffix}"
        try:
            path = target if target.exists() else generator.render(instruction, target)  # reuse on resume
        except GeneratorError as exc:
            not_rendered[modality.value] = f"{generator.name} failed: {exc}"
            continue
        parts.append(Part.of_file(modality, path, generator=generator.name, instruction=instruction))
        rendered[modality.value] = generator.name
    chosen = combination(set(sections) | {p.modality for p in native}) or "t"
    metadata = {**output.metadata, "tagged": {m.value: t for m, t in sections.items()}, "chosen": chosen,
                **({"rendered_by": rendered} if rendered else {}),
                **({"not_rendered": not_rendered} if not_rendered else {})}
    text = sections.get(Modality.TEXT, "")
    return ModelOutput(text=text, raw_text=output.raw_text or output.text, parts=tuple(parts), usage=output.usage,
                       latency_s=output.latency_s, metadata=metadata)


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:120]
