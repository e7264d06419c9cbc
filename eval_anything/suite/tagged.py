"""Reading tagged any-to-any answers: `[[response]]`, `[[image_instruction]]`,
`[[audio_instruction]]`, `[[video_instruction]]`, and which output modalities an answer chose."""
from __future__ import annotations

import re
from typing import Callable, Iterable

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


_PAPER_MARKERS = (("[[response]]:", Modality.TEXT), ("[[image_instruction]]:", Modality.IMAGE),
                  ("[[audio_instruction]]:", Modality.AUDIO))


def parse_tagged_as_published(text: str) -> dict[Modality, str]:
    """The used sections as the original selection script decides them (amg/selection/example.py,
    `parse_modality`), reproduced with its quirks, which change which combination an answer scores:

    * markers are matched exactly and case-sensitively (`[[response]]:` with its colon);
    * a section's content for the check is the text from its marker to the next marker in the
      order response, image, audio (or, for a missing next marker, to the text's last character,
      which Python's slice `[start:-1]` leaves out), split at colons, the part after the first one;
    * it counts when that is non-empty and not exactly "none" (any case), so "None." and "N/A" count;
    * no section counted: text.

    Where the original crashes (a marker out of order leaves an empty slice, and `''.split(':')[1]`
    raises), the content runs to the next marker in the text instead. The returned sections hold
    the full text after each counted marker up to the next marker, for the generators."""
    starts = [(text.find(marker), marker, modality) for marker, modality in _PAPER_MARKERS]
    sections: dict[Modality, str] = {}
    for index, (start, marker, modality) in enumerate(starts):
        if start == -1:
            continue
        next_in_text = min((s for s, _, _ in starts if s > start), default=len(text))
        # the next marker in the fixed order; its -1 when absent slices off the last character, as there
        checked = text[start:starts[index + 1][0]] if index + 1 < len(starts) else text[start:]
        pieces = checked.split(":")
        if len(pieces) < 2:  # the original's IndexError: a later marker comes first
            pieces = text[start:next_in_text].split(":")
        content = pieces[1].strip()
        if content and content.lower() != "none":
            sections[modality] = text[start + len(marker):next_in_text].strip()
    return sections if sections else {Modality.TEXT: text.strip()}


def whole_answer_as(modality: Modality) -> "Callable[[str], dict[Modality, str]]":
    """The whole answer is the instruction for one generator, as the original instruction-following
    scripts ask the model for (amg/if/{image,audio,video}_instruct/example.py)."""
    return lambda text: {modality: text.strip()} if text.strip() else {}


SECTION_PARSERS = {"tagged": parse_tagged, "as_published": parse_tagged_as_published,
                   **{f"instruction:{m.value}": whole_answer_as(m) for m in (Modality.IMAGE, Modality.AUDIO, Modality.VIDEO)}}
"""How an any-to-any answer's used sections are read: ours (tagged: lenient, any case, with or
without colons, "None."/"N/A" empty), the original selection script's (as_published), or the whole
answer as one generator's instruction (instruction:image, instruction:audio, instruction:video)."""


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
