"""The embedded AMU/AMG mini-suite (files, rows, media) and the loaders of the published data,
tested on small files written here in the published layouts (PUBLISHED-DATA.md §1-3)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from eval_anything.suite import published
from eval_anything.suite.published import (PublishedDataError, answer_letter, load_amu, load_instruction_following,
                                           load_selection, materialize, parse_choices, write_rows_jsonl)

DATA = Path(published.__file__).resolve().parents[1] / "tasks" / "builtin" / "suite" / "data"
AMU_FILES = {"amu_perception.jsonl": "perception", "amu_reasoning.jsonl": "reasoning",
             "amu_instruction_following.jsonl": "instruction-following", "amu_safety.jsonl": "safety"}
AMG_FILES = ("amg_if_text.jsonl", "amg_if_image.jsonl", "amg_if_audio.jsonl", "amg_if_video.jsonl", "amg_selection.jsonl")
COMBINATIONS = {"t", "i", "a", "ti", "ta", "ia", "tia"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def amu_rows() -> list[dict]:
    return [row for name in AMU_FILES for row in read_jsonl(DATA / name)]


def check_mcqs(questions, lo=1, hi=5):
    assert lo <= len(questions) <= hi
    for q in questions:
        assert set(q) >= {"question", "choices", "answer"} and q["question"]
        assert 2 <= len(q["choices"]) <= 4 and len(set(q["choices"])) == len(q["choices"])
        assert q["answer"] in "ABCD"[: len(q["choices"])]


# ---------------------------------------------------------------- the embedded mini-suite

def test_mini_suite_files_exist_and_parse():
    for name in (*AMU_FILES, *AMG_FILES, "media_manifest.jsonl", "README.md"):
        assert (DATA / name).is_file(), name
    for name in AMU_FILES:
        assert 5 <= len(read_jsonl(DATA / name)) <= 8
    ids = [r["question_id"] for r in amu_rows()]
    assert len(ids) == len(set(ids))
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert "illustrative" in readme and "not human data" in readme
    assert not list(DATA.rglob("*.yaml")), "the catalog loads every *.yaml under builtin/ as a task"


def test_amu_rows_need_both_inputs_and_carry_references():
    for name, dimension in AMU_FILES.items():
        for row in read_jsonl(DATA / name):
            assert row["evaluation_dimension"] == dimension
            assert row["question_id"] and row["question"]
            assert row["visual_kind"] in ("image", "video") and row["auditory_kind"] in ("speech", "sound", "music")
            assert row["visual_path"].endswith(".mp4" if row["visual_kind"] == "video" else ".png")
            assert row["auditory_path"].split("/")[0] == {"speech": "speech", "sound": "sounds", "music": "music"}[row["auditory_kind"]]
            assert (DATA / row["visual_path"]).is_file() and (DATA / row["auditory_path"]).is_file()
            assert 3 <= len(row["annotations"]) <= 5
            for ref in row["annotations"]:
                assert ref["answer"] and set(ref["keywords"]) == {"visual", "auditory"}
                assert ref["keywords"]["visual"] and ref["keywords"]["auditory"]
            if "answer" in row:
                assert row["answer_type"] in ("numeric", "exact") and row["answer"]
                if row["answer_type"] == "numeric":
                    float(row["answer"])
            if dimension == "safety":
                assert row["expected_behaviour"] in ("answer", "refuse")
    rows = amu_rows()
    assert {r["visual_kind"] for r in rows} == {"image", "video"}
    assert {r["auditory_kind"] for r in rows} == {"speech", "sound", "music"}
    assert {r["expected_behaviour"] for r in rows if "expected_behaviour" in r} == {"answer", "refuse"}


def test_every_media_file_decodes():
    import av
    import soundfile
    from PIL import Image

    paths = sorted({r[k] for r in amu_rows() for k in ("visual_path", "auditory_path")})
    on_disk = sorted(str(p.relative_to(DATA)) for sub in ("images", "videos", "speech", "sounds", "music")
                     for p in (DATA / sub).iterdir())
    assert paths == on_disk, "every media file is used by a row, and only those exist"
    for rel in paths:
        path = DATA / rel
        if rel.endswith(".png"):
            with Image.open(path) as image:
                image.load()
                assert image.size[0] >= 64
        elif rel.endswith(".wav"):
            samples, rate = soundfile.read(path)
            assert rate == 16_000 and samples.ndim == 1 and 0.3 < len(samples) / rate < 6.0
            assert abs(samples).max() > 0.05, f"{rel} is silent"
        else:
            with av.open(str(path)) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert 8 <= len(frames) <= 16 and frames[0].shape == (64, 64, 3)
            assert any((f != frames[0]).any() for f in frames[1:]), f"{rel} does not change"


def test_manifest_lists_every_media_file_with_its_current_bytes():
    manifest = {m["path"]: m for m in read_jsonl(DATA / "media_manifest.jsonl")}
    assert set(manifest) == {r[k] for r in amu_rows() for k in ("visual_path", "auditory_path")}
    for rel, entry in manifest.items():
        data = (DATA / rel).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data), rel
        assert entry["content"]
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 2.5 * 1024 * 1024


def test_amg_instruction_following_rows():
    text = read_jsonl(DATA / "amg_if_text.jsonl")
    assert len(text) >= 5 and all(set(r) == {"prompt_id", "prompt"} for r in text)
    for modality in ("image", "audio", "video"):
        rows = read_jsonl(DATA / f"amg_if_{modality}.jsonl")
        assert len(rows) >= 5
        for row in rows:
            assert set(row) == {"prompt_id", "prompt", "questions"} and row["prompt"]
            check_mcqs(row["questions"], 2, 3)
    ids = [r["prompt_id"] for m in ("text", "image", "audio", "video") for r in read_jsonl(DATA / f"amg_if_{m}.jsonl")]
    assert len(ids) == len(set(ids))


def test_selection_votes_sum_to_one_and_are_labelled_illustrative():
    rows = read_jsonl(DATA / "amg_selection.jsonl")
    assert len(rows) >= 6
    for row in rows:
        assert row["votes_source"] == "illustrative"
        assert row["instruction_uid"] == hashlib.sha256(row["instruction"].encode("utf-8")).hexdigest()
        assert set(row["selection"]) == COMBINATIONS
        assert abs(sum(row["selection"].values()) - 1.0) <= 1e-6 and min(row["selection"].values()) >= 0
        check_mcqs(row["questions_audio"])
        check_mcqs(row["questions_image"])


# ---------------------------------------------------------------- published AMU (config.json + tarballs)

def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _amu_record(qid, dimension, visual, auditory):
    return {"question_id": qid, "question": f"question {qid}?", "visual_modality_path": visual,
            "auditory_modality_path": auditory, "evaluation_dimension": dimension,
            "annotations": [{"answer": f"ref {i}", "keywords": {"visual": [f"v{i}"], "auditory": [f"a{i}", "x"]}}
                            for i in range(10)]}


AMU_RECORDS = [
    _amu_record("p1", "perception", "visual/images/cat.jpg", "auditory/speech/hello.wav"),
    # an absolute path from the authors' machine: resolved by its tail
    _amu_record("r1", "reasoning", "/home/someone/eval/visual/videos/run.mp4", "auditory/music/song.wav"),
    _amu_record("i1", "instruction-following", "./visual/images/dog.png", "auditory/sound/bark.wav"),
    _amu_record("s1", "safety", "visual/videos/fire.mp4", "auditory/sound/alarm.wav"),
]
VISUAL_MEMBERS = {"visual/images/cat.jpg": b"jpg", "visual/images/dog.png": b"png",
                  "visual/videos/run.mp4": b"mp4", "visual/videos/fire.mp4": b"mp4!"}
AUDITORY_MEMBERS = {"auditory/speech/hello.wav": b"w1", "auditory/music/song.wav": b"w2",
                    "auditory/sound/bark.wav": b"w3", "auditory/sound/alarm.wav": b"w4"}


@pytest.fixture
def amu_root(tmp_path):
    root = tmp_path / "EvalAnything-AMU"
    root.mkdir()
    (root / "config.json").write_text(json.dumps(AMU_RECORDS), encoding="utf-8")
    _tar(root / "visual.tar.gz", VISUAL_MEMBERS)
    _tar(root / "auditory.tar.gz", AUDITORY_MEMBERS)
    return root


def _check_amu(rows, root_of_media: Path):
    assert [r["question_id"] for r in rows] == ["p1", "r1", "i1", "s1"]
    by_id = {r["question_id"]: r for r in rows}
    assert set(by_id["p1"]) == {"question_id", "question", "visual_path", "auditory_path", "visual_kind",
                                "auditory_kind", "evaluation_dimension", "annotations"}
    assert [(r["visual_kind"], r["auditory_kind"]) for r in rows] == [
        ("image", "speech"), ("video", "music"), ("image", "sound"), ("video", "sound")]
    assert Path(by_id["r1"]["visual_path"]).read_bytes() == b"mp4"
    assert Path(by_id["s1"]["auditory_path"]).read_bytes() == b"w4"
    for row in rows:
        for key in ("visual_path", "auditory_path"):
            assert Path(row[key]).is_absolute() and Path(row[key]).is_relative_to(root_of_media.resolve())
    assert by_id["i1"]["evaluation_dimension"] == "instruction-following"
    assert len(by_id["p1"]["annotations"]) == 10
    assert by_id["p1"]["annotations"][3] == {"answer": "ref 3", "keywords": {"visual": ["v3"], "auditory": ["a3", "x"]}}


def test_load_amu_extracts_the_tarballs_once(amu_root, monkeypatch):
    rows = load_amu(amu_root)
    _check_amu(rows, amu_root / ".extracted")
    assert (amu_root / ".extracted" / "visual" / ".complete").is_file()
    assert (amu_root / ".extracted" / "auditory" / ".complete").is_file()

    def no_second_extraction(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(published, "safe_extract", no_second_extraction)
    assert load_amu(amu_root) == rows
    assert [r["question_id"] for r in load_amu(amu_root, config="video")] == ["r1", "s1"]
    assert [r["question_id"] for r in load_amu(amu_root, config="image")] == ["p1", "i1"]


def test_load_amu_extract_to_another_folder(amu_root, tmp_path):
    rows = load_amu(amu_root, extract_to=tmp_path / "cache")
    _check_amu(rows, tmp_path / "cache")
    assert not (amu_root / ".extracted").exists()


def test_load_amu_already_extracted_needs_no_tarballs(amu_root, monkeypatch):
    for name in ("visual.tar.gz", "auditory.tar.gz"):
        with tarfile.open(amu_root / name) as tar:
            tar.extractall(amu_root, filter="data")
        (amu_root / name).unlink()
    monkeypatch.setattr(published, "safe_extract", lambda *a, **k: pytest.fail("nothing to extract"))
    _check_amu(load_amu(amu_root), amu_root)
    assert not (amu_root / ".extracted").exists()


def test_load_amu_extracted_next_to_the_tarballs_does_not_extract(amu_root):
    with tarfile.open(amu_root / "visual.tar.gz") as tar:
        tar.extractall(amu_root, filter="data")
    rows = load_amu(amu_root)
    assert Path(rows[0]["visual_path"]).is_relative_to(amu_root / "visual")
    assert not (amu_root / ".extracted" / "visual").exists()
    assert Path(rows[0]["auditory_path"]).is_relative_to((amu_root / ".extracted" / "auditory").resolve())


@pytest.mark.parametrize("wrap", ["list", "test", "by_config"])
def test_amu_config_json_shapes(amu_root, wrap):
    data = {"list": AMU_RECORDS, "test": {"test": AMU_RECORDS},
            "by_config": {"image": [AMU_RECORDS[0], AMU_RECORDS[2]], "video": [AMU_RECORDS[1], AMU_RECORDS[3]],
                          }}[wrap]
    (amu_root / "config.json").write_text(json.dumps(data), encoding="utf-8")
    assert sorted(r["question_id"] for r in load_amu(amu_root)) == ["i1", "p1", "r1", "s1"]


def test_amu_config_json_of_unknown_shape_is_a_clear_error(amu_root):
    (amu_root / "config.json").write_text(json.dumps({"version": 1, "name": "amu"}), encoding="utf-8")
    with pytest.raises(PublishedDataError, match="cannot find the records.*keys version, name"):
        load_amu(amu_root)


def test_tar_member_with_parent_path_is_refused(tmp_path):
    root = tmp_path / "amu"
    root.mkdir()
    (root / "config.json").write_text(json.dumps(AMU_RECORDS[:1]), encoding="utf-8")
    _tar(root / "visual.tar.gz", {"visual/images/cat.jpg": b"jpg", "../escaped.txt": b"evil"})
    _tar(root / "auditory.tar.gz", AUDITORY_MEMBERS)
    with pytest.raises(PublishedDataError, match=r"refusing unsafe member '\.\./escaped\.txt'"):
        load_amu(root)
    assert not (tmp_path / "escaped.txt").exists() and not (root / ".extracted" / "escaped.txt").exists()
    assert not (root / ".extracted" / "visual").exists()
    assert not [p for p in (root / ".extracted").iterdir() if "partial" in p.name]


def test_tar_absolute_member_and_outward_symlink_are_refused(tmp_path):
    evil = tmp_path / "abs.tar.gz"
    _tar(evil, {"/etc/evil": b"x"})
    with pytest.raises(PublishedDataError, match="unsafe member"):
        published.safe_extract(evil, tmp_path / "out1")
    link = tmp_path / "link.tar.gz"
    with tarfile.open(link, "w:gz") as tar:
        info = tarfile.TarInfo("visual/up")
        info.type, info.linkname = tarfile.SYMTYPE, "../../outside"
        tar.addfile(info)
    with pytest.raises(PublishedDataError, match="points outside"):
        published.safe_extract(link, tmp_path / "out2")
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


def test_missing_amu_data_says_what_to_download(tmp_path):
    with pytest.raises(PublishedDataError) as info:
        load_amu(tmp_path)
    message = str(info.value)
    for needle in ("PKU-Alignment/EvalAnything-AMU", "config.json", "visual.tar.gz", "auditory.tar.gz",
                   str(tmp_path), "DIR/config.json"):
        assert needle in message


def test_missing_media_file_is_a_clear_error(amu_root):
    records = AMU_RECORDS + [_amu_record("x1", "perception", "visual/images/nowhere.jpg", "auditory/speech/hello.wav")]
    (amu_root / "config.json").write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(PublishedDataError, match=r"record 4 \(x1\): visual file 'visual/images/nowhere.jpg' not found"):
        load_amu(amu_root)


def test_unknown_dimension_and_missing_field_are_errors(amu_root):
    bad = dict(AMU_RECORDS[0], evaluation_dimension="humour")
    (amu_root / "config.json").write_text(json.dumps([bad]), encoding="utf-8")
    with pytest.raises(PublishedDataError, match="unknown evaluation_dimension 'humour'"):
        load_amu(amu_root)
    incomplete = {k: v for k, v in AMU_RECORDS[0].items() if k != "annotations"}
    (amu_root / "config.json").write_text(json.dumps([incomplete]), encoding="utf-8")
    with pytest.raises(PublishedDataError, match="missing field.*annotations"):
        load_amu(amu_root)


# ---------------------------------------------------------------- published selection (parquet)

def _write_selection(path: Path, rows: list[dict], as_map: bool = False) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if as_map:
        table = pa.table({"instruction_uid": [r["instruction_uid"] for r in rows],
                          "instruction": [r["instruction"] for r in rows],
                          "selection": pa.array([list(r["selection"].items()) for r in rows],
                                                type=pa.map_(pa.string(), pa.float64()))})
    else:
        table = pa.Table.from_pylist(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _selection_record(instruction: str, votes: dict) -> dict:
    full = {c: 0.0 for c in ("t", "i", "a", "ti", "ta", "ia", "tia")}
    full.update(votes)
    return {"instruction_uid": hashlib.sha256(instruction.encode()).hexdigest(), "instruction": instruction,
            "selection": full}


SELECTION = [_selection_record("Draw a cat.", {"i": 0.6, "ti": 0.4}),
             _selection_record("What is 2+2?", {"t": 0.92, "ta": 0.08}),
             _selection_record("Play a tune.", {"a": 0.5, "ta": 0.3, "tia": 0.2})]


def test_load_selection_reads_the_parquet_as_one_split(tmp_path):
    root = tmp_path / "EvalAnything-Selection_Synergy"
    _write_selection(root / "EvalAnything-Selection_Synergy.parquet", SELECTION)
    rows = load_selection(root)
    assert [r["instruction"] for r in rows] == ["Draw a cat.", "What is 2+2?", "Play a tune."]
    assert rows[0] == {"instruction_uid": SELECTION[0]["instruction_uid"], "instruction": "Draw a cat.",
                       "selection": SELECTION[0]["selection"], "votes_source": "published",
                       "questions_audio": [], "questions_image": []}
    assert all(abs(sum(r["selection"].values()) - 1) <= 1e-6 for r in rows)
    assert load_selection(root / "EvalAnything-Selection_Synergy.parquet") == rows


def test_load_selection_normalises_counts_and_reads_map_columns(tmp_path):
    counts = [_selection_record("Show a dog.", {"i": 20, "ti": 5})]
    path = tmp_path / "sel" / "EvalAnything-Selection_Synergy.parquet"
    _write_selection(path, counts, as_map=True)
    (row,) = load_selection(path.parent)
    assert row["selection"]["i"] == pytest.approx(0.8) and row["selection"]["ti"] == pytest.approx(0.2)


def test_missing_selection_data_says_what_to_download(tmp_path):
    with pytest.raises(PublishedDataError) as info:
        load_selection(tmp_path)
    assert "PKU-Alignment/EvalAnything-Selection_Synergy" in str(info.value)
    assert "EvalAnything-Selection_Synergy.parquet" in str(info.value)


# ---------------------------------------------------------------- published instruction following (json)

def _if_root(tmp_path: Path) -> Path:
    root = tmp_path / "EvalAnything-InstructionFollowing"
    rows = {
        "text": [{"prompt_id": "t1", "prompt": "Write a haiku."}, {"prompt_id": "t2", "prompt": "List three colours."}],
        "image": [{"prompt_id": "i1", "prompt": "A red apple."}],
        "audio": [
            {"prompt_id": "a1", "prompt": "A dog barking.", "question_id": "a1-q1", "question": "Which animal?",
             "choice": ["cat", "dog", "cow", "bird"], "answer": "B"},
            {"prompt_id": "a2", "prompt": "Rain on a roof.", "question_id": "a2-q1", "question": "What weather?",
             "choice": "A. rain\nB. snow\nC. sun", "answer": "A"},
            {"prompt_id": "a1", "prompt": "A dog barking.", "question_id": "a1-q2", "question": "How many barks?",
             "choice": {"A": "one", "B": "two", "C": "many"}, "answer": "(c)"},
        ],
    }
    for modality, records in rows.items():
        folder = root / "data" / f"{modality}_instruct"
        folder.mkdir(parents=True)
        (folder / "test.json").write_text(json.dumps(records), encoding="utf-8")
    video = [{"prompt_id": "v1", "prompt": "A ball rolls left.", "question_id": "v1-q1", "question": "Which way?",
              "choice": "(A) left (B) right", "answer": "left"},
             {"prompt_id": "v1", "prompt": "A ball rolls left.", "question_id": "v1-q2", "question": "What rolls?",
              "choice": "[\"A. a ball\", \"B. a cube\"]", "answer": "A. a ball"}]
    folder = root / "data" / "video_instruct"
    folder.mkdir(parents=True)
    (folder / "test.json").write_text("".join(json.dumps(r) + "\n" for r in video), encoding="utf-8")  # JSON Lines
    return root


def test_load_instruction_following_per_modality(tmp_path):
    root = _if_root(tmp_path)
    assert load_instruction_following(root, "text") == [{"prompt_id": "t1", "prompt": "Write a haiku."},
                                                        {"prompt_id": "t2", "prompt": "List three colours."}]
    assert load_instruction_following(root, "image") == [{"prompt_id": "i1", "prompt": "A red apple.", "questions": []}]
    audio = load_instruction_following(root, "audio")
    assert [r["prompt_id"] for r in audio] == ["a1", "a2"]
    # `choice` keeps the options as published, as str.format shows them to the original's judge
    assert audio[0] == {"prompt_id": "a1", "prompt": "A dog barking.", "questions": [
        {"question": "Which animal?", "choices": ["cat", "dog", "cow", "bird"], "answer": "B", "question_id": "a1-q1",
         "choice": "['cat', 'dog', 'cow', 'bird']"},
        {"question": "How many barks?", "choices": ["one", "two", "many"], "answer": "C", "question_id": "a1-q2",
         "choice": "{'A': 'one', 'B': 'two', 'C': 'many'}"}]}
    assert audio[1]["questions"] == [{"question": "What weather?", "choices": ["rain", "snow", "sun"], "answer": "A",
                                      "question_id": "a2-q1", "choice": "A. rain\nB. snow\nC. sun"}]
    (video,) = load_instruction_following(root, "video")
    assert [(q["choices"], q["answer"]) for q in video["questions"]] == [(["left", "right"], "A"),
                                                                          (["a ball", "a cube"], "A")]
    assert load_instruction_following(root / "data" / "video_instruct", "video") == [video]


def test_missing_instruction_following_data_says_what_to_download(tmp_path):
    with pytest.raises(PublishedDataError) as info:
        load_instruction_following(tmp_path, "audio")
    message = str(info.value)
    assert "PKU-Alignment/EvalAnything-InstructionFollowing" in message and "data/audio_instruct/test.json" in message


@pytest.mark.parametrize("value, expected", [
    (["A. cat", "B. dog"], ["cat", "dog"]),
    (["cat", "B. dog"], ["cat", "B. dog"]),
    ({"B.": "dog", "A.": "cat"}, ["cat", "dog"]),
    ("A. cat\nB. dog\nC. Washington D.C.", ["cat", "dog", "Washington D.C."]),
    ("(A) cat (B) dog", ["cat", "dog"]),
    ("A: cat; B: dog; C: cow", ["cat", "dog", "cow"]),
    ("A. cat B. dog", ["cat", "dog"]),
    ('{"A": "cat", "B": "dog"}', ["cat", "dog"]),
    ("cat\ndog", ["cat", "dog"]),
])
def test_parse_choices_forms(value, expected):
    assert parse_choices(value) == expected


def test_parse_choices_and_answers_refuse_what_they_cannot_read():
    with pytest.raises(PublishedDataError, match="at least two"):
        parse_choices("just one option")
    with pytest.raises(PublishedDataError, match="without gaps"):
        parse_choices({"A": "x", "C": "y"})
    assert answer_letter("b", ["x", "y"]) == "B" and answer_letter("y", ["x", "y"]) == "B"
    with pytest.raises(PublishedDataError, match="neither a letter"):
        answer_letter("E", ["x", "y"])


# ---------------------------------------------------------------- writing the loaded rows

def test_materialize_all_writes_the_mini_suite_file_names(tmp_path, amu_root):
    base = amu_root.parent
    _write_selection(base / "EvalAnything-Selection_Synergy" / "EvalAnything-Selection_Synergy.parquet", SELECTION)
    _if_root(base)
    out = tmp_path / "out"
    written = materialize("all", base, out)
    assert sorted(p.name for p in written) == sorted([*AMU_FILES, *AMG_FILES])
    assert [r["question_id"] for r in read_jsonl(out / "amu_safety.jsonl")] == ["s1"]
    assert read_jsonl(out / "amg_selection.jsonl") == load_selection(base / "EvalAnything-Selection_Synergy")
    assert len(read_jsonl(out / "amg_if_audio.jsonl")) == 2
    assert not [p for p in os.listdir(out) if p.endswith(".partial")]


def test_loaded_rows_have_the_mini_suite_columns(tmp_path, amu_root):
    """The same task definitions run on either source: the published rows carry every column of
    the embedded rows (the embedded ones add answer/answer_type or expected_behaviour where they have them)."""
    published_amu = load_amu(amu_root)[0]
    for row in amu_rows():
        assert set(published_amu) <= set(row)
        assert set(row) - set(published_amu) <= {"answer", "answer_type", "expected_behaviour"}
    root = _if_root(tmp_path)
    for modality in ("text", "image", "audio", "video"):
        embedded = read_jsonl(DATA / f"amg_if_{modality}.jsonl")[0]
        assert set(load_instruction_following(root, modality)[0]) == set(embedded)
    _write_selection(tmp_path / "sel.parquet", SELECTION)
    assert set(load_selection(tmp_path / "sel.parquet")[0]) == set(read_jsonl(DATA / "amg_selection.jsonl")[0])


def test_write_rows_jsonl_round_trips(tmp_path):
    rows = [{"a": "é", "b": [1, 2]}, {"a": "x"}]
    path = write_rows_jsonl(iter(rows), tmp_path / "deep" / "rows.jsonl")
    assert read_jsonl(path) == rows and "é" in path.read_text(encoding="utf-8")


def test_amu_paths_without_the_archive_folder_and_with_shared_file_names(tmp_path):
    """Record paths may omit the archive's top folder; a file name that occurs twice is told apart by its folder."""
    root = tmp_path / "amu"
    root.mkdir()
    records = [_amu_record("p1", "perception", "images/0001.jpg", "speech/0001.wav"),
               _amu_record("p2", "perception", "videos/0001.mp4", "music/0001.wav")]
    (root / "config.json").write_text(json.dumps({"data": records}), encoding="utf-8")
    _tar(root / "visual.tar.gz", {"visual/images/0001.jpg": b"i", "visual/videos/0001.mp4": b"v"})
    _tar(root / "auditory.tar.gz", {"auditory/speech/0001.wav": b"s", "auditory/music/0001.wav": b"m"})
    rows = load_amu(root)
    assert [Path(r[k]).read_bytes() for r in rows for k in ("visual_path", "auditory_path")] == [b"i", b"s", b"v", b"m"]
    assert [(r["visual_kind"], r["auditory_kind"]) for r in rows] == [("image", "speech"), ("video", "music")]


def test_amu_auditory_kind_from_a_field_or_the_path_else_unknown(tmp_path):
    root = tmp_path / "amu"
    root.mkdir()
    records = [dict(_amu_record("p1", "perception", "visual/a.png", "auditory/0007.wav"), auditory_modality="Speech"),
               _amu_record("p2", "reasoning", "visual/b.avi", "auditory/0008.wav"),
               _amu_record("p3", "safety", "visual/c.png", "auditory/sound_effects/0009.wav")]
    (root / "config.json").write_text(json.dumps(records), encoding="utf-8")
    for rel in ("visual/a.png", "visual/b.avi", "visual/c.png", "auditory/0007.wav", "auditory/0008.wav",
                "auditory/sound_effects/0009.wav"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    rows = load_amu(root)
    assert [(r["visual_kind"], r["auditory_kind"]) for r in rows] == [("image", "speech"), ("video", "unknown"),
                                                                      ("image", "sound")]


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox")
def test_make_suite_media_is_byte_reproducible(tmp_path, monkeypatch):
    import importlib.util
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_suite_media.py"
    spec = importlib.util.spec_from_file_location("make_suite_media", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_suite_media", module)  # dataclasses look their module up
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds scripts/ to import its sibling
    spec.loader.exec_module(module)
    module.write(tmp_path / "a")
    module.write(tmp_path / "b")
    first, second = module.digests(tmp_path / "a"), module.digests(tmp_path / "b")
    assert first == second
    assert set(first) == {str(p.relative_to(DATA)) for p in DATA.rglob("*") if p.is_file()}


def test_unwritable_extraction_folder_asks_for_extract_to(amu_root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PublishedDataError, match="pass extract_to"):
        load_amu(amu_root, extract_to=blocker / "cache")


def test_run_with_data_dir_scores_the_published_rows(tmp_path):
    """`eval-anything run --data-dir` runs the suite's own task file on the published selection data."""
    import subprocess
    import sys

    _write_selection(tmp_path / "EvalAnything-Selection_Synergy" / "EvalAnything-Selection_Synergy.parquet", SELECTION)
    answers = {"Draw a cat.": "[[response]]: None\n[[image_instruction]]: a cat\n[[audio_instruction]]: None",
               "What is 2+2?": "[[response]]: 4\n[[image_instruction]]: None\n[[audio_instruction]]: None",
               "Play a tune.": "[[response]]: Here\n[[image_instruction]]: None\n[[audio_instruction]]: a tune"}
    predictions = tmp_path / "answers.jsonl"
    predictions.write_text("".join(json.dumps({"id": r["instruction_uid"], "text": answers[r["instruction"]]}) + "\n"
                                   for r in SELECTION))
    result = subprocess.run([sys.executable, "-m", "eval_anything", "run", "--model", str(predictions),
                             "--tasks", "amg_modality_selection", "--data-dir", str(tmp_path), "--generator", "",
                             "--output-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    metric = json.loads((run_dir / "results.json").read_text())["tasks"]["amg_modality_selection"]["metrics"]
    assert metric["modality_selection"]["n"] == 3
    assert metric["modality_selection"]["value"] == pytest.approx((0.6 + 0.92 + 0.3) / 3)
    missing = subprocess.run([sys.executable, "-m", "eval_anything", "run", "--model", str(predictions),
                              "--tasks", "amu_safety", "--data-dir", str(tmp_path / "nothing-here"),
                              "--output-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "PKU-Alignment/EvalAnything-AMU" in missing.stderr
