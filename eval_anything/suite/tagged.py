"""Reading tagged any-to-any answers: `[[response]]`, `[[image_instruction]]`,
`[[audio_instruction]]`, `[[video_instruction]]`, and which output modalities an answer chose."""
from __future__ import annotations

import re
from typing import Iterable

from eval_anything.datamodel import Modality, ModelOutput

TAGS = {"response": Modality.TEXT, "image_instruction": Modality.IMAGE,
        "audio_instruction": Modality.AUDIO, "video_instruction": Modality.VIDEO}
_TAG = re.compile(r"\[\[\s*(" + "|".join(TAGS) + r")\s*\]\]\s*:?", re.IGNORECASE)
_EMPTY = {"", "none", "n/a", "null", "-"}
LETTER = {Modality.TEXT: "t", Modality.IMAGE: "i", Modality.AUDIO: "a", Modality.VIDEO: "v"}
"""Combination codes as the published selection data writes them, in the order t, i, a (then v)."""


def parse_tagged(text: str) -> dict[Modality, str]:
    """The used sections of a tagged answer, by modality. A section counts when it is non-empty
    and not "None"; an answer with no tags at all is a plain text response."""
    matches = list(_TAG.finditer(text))
    if not matches:
        return {Modality.TEXT: text.strip()} if text.strip() else {}
    sections: dict[Modality, str] = {}
    for match, following in zip(matches, [*matches[1:], None]):
        body = text[match.end(): following.start() if following else len(text)].strip()
        if body.lower().strip(" .") not in _EMPTY:
            sections.setdefault(TAGS[match.group(1).lower()], body)
    return sections


def combination(modalities: Iterable[Modality]) -> str:
    """The combination code of a set of output modalities, e.g. {TEXT, AUDIO} -> "ta"."""
    chosen = set(modalities)
    return "".join(letter for modality, letter in LETTER.items() if modality in chosen)


def chosen_modalities(output: ModelOutput) -> frozenset[Modality]:
    """What an answer chose to output: its used tagged sections plus any media it produced natively;
    an answer that chose nothing counts as text (as the paper's scripts do)."""
    tagged = output.metadata.get("tagged")
    sections = {Modality(m) for m in tagged} if tagged is not None else set(parse_tagged(output.text))
    native = {p.modality for p in output.parts if p.modality is not Modality.TEXT}
    return frozenset(sections | native) or frozenset({Modality.TEXT})
