"""Offline data bundles for the published all-modality suite.

`eval-anything data fetch SUITE --to DIR` downloads the suite's datasets with huggingface_hub's
`snapshot_download` (no downloader of our own) into DIR/<dataset folder>, and writes
DIR/eval-anything-data.json: which datasets, from where, and every file's size and sha256.
`--from-dir SNAPSHOT` builds the same bundle from files copied by hand (SNAPSHOT holds the dataset
folders, or is the one dataset folder). `eval-anything data check DIR` verifies a bundle offline
and names every missing, resized or corrupted file. `eval-anything run --data-dir DIR` then runs
the suite on it without touching the network."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from eval_anything.files import file_sha256

# The published names (eval_anything.suite.published, which imports the task schema, is kept out of
# the command line's start-up; a test checks that these agree with it).
AMU_DATASET = "PKU-Alignment/EvalAnything-AMU"
SELECTION_DATASET = "PKU-Alignment/EvalAnything-Selection_Synergy"
IF_DATASET = "PKU-Alignment/EvalAnything-InstructionFollowing"
SELECTION_FILE = "EvalAnything-Selection_Synergy.parquet"
IF_MODALITIES = ("text", "image", "audio", "video")
ALL_LAYOUT = {"amu": "EvalAnything-AMU", "selection": "EvalAnything-Selection_Synergy",
              "instruction_following": "EvalAnything-InstructionFollowing"}

MANIFEST = "eval-anything-data.json"
MANIFEST_FORMAT = 1
REPOS = {"amu": AMU_DATASET, "selection": SELECTION_DATASET, "instruction_following": IF_DATASET}
SUITES = {"amu": ("amu",), "amg": ("selection", "instruction_following"), "selection": ("selection",),
          "instruction_following": ("instruction_following",), "all": tuple(REPOS), "suite": tuple(REPOS)}
SKIP_DIRS = {".cache", ".git", ".eval-anything", ".extracted", "__pycache__"}
"""Folders that are not part of a bundle: hub and git metadata, what runs derive from the data."""


class DataBundleError(ValueError):
    """A bundle cannot be built or is not a bundle; the message says what to do."""


def required_files(part: str) -> list[str]:
    """The files a dataset folder must hold, relative to it (the published layouts)."""
    if part == "amu":
        return ["config.json"]
    if part == "selection":
        return [SELECTION_FILE]
    return [f"data/{m}_instruct/test.json" for m in IF_MODALITIES]



def _bundle_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST
                  and not SKIP_DIRS.intersection(p.relative_to(root).parts))


def _source_folder(snapshot: Path, part: str, parts: tuple[str, ...]) -> Path:
    named = snapshot / ALL_LAYOUT[part]
    if named.is_dir():
        return named
    if len(parts) == 1 and all((snapshot / f).is_file() for f in required_files(part)):
        return snapshot  # SNAPSHOT is the dataset folder itself
    raise DataBundleError(f"{snapshot}: no folder {ALL_LAYOUT[part]} (the files of {REPOS[part]}); copy the dataset "
                          f"there, with {', '.join(required_files(part))}")


def build(suite: str, target: Path, from_dir: Path | None = None, revision: str | None = None) -> dict[str, Any]:
    """Fetch (or copy from `from_dir`) the datasets of `suite` into `target` and write the manifest."""
    if suite not in SUITES:
        raise DataBundleError(f"unknown suite {suite!r}; one of {', '.join(SUITES)}")
    parts = SUITES[suite]
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    datasets = {}
    for part in parts:
        folder = target / ALL_LAYOUT[part]
        if from_dir is not None:
            source = _source_folder(Path(from_dir), part, parts)
            for path in _bundle_files(source):
                dest = folder / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
            origin: dict[str, Any] = {"source": "copied", "from": str(Path(from_dir).resolve())}
        else:
            origin = {"source": "hub", "revision": _download(part, folder, revision)}
        missing = [f for f in required_files(part) if not (folder / f).is_file()]
        if missing:
            raise DataBundleError(f"{folder}: {REPOS[part]} lacks {', '.join(missing)}; the published layout has "
                                  f"{', '.join(required_files(part))} (README, 'Offline data bundles')")
        datasets[ALL_LAYOUT[part]] = {"repo_id": REPOS[part], **origin}
    files = {}
    for part in parts:
        folder = target / ALL_LAYOUT[part]
        for path in _bundle_files(folder):
            files[path.relative_to(target).as_posix()] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    manifest = {"format": MANIFEST_FORMAT, "suite": suite,
                "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "datasets": datasets, "files": files}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _download(part: str, folder: Path, revision: str | None) -> str | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DataBundleError("huggingface_hub is not installed (pip install huggingface_hub), or copy the files by "
                              "hand and use --from-dir") from None
    try:
        snapshot_download(REPOS[part], repo_type="dataset", local_dir=str(folder), revision=revision)
    except Exception as exc:  # offline, refused, missing: the hub's own errors are many
        raise DataBundleError(f"could not download {REPOS[part]} ({type(exc).__name__}: {exc}); offline? copy the "
                              f"dataset's files by hand into a folder {ALL_LAYOUT[part]} and use --from-dir") from None
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(REPOS[part], revision=revision).sha
    except Exception:
        return revision


def check(target: Path) -> list[str]:
    """Every problem of the bundle at `target`, each naming its file; empty when it is intact."""
    target = Path(target)
    path = target / MANIFEST
    if not path.is_file():
        return [f"{target}: no {MANIFEST}; not a data bundle (build one with `eval-anything data fetch`)"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return [f"{path}: not valid JSON ({exc})"]
    if manifest.get("format") != MANIFEST_FORMAT:
        return [f"{path}: format {manifest.get('format')!r}; this version reads {MANIFEST_FORMAT}"]
    problems = []
    for name, meta in manifest.get("files", {}).items():
        file = target / name
        if not file.is_file():
            problems.append(f"{name}: missing")
        elif file.stat().st_size != meta["size"]:
            problems.append(f"{name}: size {file.stat().st_size} bytes, {meta['size']} in the manifest (corrupted "
                            "or truncated)")
        elif file_sha256(file) != meta["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest (corrupted)")
    return problems


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="offline data bundles of the published suite (fetch, check)",
                                   description="Build and verify offline bundles of the published datasets.")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    fetch = commands.add_parser("fetch", help="download a suite's datasets (or copy them) into a bundle",
                                description="Download with huggingface_hub's snapshot_download, or copy from "
                                            "--from-dir, and write a manifest with every file's size and sha256.")
    fetch.add_argument("suite", choices=sorted(SUITES), metavar="SUITE", help=f"one of {', '.join(SUITES)}")
    fetch.add_argument("--to", type=Path, required=True, metavar="DIR", help="the bundle folder (for --data-dir)")
    fetch.add_argument("--from-dir", type=Path, metavar="SNAPSHOT",
                       help="copy files downloaded by hand from here (the dataset folders, or the one dataset folder) "
                            "instead of downloading")
    fetch.add_argument("--revision", help="hub revision (branch, tag or commit) to download")
    fetch.set_defaults(handler=_fetch)
    checking = commands.add_parser("check", help="verify a bundle offline (sizes and sha256 of every file)")
    checking.add_argument("dir", type=Path, metavar="DIR")
    checking.set_defaults(handler=_check)


def _fetch(args: argparse.Namespace) -> int:
    try:
        manifest = build(args.suite, args.to, args.from_dir, args.revision)
    except DataBundleError as exc:
        print(f"eval-anything data fetch: error: {exc}", file=sys.stderr)
        return 1
    size = sum(f["size"] for f in manifest["files"].values())
    tasks = args.suite if args.suite in ("amu", "amg") else "amu,amg"
    print(f"bundle {args.to}: {', '.join(manifest['datasets'])}; {len(manifest['files'])} files, {size} bytes; "
          f"manifest {MANIFEST}\nrun on it with: eval-anything run --tasks {tasks} "
          f"--data-dir {args.to}")
    return 0


def _check(args: argparse.Namespace) -> int:
    problems = check(args.dir)
    for problem in problems:
        print(f"{args.dir}: {problem}" if not problem.startswith(str(args.dir)) else problem)
    if problems:
        print(f"data check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    manifest = json.loads((Path(args.dir) / MANIFEST).read_text(encoding="utf-8"))
    print(f"data check: {args.dir}: ok ({len(manifest['files'])} files match the manifest)")
    return 0
