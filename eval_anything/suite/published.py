"""Loaders for a local copy of the published Align-Anything evaluation data (never the network).

They read the Hugging Face datasets as downloaded (layouts in PUBLISHED-DATA.md) and return rows
in the formats of the embedded mini-suite (`eval_anything/tasks/builtin/suite/data/README.md`),
so one task definition runs on either:

* `load_amu(root)`: ``PKU-Alignment/EvalAnything-AMU`` (``config.json`` with ``visual.tar.gz``
  and ``auditory.tar.gz``, extracted or not) -> AMU rows;
* `load_selection(root)`: ``PKU-Alignment/EvalAnything-Selection_Synergy``
  (``EvalAnything-Selection_Synergy.parquet``, one split) -> modality-selection rows;
* `load_instruction_following(root, modality)`: ``PKU-Alignment/EvalAnything-InstructionFollowing``
  (``data/{text,image,audio,video}_instruct/test.json``) -> instruction-following rows, the
  one-MCQ-per-row audio and video files grouped into one row per prompt;
* `materialize(part, root, out_dir)` writes them as JSONL under the mini-suite's file names, and
  `write_rows_jsonl(rows, path)` writes any list of rows.

Missing or malformed data raises `PublishedDataError`, whose message says what to download and
where to put it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

from eval_anything.errors import UsageError
from eval_anything.tasks.dataset import DataFileError

AMU_DATASET = "PKU-Alignment/EvalAnything-AMU"
SELECTION_DATASET = "PKU-Alignment/EvalAnything-Selection_Synergy"
IF_DATASET = "PKU-Alignment/EvalAnything-InstructionFollowing"

SELECTION_FILE = "EvalAnything-Selection_Synergy.parquet"
AMU_ARCHIVES = {"visual": "visual.tar.gz", "auditory": "auditory.tar.gz"}
DIMENSIONS = ("perception", "reasoning", "instruction-following", "safety")
COMBINATIONS = ("t", "i", "a", "ti", "ta", "ia", "tia")
IF_MODALITIES = ("text", "image", "audio", "video")

AMU_FILES = {d: f"amu_{d.replace('-', '_')}.jsonl" for d in DIMENSIONS}
"""Mini-suite file name of each AMU dimension (also what `materialize` writes)."""
IF_FILES = {m: f"amg_if_{m}.jsonl" for m in IF_MODALITIES}
SELECTION_JSONL = "amg_selection.jsonl"

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".flv", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp"})
_AUDITORY_WORDS = (  # (kind, words that mark it in a field value or a path component)
    ("speech", ("speech", "speak", "spoken", "voice", "tts", "talk", "conversation", "dialogue")),
    ("music", ("music", "song", "melody", "instrument", "musical")),
    ("sound", ("sound", "sfx", "effect", "environment", "ambient", "noise", "event")),
)
EXTRACTED_DIR = ".extracted"
"""Default folder, inside the AMU dataset folder, that the archives are extracted into."""


class PublishedDataError(DataFileError):
    """The published data is missing or not in the expected layout; the message says what to do."""


# ---------------------------------------------------------------- messages

def _hint(dataset: str, files: str, layout: str) -> str:
    return (f"Download {files} of the Hugging Face dataset {dataset} (no machine here reaches the Hub; e.g. elsewhere: "
            f"`huggingface-cli download {dataset} --repo-type dataset --local-dir DIR`) and pass DIR. "
            f"Expected layout:\n{layout}")


_AMU_LAYOUT = ("  DIR/config.json          the records\n"
               "  DIR/visual.tar.gz        images and videos (or its extracted contents inside DIR)\n"
               "  DIR/auditory.tar.gz      speech, sound and music (or its extracted contents inside DIR)")
_SELECTION_LAYOUT = f"  DIR/{SELECTION_FILE}"
_IF_LAYOUT = "\n".join(f"  DIR/data/{m}_instruct/test.json" for m in IF_MODALITIES)


def _amu_missing(root: Path, what: str) -> PublishedDataError:
    return PublishedDataError(f"{AMU_DATASET} not found in {root}: {what}.\n"
                              + _hint(AMU_DATASET, "config.json, visual.tar.gz and auditory.tar.gz", _AMU_LAYOUT))


# ---------------------------------------------------------------- writing

def write_rows_jsonl(rows: Iterable[Mapping[str, Any]], path: Path | str) -> Path:
    """Write rows as JSON Lines (UTF-8, one object a line), atomically; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with partial.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(partial, path)
    return path


# ---------------------------------------------------------------- AMU

def load_amu(root: Path | str, config: str = "all", extract_to: Path | str | None = None) -> list[dict[str, Any]]:
    """AMU rows from a local copy of EvalAnything-AMU.

    `root` holds ``config.json`` and the media, as ``visual.tar.gz`` / ``auditory.tar.gz`` or
    already extracted inside `root`. Each record's ``visual_modality_path`` and
    ``auditory_modality_path`` are resolved to files: the path as given (absolute, or relative to
    `root`), then with its leading folders dropped one at a time (the longest tail first), under
    `root`, the extraction folders and their top-level sub-folders; last, by file name if exactly
    one file has it. Only when a path does not resolve are the archives extracted (once: a
    ``.complete`` marker records which archive was extracted), each member checked first:
    absolute names, ``..`` and links leaving the folder are refused. Extraction goes to
    ``extract_to/{visual,auditory}`` (default ``root/.extracted``).

    `config`: ``all``, ``image`` or ``video`` (the published configs: the items whose visual
    input is an image, or a video; the dataset README's first example loads the full set under
    ``image``, which reads as a slip for ``all``).
    Rows: question_id, question, visual_path and auditory_path (absolute), visual_kind,
    auditory_kind (``speech``/``sound``/``music`` from a record field or the path, ``unknown``
    when neither says), evaluation_dimension, annotations (each {answer, keywords: {visual,
    auditory}}). The published items have no objective ``answer``.
    """
    if config not in ("all", "image", "video"):
        raise UsageError(f"config must be 'all', 'image' or 'video', not {config!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise _amu_missing(root, "no such folder")
    config_path = root / "config.json"
    if not config_path.is_file():
        raise _amu_missing(root, "no config.json")
    records = _amu_records(config_path)
    if not records:
        raise PublishedDataError(f"{config_path} holds no records.\n"
                                 + _hint(AMU_DATASET, "config.json, visual.tar.gz and auditory.tar.gz", _AMU_LAYOUT))
    resolver = _MediaResolver(root, Path(extract_to).expanduser() if extract_to else root / EXTRACTED_DIR)
    rows = []
    for index, record in enumerate(records):
        where = f"{config_path}: record {index} ({record.get('question_id', 'no question_id')})"
        missing = [f for f in ("question_id", "question", "visual_modality_path", "auditory_modality_path",
                               "evaluation_dimension", "annotations") if f not in record]
        if missing:
            raise PublishedDataError(f"{where}: missing field(s) {', '.join(missing)}")
        visual = resolver.resolve(str(record["visual_modality_path"]), "visual", where)
        auditory = resolver.resolve(str(record["auditory_modality_path"]), "auditory", where)
        rows.append({
            "question_id": str(record["question_id"]),
            "question": str(record["question"]),
            "visual_path": str(visual),
            "auditory_path": str(auditory),
            "visual_kind": _visual_kind(record, visual, where),
            "auditory_kind": _auditory_kind(record, str(record["auditory_modality_path"])),
            "evaluation_dimension": _dimension(record["evaluation_dimension"], where),
            "annotations": [_annotation(a, f"{where}: annotation {i}") for i, a in enumerate(_as_list(record["annotations"]))],
        })
    ids = [r["question_id"] for r in rows]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise PublishedDataError(f"{config_path}: duplicate question_id(s) {', '.join(dup[:5])}")
    return [r for r in rows if config == "all" or r["visual_kind"] == config]


_RECORD_LIST_KEYS = ("all", "test", "data", "records", "examples", "items", "rows")


def _amu_records(path: Path) -> list[dict[str, Any]]:
    """config.json as a list of records. Accepted: a list of records; an object with one list of
    records under all/test/data/records/examples/items/rows (the first present); an object whose
    values are all lists of records (e.g. {"image": [...], "video": [...]}: concatenated, a record
    repeated under two keys kept once); an object of records keyed by question_id."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishedDataError(f"{path}: not readable as JSON ({exc})") from None

    def records_or_none(value: Any) -> list[dict[str, Any]] | None:
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return value
        return None

    if (found := records_or_none(data)) is not None:
        return found
    if isinstance(data, dict) and data:
        for key in _RECORD_LIST_KEYS:
            if key in data and (found := records_or_none(data[key])) is not None:
                return found
        lists = [records_or_none(v) for v in data.values()]
        if all(v is not None for v in lists):
            merged, seen = [], set()
            for value in lists:
                for record in value:
                    key = json.dumps(record, sort_keys=True, default=str)
                    if key not in seen:
                        seen.add(key)
                        merged.append(record)
            return merged
        if all(isinstance(v, dict) and "question" in v for v in data.values()):
            return [{"question_id": key, **value} for key, value in data.items()]
        keys = ", ".join(list(map(str, data))[:8])
        raise PublishedDataError(
            f"{path}: cannot find the records: expected a JSON list of records, or an object holding one under "
            f"{'/'.join(_RECORD_LIST_KEYS)}; found an object with keys {keys}")
    raise PublishedDataError(f"{path}: cannot find the records: expected a JSON list of records, "
                             f"found {type(data).__name__}")


class _MediaResolver:
    """Finds the file a record's media path names, extracting the archives only when needed."""

    def __init__(self, root: Path, extract_root: Path) -> None:
        self.root = root
        self.extract_root = extract_root
        self.searched: list[Path] = [root]
        self._names: dict[str, list[Path]] | None = None
        self._base_list: list[Path] | None = None
        for stem in AMU_ARCHIVES:
            if _extraction_complete(extract_root / stem, root / AMU_ARCHIVES[stem]):
                self.searched.append(extract_root / stem)

    def resolve(self, text: str, stem: str, where: str) -> Path:
        found = self._find(text)
        if found is None and self._extract(stem):
            found = self._find(text)
        if found is None and self._extract_all():
            found = self._find(text)
        if found is None:
            archive = self.root / AMU_ARCHIVES[stem]
            state = (f"{archive.name} was extracted into {self.extract_root / stem}" if archive.exists()
                     else f"there is no {archive.name} in {self.root}")
            raise PublishedDataError(
                f"{where}: {stem} file {text!r} not found (searched {', '.join(map(str, self.searched))}; {state}).\n"
                + _hint(AMU_DATASET, "config.json, visual.tar.gz and auditory.tar.gz", _AMU_LAYOUT))
        return found

    def _find(self, text: str) -> Path | None:
        cleaned = text.strip().replace("\\", "/")
        if not cleaned:
            return None
        given = Path(cleaned)
        if given.is_absolute() and given.is_file():
            return given
        parts = [p for p in PurePosixPath(cleaned).parts if p not in ("/", ".")]
        if ".." in parts or not parts:
            return None
        for start in range(len(parts)):  # the longest tail that names a file wins
            for base in self._bases():
                candidate = base.joinpath(*parts[start:])
                if candidate.is_file():
                    return candidate.resolve()
        matches = self._by_name().get(parts[-1], [])
        return matches[0].resolve() if len(matches) == 1 else None

    def _bases(self) -> list[Path]:
        """The searched folders, each followed by its sub-folders (an archive's top-level folder,
        e.g. ``visual/``, that the record paths may leave out)."""
        if self._base_list is None:
            self._base_list = []
            for base in self.searched:
                children = sorted(p for p in base.iterdir() if p.is_dir() and p.name != EXTRACTED_DIR) if base.is_dir() else []
                self._base_list += [base, *children]
        return self._base_list

    def _by_name(self) -> dict[str, list[Path]]:
        if self._names is None:
            self._names = {}
            seen: set[Path] = set()
            for base in self.searched:
                for dirpath, dirnames, filenames in os.walk(base):
                    if Path(dirpath) == self.root:
                        dirnames[:] = [d for d in dirnames if d != EXTRACTED_DIR]  # searched on its own
                    for name in filenames:
                        path = (Path(dirpath) / name).resolve()
                        if path not in seen:
                            seen.add(path)
                            self._names.setdefault(name, []).append(path)
        return self._names

    def _extract(self, stem: str) -> bool:
        """Extract one archive if it exists and is not in the search path yet; True if it was added."""
        target = self.extract_root / stem
        archive = self.root / AMU_ARCHIVES[stem]
        if target in self.searched or not archive.is_file():
            return False
        safe_extract(archive, target)
        self.searched.append(target)
        self._names = self._base_list = None
        return True

    def _extract_all(self) -> bool:
        """A path may live in the other archive (e.g. a video under auditory/): extract it too."""
        return any([self._extract(stem) for stem in AMU_ARCHIVES])


def _extraction_complete(target: Path, archive: Path) -> bool:
    marker = target / ".complete"
    if not marker.is_file():
        return False
    if not archive.is_file():
        return True  # the archive was deleted after extraction: the extracted files are what there is
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return recorded == _archive_stamp(archive)


def _archive_stamp(archive: Path) -> dict[str, Any]:
    stat = archive.stat()
    return {"archive": archive.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def safe_extract(archive: Path | str, target: Path | str) -> Path:
    """Extract a tar archive into `target`, refusing any member that would land outside it.

    Every member is checked before it is written: absolute names, names with a ``..`` component,
    links whose target leaves the folder, and devices or FIFOs raise `PublishedDataError` (and
    nothing of the archive is left behind). Extraction goes to a temporary sibling folder that is
    renamed into place when complete, with a ``.complete`` marker naming the archive's size and
    modification time, so an interrupted extraction is redone and a finished one never is.
    """
    archive, target = Path(archive), Path(target)
    if _extraction_complete(target, archive):
        return target
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
    except OSError as exc:
        raise PublishedDataError(f"cannot extract {archive} into {target}: {exc}; pass extract_to=a writable folder") from None
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _check_member(member, archive)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the standard checks as well
                    tar.extract(member, partial, filter="data")
                else:  # pragma: no cover - older Pythons; _check_member did the checks
                    tar.extract(member, partial)
    except tarfile.TarError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise PublishedDataError(f"{archive}: cannot extract ({type(exc).__name__}: {exc}); download it again") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / ".complete").write_text(json.dumps(_archive_stamp(archive)), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    try:
        partial.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
        if not _extraction_complete(target, archive):
            raise
    return target


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = member.name.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise PublishedDataError(f"{archive}: refusing unsafe member {member.name!r} (absolute path or '..'); "
                                 "nothing was extracted")
    if member.issym() or member.islnk():
        link = member.linkname.replace("\\", "/")
        base = PurePosixPath(name).parent if member.issym() else PurePosixPath()
        resolved: list[str] = []
        for part in (base / link).parts if not link.startswith("/") else ["/"]:
            if part == "/":
                resolved = [".."]
                break
            if part == "..":
                if not resolved:
                    resolved = [".."]
                    break
                resolved.pop()
            elif part != ".":
                resolved.append(part)
        if resolved[:1] == [".."]:
            raise PublishedDataError(f"{archive}: refusing link {member.name!r} -> {member.linkname!r}, "
                                     "which points outside the archive; nothing was extracted")
    elif not (member.isfile() or member.isdir()):
        raise PublishedDataError(f"{archive}: refusing special member {member.name!r} (device or FIFO); "
                                 "nothing was extracted")


def _visual_kind(record: Mapping[str, Any], path: Path, where: str) -> str:
    for field in ("visual_kind", "visual_modality", "visual_type", "modality"):
        value = str(record.get(field, "")).strip().lower()
        if value in ("image", "video"):
            return value
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    words = _words(str(record["visual_modality_path"]))
    if words & {"image", "images", "img", "picture", "pictures", "photo", "photos"}:
        return "image"
    if words & {"video", "videos", "clip", "clips"}:
        return "video"
    raise PublishedDataError(f"{where}: cannot tell whether {path} is an image or a video (unknown suffix "
                             f"{suffix!r}; image: {', '.join(sorted(IMAGE_SUFFIXES))}; "
                             f"video: {', '.join(sorted(VIDEO_SUFFIXES))})")


def _auditory_kind(record: Mapping[str, Any], text: str) -> str:
    for field in ("auditory_kind", "auditory_modality", "auditory_type", "audio_type"):
        kind = _kind_from_words(_words(str(record.get(field, ""))))
        if kind:
            return kind
    return _kind_from_words(_words(text)) or "unknown"


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w}


def _kind_from_words(words: set[str]) -> str | None:
    for kind, markers in _AUDITORY_WORDS:
        if any(word == m or word.startswith(m) for word in words for m in markers):
            return kind
    return None


def _dimension(value: Any, where: str) -> str:
    dimension = re.sub(r"[\s_]+", "-", str(value).strip().lower())
    if dimension not in DIMENSIONS:
        raise PublishedDataError(f"{where}: unknown evaluation_dimension {value!r} (expected one of {', '.join(DIMENSIONS)})")
    return dimension


_KEYWORD_ALIASES = {"visual": ("visual", "image", "video", "visual_keywords", "image_keywords"),
                    "auditory": ("auditory", "audio", "sound", "auditory_keywords", "audio_keywords")}


def _annotation(item: Any, where: str) -> dict[str, Any]:
    """{answer, keywords: {visual: [..], auditory: [..]}}; a bare string is an answer without keywords.
    Keyword lists may also be given as one string (split on commas) or under image/audio names."""
    if isinstance(item, str):
        return {"answer": item, "keywords": {"visual": [], "auditory": []}}
    if not isinstance(item, dict) or "answer" not in item:
        raise PublishedDataError(f"{where}: expected {{answer, keywords}}, got {str(item)[:80]!r}")
    raw = item.get("keywords") or {}
    if not isinstance(raw, dict):
        raise PublishedDataError(f"{where}: keywords must be an object with visual and auditory lists")
    keywords = {}
    for side, aliases in _KEYWORD_ALIASES.items():
        value = next((raw[a] for a in aliases if a in raw), None)
        if value is None:
            value = next((item[a] for a in aliases[3:] if a in item), [])
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        keywords[side] = [str(v) for v in _as_list(value)]
    return {"answer": str(item["answer"]), "keywords": keywords}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ---------------------------------------------------------------- selection

def _selection_file(root: Path) -> Path:
    if root.is_file():
        return root
    if not root.is_dir():
        raise PublishedDataError(f"{SELECTION_DATASET} not found: no such folder {root}.\n"
                                 + _hint(SELECTION_DATASET, SELECTION_FILE, _SELECTION_LAYOUT))
    for candidate in (root / SELECTION_FILE, root / "data" / SELECTION_FILE):
        if candidate.is_file():
            return candidate
    found = sorted(root.rglob("*.parquet"))
    if len(found) == 1:
        return found[0]
    what = f"no {SELECTION_FILE}" + (f" and {len(found)} other parquet files" if found else "")
    raise PublishedDataError(f"{SELECTION_DATASET} not found in {root}: {what}.\n"
                             + _hint(SELECTION_DATASET, SELECTION_FILE, _SELECTION_LAYOUT))


def load_selection(root: Path | str) -> list[dict[str, Any]]:
    """Modality-selection rows from a local copy of EvalAnything-Selection_Synergy.

    `root`: the dataset folder (with ``EvalAnything-Selection_Synergy.parquet``, at the top or
    under ``data/``, or as its only parquet file) or the parquet file itself. All rows form one
    split. ``selection`` may be a struct, a map or a JSON string; its keys are normalised to
    t, i, a, ti, ta, ia, tia (case, order of letters and separators like ``t+i`` do not matter),
    missing combinations count 0, and values that do not sum to 1 (e.g. raw vote counts) are
    divided by their sum. Rows: instruction_uid (sha256 of the instruction when absent),
    instruction, selection, ``votes_source: "published"``, and empty ``questions_audio`` /
    ``questions_image`` (the published data has no questions about the generated media).
    """
    path = _selection_file(Path(root).expanduser())
    try:
        import pyarrow.parquet as pq

        records = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise PublishedDataError(f"{path}: not readable as parquet ({type(exc).__name__}: {exc})") from None
    rows = []
    for index, record in enumerate(records):
        where = f"{path}: row {index}"
        if "instruction" not in record or "selection" not in record:
            raise PublishedDataError(f"{where}: needs the fields instruction and selection (has {', '.join(record)})")
        instruction = str(record["instruction"])
        uid = record.get("instruction_uid") or hashlib.sha256(instruction.encode("utf-8")).hexdigest()
        rows.append({"instruction_uid": str(uid), "instruction": instruction,
                     "selection": _selection_shares(record["selection"], where),
                     "votes_source": "published", "questions_audio": [], "questions_image": []})
    return rows


_MODALITY_WORDS = {"text": "t", "image": "i", "audio": "a", "t": "t", "i": "i", "a": "a"}


def _combination_code(key: str) -> str:
    """"ti", "TI", "it", "t+i", "text_image" -> "ti"; anything else -> "" (not a combination)."""
    letters = []
    for token in re.findall(r"[a-z]+", key.lower()):
        if token in _MODALITY_WORDS:
            letters.append(_MODALITY_WORDS[token])
        elif set(token) <= set("tia"):
            letters.extend(token)
        else:
            return ""
    if len(set(letters)) != len(letters):
        return ""
    return "".join(sorted(letters, key="tia".index))


def _selection_shares(value: Any, where: str) -> dict[str, float]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise PublishedDataError(f"{where}: selection is a string that is not JSON: {value[:80]!r}") from None
    if isinstance(value, list) and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
        value = dict(value)  # a parquet map column
    if not isinstance(value, dict):
        raise PublishedDataError(f"{where}: selection must map combinations to vote shares, got {type(value).__name__}")
    shares = dict.fromkeys(COMBINATIONS, 0.0)
    for key, share in value.items():
        code = _combination_code(str(key))
        if code not in shares:
            raise PublishedDataError(f"{where}: unknown modality combination {key!r} in selection "
                                     f"(expected {', '.join(COMBINATIONS)})")
        try:
            shares[code] += float(share or 0.0)
        except (TypeError, ValueError):
            raise PublishedDataError(f"{where}: selection[{key!r}] is not a number: {share!r}") from None
    total = sum(shares.values())
    if total <= 0 or any(v < 0 for v in shares.values()):
        raise PublishedDataError(f"{where}: selection votes must be non-negative with a positive sum, got {value!r}")
    if abs(total - 1.0) > 1e-6:
        shares = {k: v / total for k, v in shares.items()}
    return shares


# ---------------------------------------------------------------- instruction following

def _if_file(root: Path, modality: str) -> Path:
    folder = f"{modality}_instruct"
    candidates = [root / "data" / folder / "test.json", root / folder / "test.json"]
    if root.name == folder:
        candidates.append(root / "test.json")
    if root.is_file() and root.name.endswith(".json"):
        candidates.insert(0, root)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise PublishedDataError(
        f"{IF_DATASET} ({modality}) not found in {root}: no data/{folder}/test.json.\n"
        + _hint(IF_DATASET, f"data/{folder}/test.json (or all of data/)", _IF_LAYOUT))


def _json_records(path: Path) -> list[dict[str, Any]]:
    """A JSON list of objects, JSON Lines, or an object holding one list of objects."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise PublishedDataError(f"{path}: neither JSON nor JSON Lines ({exc})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            data = lists[0]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise PublishedDataError(f"{path}: expected a list of objects")
    return data


def load_instruction_following(root: Path | str, modality: str) -> list[dict[str, Any]]:
    """Instruction-following rows for one output modality from a local EvalAnything-InstructionFollowing.

    `root`: the dataset folder (``data/{modality}_instruct/test.json`` inside it), the
    ``{modality}_instruct`` folder, or the test.json itself. The file may be a JSON list, JSON
    Lines, or an object holding one list.

    * text: {prompt_id, prompt}; image: {prompt_id, prompt, questions: []} (the published image
      prompts carry no questions; the paper scores them with a rubric);
    * audio, video: the one-MCQ-per-row records {prompt_id, prompt, question_id, question, choice,
      answer} grouped per prompt_id (in order of first appearance) into {prompt_id, prompt,
      questions: [{question, choices, answer, choice, question_id}]} (``choice`` as published, which
      the paper protocol shows the judge as it is); see `parse_choices` for the
      accepted forms of ``choice`` and `answer_letter` for ``answer``.
    """
    if modality not in IF_MODALITIES:
        raise UsageError(f"modality must be one of {', '.join(IF_MODALITIES)}, not {modality!r}")
    path = _if_file(Path(root).expanduser(), modality)
    records = _json_records(path)
    if modality in ("text", "image"):
        rows = []
        for index, record in enumerate(records):
            _require(record, ("prompt_id", "prompt"), f"{path}: row {index}")
            row = {"prompt_id": str(record["prompt_id"]), "prompt": str(record["prompt"])}
            if modality == "image":
                row["questions"] = []
            rows.append(row)
        return rows
    grouped: dict[str, dict[str, Any]] = {}
    for index, record in enumerate(records):
        where = f"{path}: row {index}"
        _require(record, ("prompt_id", "prompt", "question", "choice", "answer"), where)
        choices = parse_choices(record["choice"], where)
        question = {"question": str(record["question"]), "choices": choices,
                    "answer": answer_letter(record["answer"], choices, where),
                    "choice": str(record["choice"])}  # as published: what the original shows its judge
        if "question_id" in record:
            question["question_id"] = str(record["question_id"])
        row = grouped.setdefault(str(record["prompt_id"]),
                                 {"prompt_id": str(record["prompt_id"]), "prompt": str(record["prompt"]), "questions": []})
        row["questions"].append(question)
    return list(grouped.values())


def _require(record: Mapping[str, Any], fields: tuple[str, ...], where: str) -> None:
    missing = [f for f in fields if f not in record]
    if missing:
        raise PublishedDataError(f"{where}: missing field(s) {', '.join(missing)} (has {', '.join(record)})")


_STRICT_LABEL = re.compile(r"(?:^[ \t]*|(?<=[;,])\s*|(?<=\s\s)|(?<=\s)(?=\())\(?([A-Z])\s*[.):]\s*", re.MULTILINE)
"""A label at a line start, after ';' or ',', after two spaces, or in parentheses: "(C)"."""
_LOOSE_LABEL = re.compile(r"(?:^|(?<=\s))\(?([A-Z])\s*[.):]\s*", re.MULTILINE)
"""Any "C." / "C)" / "C:" after whitespace (tried when the strict labels find fewer than two)."""


def parse_choices(value: Any, where: str = "choice") -> list[str]:
    """The options of one MCQ, in letter order. Accepted:

    * a list of option texts, labelled or not (``["A. cat", "B. dog"]`` or ``["cat", "dog"]``;
      labels are removed only when every option carries the next letter A, B, C...);
    * an object keyed by letter (``{"A": "cat", "B": "dog"}``; ``"A."``/``"(A)"`` keys too);
    * a string: JSON of either of the above, or options labelled in order, one a line or inline
      (``"A. cat\\nB. dog"``, ``"(A) cat (B) dog"``, ``"A: cat; B: dog"``), or, without labels,
      one option a line.
    """
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in "[{":
            try:
                return parse_choices(json.loads(stripped), where)
            except json.JSONDecodeError:
                pass
        options = _split_labelled(stripped)
        if options is None:
            options = [line.strip() for line in stripped.splitlines() if line.strip()]
        return _checked(options, value, where)
    if isinstance(value, dict):
        keyed = {}
        for key, text in value.items():
            letter = re.sub(r"[^A-Za-z]", "", str(key)).upper()
            if len(letter) != 1:
                raise PublishedDataError(f"{where}: choice keys must be letters, got {key!r}")
            keyed[letter] = str(text).strip()
        letters = sorted(keyed)
        if letters != [chr(ord("A") + i) for i in range(len(letters))]:
            raise PublishedDataError(f"{where}: choice letters must run A, B, C... without gaps, got {', '.join(letters)}")
        return _checked([keyed[k] for k in letters], value, where)
    if isinstance(value, (list, tuple)):
        texts = [str(v).strip() for v in value]
        labelled = [re.match(r"^\(?([A-Z])\s*[.):]\s*(.*)$", t, re.DOTALL) for t in texts]
        if all(labelled) and [m.group(1) for m in labelled] == [chr(ord("A") + i) for i in range(len(texts))]:
            texts = [m.group(2).strip() for m in labelled]
        return _checked(texts, value, where)
    raise PublishedDataError(f"{where}: cannot read the options from a {type(value).__name__}: {str(value)[:80]!r}")


def _split_labelled(text: str) -> list[str] | None:
    """Options labelled A, B, C... in order, or None when the text is not labelled that way."""
    return _split_at(text, _STRICT_LABEL) or _split_at(text, _LOOSE_LABEL)


def _split_at(text: str, pattern: re.Pattern[str]) -> list[str] | None:
    marks, expected = [], "A"
    for match in pattern.finditer(text):
        if match.group(1) == expected:
            marks.append(match)
            expected = chr(ord(expected) + 1)
    if len(marks) < 2 or text[: marks[0].start()].strip():
        return None
    options = []
    for current, following in zip(marks, marks[1:] + [None]):
        end = following.start() if following else len(text)
        options.append(text[current.end():end].strip().rstrip(";,").strip())
    return options


def _checked(options: list[str], original: Any, where: str) -> list[str]:
    if len(options) < 2 or any(not o for o in options):
        raise PublishedDataError(f"{where}: need at least two non-empty options, read {options!r} from {str(original)[:120]!r}")
    return options


def answer_letter(value: Any, choices: list[str], where: str = "answer") -> str:
    """The answer as a letter: "A", "a", "(A)", "A.", "A. cat", or the text of one option."""
    text = str(value).strip()
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    match = re.match(r"^\(?([A-Za-z])\s*(?:[.):]|$)", text)
    if match and match.group(1).upper() in letters:
        return match.group(1).upper()
    lowered = [c.strip().lower() for c in choices]
    if text.lower() in lowered:
        return letters[lowered.index(text.lower())]
    raise PublishedDataError(f"{where}: answer {value!r} is neither a letter {letters[0]}-{letters[-1]} nor one of the options")


# ---------------------------------------------------------------- writing a whole part

PARTS = ("amu", "selection", "instruction_following", "all")
ALL_LAYOUT = {"amu": "EvalAnything-AMU", "selection": "EvalAnything-Selection_Synergy",
              "instruction_following": "EvalAnything-InstructionFollowing"}
"""Folder names `materialize("all", root, ...)` expects inside root (the dataset names)."""


def materialize(suite_part: str, root: Path | str, out_dir: Path | str, **options: Any) -> list[Path]:
    """Load one part of the published data and write it as JSONL under the mini-suite's file names
    (so a task folder can point at `out_dir` instead of the embedded data). Returns the files.

    * ``amu``: root = the AMU folder; writes amu_{perception,reasoning,instruction_following,safety}.jsonl
      (media paths absolute); `options` go to `load_amu` (config, extract_to);
    * ``selection``: root = the selection folder or parquet; writes amg_selection.jsonl;
    * ``instruction_following``: root = the IF folder; writes amg_if_{text,image,audio,video}.jsonl;
    * ``all``: root holds the three dataset folders, named as in `ALL_LAYOUT`.
    """
    out = Path(out_dir)
    if suite_part == "amu":
        rows = load_amu(root, **options)
        return [write_rows_jsonl((r for r in rows if r["evaluation_dimension"] == d), out / name)
                for d, name in AMU_FILES.items()]
    if suite_part == "selection":
        return [write_rows_jsonl(load_selection(root), out / SELECTION_JSONL)]
    if suite_part == "instruction_following":
        return [write_rows_jsonl(load_instruction_following(root, m), out / name) for m, name in IF_FILES.items()]
    if suite_part == "all":
        base = Path(root)
        written = materialize("amu", base / ALL_LAYOUT["amu"], out, **options)
        written += materialize("selection", base / ALL_LAYOUT["selection"], out)
        return written + materialize("instruction_following", base / ALL_LAYOUT["instruction_following"], out)
    raise UsageError(f"suite_part must be one of {', '.join(PARTS)}, not {suite_part!r}")

