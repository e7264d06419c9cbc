"""A Hugging Face Hub cache laid out on disk (offline): `acme/tiny-llama` at two commits, main and the
tag v2, its files linked to a local model folder. The fixtures `hub_cache` and `offline_cache` are in
conftest.py."""
from __future__ import annotations

from pathlib import Path

REPO = "acme/tiny-llama"
MAIN_SHA = "a" * 40
TAGGED_SHA = "b" * 40


def lay_out(home: Path, model_dir: Path) -> Path:
    """HF_HOME `home` with REPO cached at MAIN_SHA (refs/main) and TAGGED_SHA (refs/v2)."""
    repo = home / "hub" / ("models--" + REPO.replace("/", "--"))
    for sha in (MAIN_SHA, TAGGED_SHA):
        snapshot = repo / "snapshots" / sha
        snapshot.mkdir(parents=True)
        for file in model_dir.iterdir():
            (snapshot / file.name).symlink_to(file)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN_SHA)
    (repo / "refs" / "v2").write_text(TAGGED_SHA)
    return home
