"""The LLF conversations: what the policy, the critic and the refiner are shown.

Structured as align-anything's projects/lang_feedback scripts (base_gen, critique_gen, refine_gen),
in our own words:

* sample: the prompt as the one user turn;
* critique: one user turn holding the prompt and the response, labelled, and a request for a
  critique and a refinement (critique_gen puts both in its USER turn);
* refine: the conversation so far — the prompt as the user turn, the response as the assistant's
  answer — then the critique as the next user turn with a request to rewrite the answer
  (refine_gen's USER / ASSISTANT / USER).

Media placeholders written into the text (`<image>`, `<video>`, `<audio>`) are replaced by the
plain word, as the scripts do for `<image>`: the media themselves travel as parts and the backend
places their tokens, so a literal placeholder would add a second, empty slot.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from eval_anything.datamodel import Turn

PLACEHOLDERS = {"<image>": "image", "<video>": "video", "<audio>": "audio"}
"""Placeholder -> the word that replaces it (lang_feedback writes ' image ' for '<image>')."""

CRITIQUE_REQUEST = "##Prompt: {prompt}\n##Response: {response}\nWrite your critique of the response and its refinement:"
"""The critic's one user turn, in training (critic-sft) and in use (critique)."""

REFINE_REQUEST = ("{critique}\nNow rewrite your answer above, following the critique and the refinement "
                  "it suggests. Write only the improved answer.")
"""The refiner's last user turn, after the prompt and its first answer."""


TEMPLATES = {"sample": "{prompt}", "critique": CRITIQUE_REQUEST,
             "refine": ["user: {prompt}", "assistant: {response}", "user: " + REFINE_REQUEST]}
"""What each stage is shown, as recorded in its manifest (a change of wording is a change of identity)."""


def template_fingerprint(stage: str) -> dict:
    """The stage's conversation template as an input of its artefact: text and hash."""
    text = json.dumps({"template": TEMPLATES[stage], "placeholders": PLACEHOLDERS}, sort_keys=True)
    return {"path": f"prompts:{stage}", "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "template": TEMPLATES[stage]}


@dataclass(frozen=True)
class Conversation:
    """What one generation is shown: earlier turns, then the user turn that asks for it."""

    history: tuple[Turn, ...]
    """Earlier turns, oldest first (Request.history): the media go into the first user turn."""
    request: str
    """The last user turn's text."""


def strip_placeholders(text: str) -> str:
    for placeholder, word in PLACEHOLDERS.items():
        text = text.replace(placeholder, f" {word} ")
    return text


def sample_conversation(prompt: str) -> Conversation:
    return Conversation((), strip_placeholders(prompt))


def critique_conversation(prompt: str, response: str) -> Conversation:
    return Conversation((), CRITIQUE_REQUEST.format(prompt=strip_placeholders(prompt),
                                                    response=strip_placeholders(response)))


def refine_conversation(prompt: str, response: str, critique: str) -> Conversation:
    history = (Turn("user", strip_placeholders(prompt)), Turn("assistant", strip_placeholders(response)))
    return Conversation(history, REFINE_REQUEST.format(critique=strip_placeholders(critique)))
