"""Secrets never written down: model arguments and command lines with the values of secret-looking
names (key, token, secret, password) hidden. A name ending in `_env` names a variable, not a secret,
and is kept."""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

REDACTED = "<redacted>"
_SECRET_NAME = r"[\w-]*(?:key|token|secret|password)[\w-]*"
_SECRET_KEY = re.compile(_SECRET_NAME, re.IGNORECASE)
_SECRET_ASSIGNMENT = re.compile(rf"({_SECRET_NAME}=)[^,\s]+", re.IGNORECASE)


def _secret(name: str) -> bool:
    return bool(_SECRET_KEY.fullmatch(name)) and not name.endswith("_env")


def redact(args: Mapping[str, Any]) -> dict[str, Any]:
    """Model arguments safe to write down: values of secret-looking keys are hidden."""
    return {k: (REDACTED if _secret(k) else v) for k, v in args.items()}


def redact_command(argv: Sequence[str]) -> list[str]:
    """The command line with the values of secret-looking key=value arguments hidden."""
    return [_SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED if _secret(m.group(1)[:-1]) else m.group(0), arg)
            for arg in argv]


def was_redacted(text: Any) -> bool:
    """Whether something written down by this module had a secret taken out."""
    return REDACTED in str(text)
