"""Strict parsers for judge replies. Each returns the verdict or raises JudgeParseError."""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

_BRACKETED = re.compile(r"\[\[\s*([^\[\]]{1,20}?)\s*\]\]")


class JudgeParseError(ValueError):
    """The reply does not hold a verdict in the required form."""


def _bracketed(text: str) -> list[str]:
    return _BRACKETED.findall(text)


def parse_rating(text: str, low: float, high: float) -> float:
    """The first `[[N]]` in the reply (e.g. `Rating: [[7]]`), which must lie on the scale."""
    for candidate in _bracketed(text):
        try:
            value = float(candidate)
        except ValueError:
            continue
        if not low <= value <= high:
            raise JudgeParseError(f"rating {candidate} is off the scale {low:g}-{high:g}")
        return value
    raise JudgeParseError(f"no rating of the form [[N]] ({low:g}-{high:g}) in the reply")


def parse_choice(text: str, letters: Sequence[str]) -> str:
    """A choice letter: `[[B]]` if present, else the first standalone letter among `letters`."""
    allowed = {letter.upper() for letter in letters}
    for candidate in _bracketed(text):
        if candidate.upper() in allowed:
            return candidate.upper()
    match = re.search(rf"(?<![A-Za-z])([{''.join(sorted(allowed))}])(?![A-Za-z])", text)
    if match:
        return match.group(1)
    raise JudgeParseError(f"no choice among {', '.join(sorted(allowed))} in the reply")


PAIRWISE_VERDICTS = {"A": "A", "B": "B", "C": "tie", "TIE": "tie"}


def parse_pairwise(text: str) -> str:
    """`[[A]]`, `[[B]]` or `[[C]]`/`[[tie]]` (a tie), the first one in the reply."""
    for candidate in _bracketed(text):
        verdict = PAIRWISE_VERDICTS.get(candidate.strip().upper())
        if verdict:
            return verdict
    raise JudgeParseError("no verdict [[A]], [[B]] or [[C]] (tie) in the reply")


def parse_json_object(text: str, required: Sequence[str] = ()) -> dict[str, Any]:
    """The first JSON object in the reply, which must have the `required` keys."""
    start = text.find("{")
    if start < 0:
        raise JudgeParseError("no JSON object in the reply")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise JudgeParseError(f"malformed JSON in the reply: {exc.msg}") from None
    if not isinstance(value, dict):
        raise JudgeParseError("the JSON in the reply is not an object")
    missing = [key for key in required if key not in value]
    if missing:
        raise JudgeParseError(f"the JSON reply lacks {', '.join(missing)}")
    return value


def explanation_of(text: str) -> str | None:
    """The judge's reasoning: an `<Explanation>: [[...]]`/`Explanation:` section, else the reply."""
    match = re.search(r"Explanation>?\s*:?\s*(?:\[\[)?(.+?)(?:\]\])?\s*$", text, re.IGNORECASE | re.DOTALL)
    explanation = (match.group(1) if match else text).strip()
    return explanation[:2000] or None


# --- the original authors' parsers (protocol: paper), reproduced as their scripts wrote them -----

_PAPER_RATING = re.compile(r"\[\[(\d+)\]\]")
_PAPER_SCORE = re.compile(r"<Score>: \[\[(.*)\]\]")
_PAPER_EXPLANATION = re.compile(r"<Explanation>: \[\[(.*)\]\]")
_PAPER_LETTER = re.compile(r"\b(A|B|C|D)\b")


def parse_bracketed_int(text: str) -> int:
    """AMU's judge reply (amu/gpt_eval_amu.py): the first `[[digits]]`, as an integer, with no
    check that it lies on the 1-10 scale."""
    match = _PAPER_RATING.search(text)
    if match is None:
        raise JudgeParseError("no [[N]] (digits) in the reply")
    return int(match.group(1))


def parse_score_and_explanation(text: str) -> int:
    """The instruction-following judges' reply (amg/if/{text,image}_instruct/eval_instruct.py): both
    `<Score>: [[...]]` and `<Explanation>: [[...]]` must be present, each on one line; the score is
    the integer inside the first (greedy to the line's last `]]`, as the original's `(.*)`). A score
    that is not an integer is unparseable (the original raises there)."""
    score, explanation = _PAPER_SCORE.search(text), _PAPER_EXPLANATION.search(text)
    if score is None or explanation is None:
        missing = " and ".join(n for n, m in (("<Score>: [[n]]", score), ("<Explanation>: [[...]]", explanation))
                               if m is None)
        raise JudgeParseError(f"the reply lacks {missing}")
    try:
        return int(score.group(1))
    except ValueError:
        raise JudgeParseError(f"<Score> holds {score.group(1)[:40]!r}, not an integer") from None


def parse_letter_as_published(text: str) -> str:
    """The audio/video answer models' reply (amg/if/{audio,video}_instruct/eval_instruct.py): upper-cased
    and stripped, the first standalone A, B, C or D; "" when there is none (the original scores that
    as a wrong answer, and so do we, marking it an extraction failure)."""
    match = _PAPER_LETTER.search(text.upper().strip())
    return match.group(1) if match else ""
