"""Loaders: stage artefacts, JSONL, and the published align-anything parquet subsets.

Every per-subset field name of the published data lives in SUBSETS below and nowhere else
(layouts: ../shared/PUBLISHED-DATA.md §4). One file gives both views:

* LLF records: prompt, media, response = the worse response, critique = the annotators' critique
  of it, refinement = the better response;
* binary preference records: chosen = response_{overall_response}, rejected = the other one
  (rows whose overall_response is not 1 or 2 are dropped).

Files already in the LLF layout of projects/lang_feedback (prompt, image as base64 or audio /
audio_path, response, critique, refinement) load too. Media stored inside the parquet (image
bytes, decoded audio) are written once to files, so records only ever carry paths.
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from eval_anything.align.artifacts import MANIFEST, RECORDS
from eval_anything.align.records import LLFRecord, Media, PreferenceRecord, read_jsonl, resolve_media
from eval_anything.errors import UsageError


@dataclass(frozen=True)
class SubsetFields:
    """Where one align-anything subset keeps each thing."""

    prompt: tuple[str, ...]
    """Prompt columns, first present wins."""
    media: dict[str, str] = field(default_factory=dict)
    """modality -> column."""
    responses: tuple[str, str] = ("response_1", "response_2")
    overall: str = "overall_response"
    """1 or 2: which response is better overall."""
    critiques: tuple[str, str] = ("text_critique_1", "text_critique_2")
    feedback: str = "overall_textfeedback"


SUBSETS: dict[str, SubsetFields] = {
    "text-image-to-text": SubsetFields(prompt=("question",), media={"image": "image"}),
    "text-image-to-text-expert": SubsetFields(prompt=("question",), media={"image": "image"}),
    "text-video-to-text": SubsetFields(prompt=("prompt",), media={"video": "video_path"}),
    "text-audio-to-text": SubsetFields(prompt=("prompt",), media={"audio": "audio_path"}),
    # field names unconfirmed for text-to-text: accept either prompt column
    "text-to-text": SubsetFields(prompt=("prompt", "question")),
}
ALIASES = {"ti2t": "text-image-to-text", "tv2t": "text-video-to-text", "ta2t": "text-audio-to-text",
           "t2t": "text-to-text", "example_ti2t": "text-image-to-text", "example_tv2t": "text-video-to-text",
           "example_ta2t": "text-audio-to-text", "example_t2t": "text-to-text"}
LLF_LAYOUT = "llf"
"""projects/lang_feedback files: prompt, image (base64) | audio | audio_path, response, critique, refinement."""
LLF_MEDIA_COLUMNS = {"image": "image", "audio": "audio", "audio_path": "audio", "video": "video", "video_path": "video"}
VIDEO_ROOT_ENV = "ROOT_VIDEO_PATH"
"""As in the published loader: relative video paths are joined onto this folder (default: the parquet's)."""


def detect_subset(columns: list[str], path: Path) -> str:
    if {"critique", "refinement", "response", "prompt"} <= set(columns):
        return LLF_LAYOUT
    for part in reversed(path.parts):
        if part in SUBSETS:
            return part
        if part in ALIASES:
            return ALIASES[part]
    if "video_path" in columns:
        return "text-video-to-text"
    if "audio_path" in columns:
        return "text-audio-to-text"
    if "image" in columns and "question" in columns:
        return "text-image-to-text"
    if "response_1" in columns:
        return "text-to-text"
    raise UsageError(f"{path}: not an align-anything subset I know (columns: {', '.join(columns)}); "
                     f"known: {', '.join(SUBSETS)} and the LLF layout")


def _media_dir(path: Path) -> Path:
    from eval_anything.models.embedded import cache_root

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "align-media" / f"{path.stem}-{key}"


def _write_once(target: Path, data: bytes) -> str:
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return str(target)


def _image_file(value: Any, target: Path) -> str:
    """An HF Image cell ({bytes, path}), raw bytes, a base64 string, or a path."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return _write_once(target.with_suffix(_suffix(value.get("path"), ".png")), value["bytes"])
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return _write_once(target.with_suffix(".png"), bytes(value))
    if isinstance(value, str) and value:
        if value.startswith(_BASE64_IMAGE_STARTS):  # base64 (the LLF layout)
            encoded = value.split(",", 1)[1] if value.startswith("data:") else value
            return _write_once(target.with_suffix(".png"), base64.b64decode(encoded))
        return value
    raise ValueError("empty image cell")


def _audio_file(value: Any, target: Path) -> str:
    """An HF Audio cell ({bytes, path} or decoded {array, sampling_rate}), or a path."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return _write_once(target.with_suffix(_suffix(value.get("path"), ".wav")), value["bytes"])
        if value.get("array") is not None:
            from eval_anything.media import to_wav_bytes

            import numpy as np

            return _write_once(target.with_suffix(".wav"),
                               to_wav_bytes(np.asarray(value["array"], dtype="float32"), int(value["sampling_rate"])))
        value = value.get("path")
    if isinstance(value, str) and value:
        return value
    raise ValueError("empty audio cell")


_BASE64_IMAGE_STARTS = ("data:", "iVBOR", "/9j/", "R0lGOD", "UklGR")
"""How base64 PNG, JPEG, GIF and WebP (and data URIs) begin; anything else is a path."""


def _suffix(name: Any, default: str) -> str:
    return Path(name).suffix if isinstance(name, str) and Path(name).suffix else default


def _media(modality: str, value: Any, target: Path, base: Path) -> Media:
    if modality == "image":
        path = _image_file(value, target)
    elif modality == "audio":
        path = _audio_file(value, target)
    else:
        path = value.get("path") if isinstance(value, dict) else value
        if not path:
            raise ValueError("empty video cell")
        root = os.environ.get(VIDEO_ROOT_ENV)
        if not Path(path).is_absolute():
            path = str(Path(root) / path) if root else path
    if not Path(path).is_absolute():
        path = str((base / path).resolve())
    return Media(modality, path)


def _rows(path: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)

    def rows() -> Iterator[dict[str, Any]]:  # streamed: the image subsets hold the images inline
        for batch in source.iter_batches(batch_size=256):
            yield from batch.to_pylist()

    return source.schema_arrow.names, rows()


def _text(row: dict[str, Any], columns: tuple[str, ...]) -> str:
    for column in columns:
        if row.get(column) is not None:
            return str(row[column])
    raise KeyError(f"none of the columns {', '.join(columns)}")


def _parquet(path: Path, subset: str | None = None) -> Iterator[tuple[str, dict[str, Any], SubsetFields | None, list[Media]]]:
    columns, rows = _rows(path)
    subset = ALIASES.get(subset or "", subset) or detect_subset(columns, path)
    media_dir = _media_dir(path)
    for index, row in enumerate(rows):
        rid = f"{path.stem}-{index:06d}"
        try:
            if subset == LLF_LAYOUT:
                media = [_media(LLF_MEDIA_COLUMNS[c], row[c], media_dir / rid, path.parent)
                         for c in LLF_MEDIA_COLUMNS if row.get(c)]
                yield rid, row, None, media
            else:
                fields = SUBSETS[subset]
                media = [_media(m, row[c], media_dir / rid, path.parent) for m, c in fields.media.items()]
                yield rid, row, fields, media
        except (KeyError, ValueError) as exc:
            raise UsageError(f"{path} row {index}: {exc}") from None


def llf_from_parquet(path: Path, subset: str | None = None) -> list[LLFRecord]:
    out = []
    for rid, row, fields, media in _parquet(path, subset):
        meta = {"source": str(path), "row": int(rid.rsplit("-", 1)[1])}
        if fields is None:
            out.append(LLFRecord(rid, str(row["prompt"]), tuple(media), row.get("response"), row.get("critique"),
                                 row.get("refinement"), meta))
            continue
        better = row.get(fields.overall)
        if better not in (1, 2):
            continue
        worse = 3 - better
        critique = row.get(fields.critiques[worse - 1]) or row.get(fields.feedback)
        out.append(LLFRecord(rid, _text(row, fields.prompt), tuple(media), row[fields.responses[worse - 1]],
                             critique, row[fields.responses[better - 1]], meta))
    return out


def preferences_from_parquet(path: Path, subset: str | None = None) -> list[PreferenceRecord]:
    out = []
    for rid, row, fields, media in _parquet(path, subset):
        meta = {"source": str(path), "row": int(rid.rsplit("-", 1)[1])}
        if fields is None:  # LLF layout: the refinement is preferred
            out.append(PreferenceRecord(rid, str(row["prompt"]), row["refinement"], row["response"], tuple(media),
                                        "llf", meta))
            continue
        better = row.get(fields.overall)
        if better not in (1, 2):
            continue
        out.append(PreferenceRecord(rid, _text(row, fields.prompt), row[fields.responses[better - 1]],
                                    row[fields.responses[2 - better]], tuple(media), "binary", meta))
    return out


def _jsonl_source(path: Path) -> tuple[Path, Path]:
    """(the JSONL, the folder relative media paths resolve against) for an artefact or a file."""
    if path.is_dir():
        if not (path / RECORDS).exists():
            raise FileNotFoundError(f"{path} is not a stage artefact (no {RECORDS})")
        if not (path / MANIFEST).exists():
            raise FileNotFoundError(f"{path} has no {MANIFEST}")
        return path / RECORDS, path
    return path, path.parent


def load_llf_records(path: str | Path, subset: str | None = None) -> list[LLFRecord]:
    """LLF records from an artefact folder, a .jsonl, or a published .parquet."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data {path} does not exist")
    if path.suffix == ".parquet":
        return llf_from_parquet(path, subset)
    source, base = _jsonl_source(path)
    out = []
    for number, data in enumerate(read_jsonl(source), 1):
        if "prompt" not in data:
            raise UsageError(f"{source}:{number}: a record needs a prompt")
        data.setdefault("id", f"{source.stem}-{number:06d}")
        out.append(resolve_media(LLFRecord.from_json(data), base))
    return out


def load_preference_records(path: str | Path, subset: str | None = None) -> list[PreferenceRecord]:
    """Preference pairs from the pairs artefact, a .jsonl (prompt/chosen/rejected), or a published
    .parquet (binary: the overall preference)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pairs {path} does not exist")
    if path.suffix == ".parquet":
        return preferences_from_parquet(path, subset)
    source, base = _jsonl_source(path)
    out = []
    for number, data in enumerate(read_jsonl(source), 1):
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in data]
        if missing:
            raise UsageError(f"{source}:{number}: a preference record needs {', '.join(missing)}")
        data.setdefault("id", f"{source.stem}-{number:06d}")
        out.append(resolve_media(PreferenceRecord.from_json(data), base))
    return out


def llf_pairs(records: list[LLFRecord], keep_identical: bool = False) -> list[PreferenceRecord]:
    """chosen = refinement, rejected = response, for records that have both."""
    out = []
    for r in records:
        if not r.response or not r.refinement:
            continue
        if not keep_identical and r.refinement.strip() == r.response.strip():
            continue
        out.append(PreferenceRecord(r.id, r.prompt, r.refinement, r.response, r.media, "llf", r.metadata))
    return out


BINARY_LAYOUTS = ("an align-anything subset (response_1, response_2, overall_response)",
                  "a .jsonl of prompt, chosen, rejected")


def is_llf_layout(path: str | Path) -> bool:
    """Whether preference data is LLF's (its pairs are refinements over responses), not binary feedback:
    a parquet in the lang_feedback layout, a pairs artefact, or a .jsonl of LLF records or LLF pairs."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"preference data {path} does not exist")
    if path.suffix == ".parquet":
        columns, _ = _rows(path)
        return detect_subset(columns, path) == LLF_LAYOUT
    source, _ = _jsonl_source(path)
    if path.is_dir() and (path / MANIFEST).exists():
        from eval_anything.rundir import read_json

        if read_json(path / MANIFEST).get("stage") in ("pairs", "sample", "critique", "refine"):
            return True
    first = next(iter(read_jsonl(source)), {})
    return "refinement" in first or "critique" in first or first.get("source") == "llf"


def require_binary_preferences(path: str | Path, role: str = "binary_data") -> None:
    """Refuse LLF-layout data where binary preferences are wanted, naming the file and what is expected."""
    if is_llf_layout(path):
        raise UsageError(f"{role} {path} is in the LLF layout (prompt, response, critique, refinement: its pairs "
                         "would be refinements over responses, not the annotators' preferences); the binary arm "
                         f"needs {' or '.join(BINARY_LAYOUTS)}")


def require_model_inputs(records: list[Any], inputs: Any, source: str | Path, model: str, stage: str) -> None:
    """Stop before training when records carry media that the model takes no input for (a text-only model
    given images or audio), rather than dropping the media or failing inside the trainer."""
    from eval_anything.models.inputs import input_modalities_of

    takes = {m.value for m in input_modalities_of(inputs.processor)}
    for record in records:
        missing = sorted({m.modality for m in record.media} - takes)
        if missing:
            kinds = " and ".join(missing)
            example = "a Qwen2-Audio folder" if missing == ["audio"] else "a LLaVA folder"
            raise UsageError(f"{stage}: {source} has {kinds} inputs (record {record.id!r}), but the model {model} "
                             f"takes {', '.join(sorted(takes))} only (its processor has no {kinds} processor): "
                             f"train a model that takes {kinds} (e.g. {example}), or give records without media")
