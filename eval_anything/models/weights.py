"""Where a model's weights are: a local folder, or a Hub id `ORG/NAME[@REVISION]` resolved through
huggingface_hub's own cache and snapshot functions (no downloader of our own).

huggingface_hub reads HF_HOME / HF_HUB_CACHE (where the cache is), HF_HUB_OFFLINE (no network) and
HF_TOKEN (gated and private repos) from the environment itself; the token is never passed, kept or
written by this module. A Hub id resolves to the snapshot folder of one commit: that commit's sha
is what a run records, so a branch that moves cannot silently change a result.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from eval_anything.errors import UsageError, UserError

DEFAULT_REVISION = "main"


@dataclass(frozen=True)
class ResolvedWeights:
    """A model name as the user gave it, and the folder that holds its files."""

    path: Path
    """The folder to load from: the local directory, or the Hub cache's snapshot folder."""
    repo_id: str | None = None
    """The Hub id (ORG/NAME); None for a local directory."""
    revision: str | None = None
    """The revision asked for (a branch, tag or sha; main when none was given); None for a local directory."""
    commit_sha: str | None = None
    """The commit the revision resolved to; None for a local directory."""

    def identity(self) -> dict[str, str]:
        """What a run records of Hub weights (nothing for a local directory)."""
        if self.repo_id is None:
            return {}
        return {"repo_id": self.repo_id, "revision": str(self.revision), "commit": str(self.commit_sha)}


class WeightsNotFoundError(UserError, FileNotFoundError):
    """A model name is neither a local model directory nor a Hub id that can be resolved."""


def split_revision(name: str, revision: str | None = None) -> tuple[str, str | None]:
    """`ORG/NAME@REV` into (ORG/NAME, REV); a `revision` given beside it must agree."""
    base, sep, suffix = name.partition("@")
    if not sep:
        return name, revision
    if not suffix:
        raise UsageError(f"model {name!r}: nothing after '@'; write ORG/NAME@REVISION")
    if revision is not None and revision != suffix:
        raise UsageError(f"model {name!r} names revision {suffix!r} but revision={revision!r} was given; keep one")
    return base, suffix


def resolve_weights(name: str, revision: str | None = None) -> ResolvedWeights:
    """A local directory as it is; otherwise `name` (`ORG/NAME` or `ORG/NAME@REV`) as a Hub id, through
    `snapshot_download` (offline: the cache only). Raises WeightsNotFoundError naming what to do."""
    if not name.strip():
        raise UsageError("no model named: give a model directory or a Hub id ORG/NAME[@REVISION]")
    local = Path(name).expanduser()
    if local.is_dir():
        if revision is not None:
            raise UsageError(f"revision={revision!r} applies to Hub ids; {name} is a local directory")
        return ResolvedWeights(local)
    repo_id, revision = split_revision(name, revision)
    if revision is None and Path(repo_id).expanduser().is_dir():
        return ResolvedWeights(Path(repo_id).expanduser())  # a local folder whose name has '@' in it
    _check_hub_id(name, repo_id)
    return _snapshot(repo_id, revision or DEFAULT_REVISION)


@functools.lru_cache(maxsize=64)
def pinned_name(name: str) -> str:
    """`name` as a run's identity holds it: a local directory as given, a Hub id as ORG/NAME@COMMIT,
    so that a revision that moves (main) makes another run id. Resolved once per process."""
    weights = resolve_weights(name)
    return name if weights.repo_id is None else f"{weights.repo_id}@{weights.commit_sha}"


def names_a_path(name: str) -> bool:
    """`name` is written as a filesystem path (it exists, or starts with `.`, `/` or `~`, or has more
    than one `/`), not as a Hub id."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1


def _check_hub_id(name: str, repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        if names_a_path(repo_id):
            raise HFValidationError(repo_id)
        validate_repo_id(repo_id)
    except HFValidationError:
        raise WeightsNotFoundError(f"model {name}: no such directory, and not a Hub id (ORG/NAME[@REVISION])") from None


def _snapshot(repo_id: str, revision: str) -> ResolvedWeights:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=constants.HF_HUB_OFFLINE))
    except GatedRepoError:  # (the error classes below are subclasses of the ones after them)
        raise WeightsNotFoundError(f"model {repo_id}@{revision}: the repository is gated; accept its terms on "
                                   "the Hub and set HF_TOKEN (or run `hf auth login`)") from None
    except RevisionNotFoundError:
        raise WeightsNotFoundError(f"model {repo_id}: the Hub has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise WeightsNotFoundError(f"model {repo_id}: no such repository on the Hub (or it is private: set "
                                   "HF_TOKEN)") from None
    except (LocalEntryNotFoundError, OSError) as exc:  # not cached, and offline or the Hub unreachable
        raise WeightsNotFoundError(_not_cached(repo_id, revision, constants.HF_HUB_CACHE, exc)) from None
    return ResolvedWeights(folder, repo_id, revision, folder.name)  # snapshots/<commit sha>/


def _ships_hf_cli() -> bool:
    """huggingface_hub 0.34 and later ship the `hf` command (and 1.0 dropped `huggingface-cli`)."""
    from huggingface_hub import __version__

    major, minor = (int(part) if part.isdigit() else 0 for part in __version__.split(".")[:2])
    return (major, minor) >= (0, 34)


def _not_cached(repo_id: str, revision: str, cache: str, exc: BaseException) -> str:
    command = "hf download" if _ships_hf_cli() else "huggingface-cli download"
    why = "HF_HUB_OFFLINE is set" if "offline" in str(exc).lower() or "outgoing" in str(exc).lower() \
        else "the Hub cannot be reached"
    return (f"model {repo_id} revision {revision} is not in the Hugging Face cache {cache} and {why}: "
            f"on a machine with network run `{command} {repo_id} --revision {revision}` "
            f"(with the same HF_HOME / HF_HUB_CACHE), then rerun")
