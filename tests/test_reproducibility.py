"""Reproducibility: `verify` against reference scores, `export` + `run --from`, offline data bundles."""
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from eval_anything import data_bundles
from eval_anything.cli import main
from eval_anything.suite import published
from eval_anything.verify import SHIPPED, load_references


def only_run_dir(output_dir: Path) -> Path:
    (run_dir,) = [p for p in output_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- verify -------------------------------------------------------------------------------------

def test_shipped_references_parse_and_cover_the_embedded_default():
    refs = load_references(SHIPPED)
    assert {(r.task, r.model) for r in refs} >= {("arith_mini", "embedded:smollm2-135m-instruct")}
    assert all(r.tolerance >= 0 for r in refs)


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    """A rerun of the embedded default on arith_mini, made (and checked) by `verify` itself."""
    out = tmp_path_factory.mktemp("verify-runs")
    code = main(["verify", "--tasks", "arith_mini", "--output-dir", str(out)])
    return out, code


def test_verify_passes_on_a_rerun_of_the_embedded_default(embedded_run, capsys):
    out, code = embedded_run
    assert code == 0
    run_dir = only_run_dir(out)
    assert main(["verify", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "arith_mini/numeric: reference 0.2750, measured" in text and "tolerance 0.0500: within tolerance" in text
    assert "result: PASS (exit 0)" in text


def test_verify_fails_when_a_reference_is_edited_beyond_tolerance(embedded_run, tmp_path, capsys):
    run_dir = only_run_dir(embedded_run[0])
    data = yaml.safe_load(SHIPPED.read_text())
    data["references"][0]["value"] += 0.2
    edited = tmp_path / "refs.yaml"
    edited.write_text(yaml.safe_dump(data))
    assert main(["verify", str(run_dir), "--references", str(edited)]) == 1
    assert "OUTSIDE tolerance" in capsys.readouterr().out
    data["references"][0]["value"] -= 0.2
    data["references"][0]["settings"]["limit"] = 8  # the reference was made on other settings
    edited.write_text(yaml.safe_dump(data))
    assert main(["verify", str(run_dir), "--references", str(edited)]) == 2
    assert "run settings differ: limit None (reference 8)" in capsys.readouterr().out
    other_model = tmp_path / "other.yaml"
    other_model.write_text(yaml.safe_dump({"format": 1, "version": 1, "references": [
        {"task": "arith_mini", "model": "hf:elsewhere", "metric": "numeric", "value": 0.5, "tolerance": 0.1}]}))
    assert main(["verify", str(run_dir), "--references", str(other_model)]) == 2


def test_the_run_records_prompts_and_generation_settings(embedded_run):
    run_dir = only_run_dir(embedded_run[0])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["settings"] == {"limit": None, "seed": 1234, "max_new_tokens": None}
    record = json.loads((run_dir / "samples" / "arith_mini.jsonl").read_text().splitlines()[0])
    assert record["requests"][0]["prompt"].endswith("Answer with the number only.")


# ---- export and run --from ----------------------------------------------------------------------

def test_export_then_run_from_reproduces_identical_scores(tmp_path, capsys):
    """A replay run (answers made elsewhere, packed into the bundle) on a built-in task and a zero-code task."""
    from PIL import Image

    media = tmp_path / "task" / "media"
    media.mkdir(parents=True)
    for i, colour in enumerate(["red", "green"]):
        Image.new("RGB", (16, 16), colour).save(media / f"{i}.png")
    data = write_jsonl(tmp_path / "task" / "colours.jsonl",
                       [{"id": f"c{i}", "question": "colour?", "image": f"media/{i}.png", "answer": c}
                        for i, c in enumerate(["red", "green"])])
    preds = write_jsonl(tmp_path / "preds.jsonl",
                        [{"task": "arith_mini", "id": f"arith-{i:03d}", "text": str(i)} for i in range(40)]
                        + [{"task": "colours", "id": "c0", "text": "red"}, {"task": "colours", "id": "c1", "text": "blue"}])
    first = tmp_path / "first"
    assert main(["run", "--model", f"replay:{preds}", "--tasks", f"arith_mini,{data}", "--limit", "10",
                 "--output-dir", str(first)]) == 0
    run_dir = only_run_dir(first)
    archive = tmp_path / "run.tar.gz"
    assert main(["export", str(run_dir), "-o", str(archive)]) == 0
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"bundle.json", "run/manifest.json", "run/results.json", "run/samples/arith_mini.jsonl",
            "tasks/arith_mini/arith_mini.yaml", "tasks/arith_mini/data/arith_mini.jsonl",
            "tasks/colours/colours.jsonl", "tasks/colours/media/0.png", "tasks/colours/media/1.png",
            "model/preds.jsonl"} <= names
    with tarfile.open(archive) as tar:
        info = json.load(tar.extractfile("bundle.json"))
    arith = next(t for t in info["tasks"] if t["name"] == "arith_mini")
    assert arith["generation"] == {"max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0, "stop": ["\n"],
                                   "seed": 1234, "repetition_penalty": 1.0}
    assert arith["prompt_template"].startswith("{{ question }}")
    # the original task files and predictions are gone: the bundle is all that is needed
    data.unlink()
    preds.unlink()
    second = tmp_path / "second"
    capsys.readouterr()
    assert main(["run", "--from", str(archive), "--output-dir", str(second)]) == 0
    rerun = only_run_dir(second)
    # (the run id differs only because the replay file now lives inside the unpacked bundle)
    before = json.loads((run_dir / "results.json").read_text())["tasks"]
    after = json.loads((rerun / "results.json").read_text())["tasks"]
    for name in ("arith_mini", "colours"):
        assert after[name]["metrics"] == before[name]["metrics"]
        assert after[name]["hash"] == before[name]["hash"]
    assert after["arith_mini"]["counts"]["samples"] == 10  # --limit came from the bundle
    assert main(["verify", str(rerun), "--reference-run", str(archive)]) == 0
    assert "result: PASS" in capsys.readouterr().out


def test_a_tampered_bundle_is_refused(tmp_path):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"task": "arith_mini", "id": "arith-000", "text": "1"}])
    assert main(["run", "--model", f"replay:{preds}", "--tasks", "arith_mini", "--limit", "1",
                 "--output-dir", str(tmp_path / "a")]) == 0
    archive = tmp_path / "run.tar.gz"
    assert main(["export", str(only_run_dir(tmp_path / "a")), "-o", str(archive)]) == 0
    unpacked = tmp_path / "x"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / "tasks/arith_mini/data/arith_mini.jsonl").write_text('{"id": "x", "question": "?", "answer": "1"}\n')
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(tampered, "w:gz") as tar:
        for path in sorted(unpacked.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(unpacked).as_posix())
    assert main(["run", "--from", str(tampered), "--output-dir", str(tmp_path / "b")]) == 2


# ---- offline data bundles -----------------------------------------------------------------------

def test_bundle_names_agree_with_the_published_loaders():
    assert data_bundles.ALL_LAYOUT == published.ALL_LAYOUT
    assert (data_bundles.AMU_DATASET, data_bundles.SELECTION_DATASET, data_bundles.IF_DATASET) == (
        published.AMU_DATASET, published.SELECTION_DATASET, published.IF_DATASET)
    assert data_bundles.SELECTION_FILE == published.SELECTION_FILE and data_bundles.IF_MODALITIES == published.IF_MODALITIES


def _published_snapshot(root: Path) -> Path:
    """Files in the published layouts (../shared/PUBLISHED-DATA.md), as copied by hand from the hub."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    amu = root / "EvalAnything-AMU"
    amu.mkdir(parents=True)
    (amu / "config.json").write_text(json.dumps([{
        "question_id": "p1", "question": "what is it?", "visual_modality_path": "visual/images/cat.jpg",
        "auditory_modality_path": "auditory/speech/hello.wav", "evaluation_dimension": "perception",
        "annotations": [{"answer": f"ref {i}", "keywords": {"visual": ["v"], "auditory": ["a"]}} for i in range(10)]}]))
    for name, member, payload in (("visual.tar.gz", "visual/images/cat.jpg", b"jpg"),
                                  ("auditory.tar.gz", "auditory/speech/hello.wav", b"wav")):
        with tarfile.open(amu / name, "w:gz") as tar:
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    selection = root / "EvalAnything-Selection_Synergy"
    selection.mkdir()
    pq.write_table(pa.table({"instruction_uid": ["a" * 64], "instruction": ["draw a cat and describe it"],
                             "selection": [{"t": 0.1, "i": 0.2, "a": 0.0, "ti": 0.5, "ta": 0.1, "ia": 0.0, "tia": 0.1}]}),
                   selection / "EvalAnything-Selection_Synergy.parquet")
    follow = root / "EvalAnything-InstructionFollowing"
    for modality in ("text", "image", "audio", "video"):
        folder = follow / "data" / f"{modality}_instruct"
        folder.mkdir(parents=True)
        rows = [{"prompt_id": "1", "prompt": f"make {modality}"}]
        if modality in ("audio", "video"):
            rows[0].update(question_id="q1", question="what?", choice="A. x\nB. y", answer="A")
        (folder / "test.json").write_text(json.dumps(rows))
    (root / "EvalAnything-AMU" / ".cache").mkdir()  # hub metadata is left out of the bundle
    (root / "EvalAnything-AMU" / ".cache" / "junk").write_text("x")
    return root


def test_bundle_from_dir_passes_check_and_a_corrupted_file_is_named(tmp_path, capsys):
    snapshot = _published_snapshot(tmp_path / "copied")
    target = tmp_path / "bundle"
    assert main(["data", "fetch", "all", "--to", str(target), "--from-dir", str(snapshot)]) == 0
    manifest = json.loads((target / data_bundles.MANIFEST).read_text())
    assert set(manifest["datasets"]) == set(data_bundles.ALL_LAYOUT.values())
    assert "EvalAnything-AMU/visual.tar.gz" in manifest["files"]
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in manifest["files"].values())
    assert not any(".cache" in name for name in manifest["files"])
    assert main(["data", "check", str(target)]) == 0
    assert "ok (" in capsys.readouterr().out
    # the suite's loaders read the bundle (what `run --data-dir` does, offline)
    written = published.materialize("all", target, tmp_path / "rows")
    assert len(written) == 9
    # the bundle is unchanged by a run reading it (extraction and rows go to skipped folders)
    assert main(["data", "check", str(target)]) == 0
    corrupted = target / "EvalAnything-InstructionFollowing" / "data" / "audio_instruct" / "test.json"
    text = corrupted.read_text()
    corrupted.write_text(text.replace("make", "mAke"))  # same size, other bytes
    (target / "EvalAnything-Selection_Synergy" / "EvalAnything-Selection_Synergy.parquet").unlink()
    capsys.readouterr()
    assert main(["data", "check", str(target)]) == 1
    out = capsys.readouterr().out
    assert "EvalAnything-InstructionFollowing/data/audio_instruct/test.json: sha256 differs" in out
    assert "EvalAnything-Selection_Synergy/EvalAnything-Selection_Synergy.parquet: missing" in out


def test_bundle_one_dataset_folder_and_missing_layout(tmp_path, capsys):
    snapshot = _published_snapshot(tmp_path / "copied")
    assert main(["data", "fetch", "amu", "--to", str(tmp_path / "b1"),
                 "--from-dir", str(snapshot / "EvalAnything-AMU")]) == 0
    (snapshot / "EvalAnything-InstructionFollowing" / "data" / "video_instruct" / "test.json").unlink()
    assert main(["data", "fetch", "amg", "--to", str(tmp_path / "b2"), "--from-dir", str(snapshot)]) == 1
    assert "lacks data/video_instruct/test.json" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "nothing")]) == 1


def test_fetch_offline_fails_clearly(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["data", "fetch", "amg", "--to", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "could not download PKU-Alignment/EvalAnything-Selection_Synergy" in err and "--from-dir" in err
