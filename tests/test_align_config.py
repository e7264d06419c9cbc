"""align: stage configs (YAML + flags, unknown keys), artefacts (resume, no duplicates), data loaders."""
import argparse
import io
import json
import wave

import pytest

from eval_anything.align.artifacts import Artifact, ArtifactMismatch, fingerprint, write_records
from eval_anything.align.config import ConfigError, DPOConfig, LLFConfig, SampleConfig
from eval_anything.align.data import load_llf_records, load_preference_records
from eval_anything.align.records import LLFRecord


def parse(config_class, argv):
    parser = argparse.ArgumentParser()
    config_class.add_arguments(parser)
    return config_class.from_args(parser.parse_args(argv))


def test_yaml_then_flags_precedence_and_types(tmp_path):
    (tmp_path / "dpo.yaml").write_text("beta: 0.2\nmax_steps: 7\noutput_dir: out\nlora: true\nmax_length: null\n")
    config = parse(DPOConfig, ["--config", str(tmp_path / "dpo.yaml"), "--max-steps", "9", "--lora-targets", "q_proj,k_proj"])
    assert (config.beta, config.max_steps, config.lora, config.max_length) == (0.2, 9, True, None)
    assert config.lora_targets == ["q_proj", "k_proj"] and config.learning_rate == 5e-6


def test_unknown_yaml_key_is_an_error_with_a_suggestion(tmp_path):
    (tmp_path / "dpo.yaml").write_text("output_dir: out\nbetta: 0.2\n")
    with pytest.raises(ConfigError, match=r"unknown key 'betta' \(did you mean 'beta'\?\)"):
        parse(DPOConfig, ["--config", str(tmp_path / "dpo.yaml")])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="max_steps must be int"):
        DPOConfig.from_dict({"output_dir": "o", "max_steps": "many"})


def test_llf_sections_are_checked():
    with pytest.raises(ConfigError, match=r"llf.dpo: unknown key 'bta' \(did you mean 'beta'\?\)"):
        LLFConfig.from_dict({"data": "d.jsonl", "dpo": {"bta": 1}})
    with pytest.raises(ConfigError, match="method must be"):
        LLFConfig.from_dict({"data": "d.jsonl", "method": "sft"})


def test_config_hash_follows_results_not_locations():
    base = DPOConfig.from_dict({"output_dir": "a"})
    assert base.config_hash() == base.replace(output_dir="b", save_steps=5).config_hash()
    assert base.config_hash() != base.replace(beta=0.5).config_hash()


def test_artifact_resumes_without_duplicates_and_cuts_a_torn_line(tmp_path):
    config = SampleConfig.from_dict({"output_dir": str(tmp_path / "a"), "prompts": "p"})
    art = Artifact(config.output_dir)
    assert art.open("sample", config, []) is False
    write_records(art, [LLFRecord(f"r{i}", "p", response="y") for i in range(3)])
    with art.records_path.open("a") as handle:
        handle.write('{"id": "r3", "prom')  # killed mid-write
    art = Artifact(config.output_dir)
    assert art.open("sample", config, []) is False  # still running: resume
    assert sorted(art.done()) == ["r0", "r1", "r2"]
    assert write_records(art, [LLFRecord(f"r{i}", "p", response="y") for i in range(5)]) == 2
    manifest = art.finish()
    ids = [json.loads(line)["id"] for line in art.records_path.read_text().splitlines()]
    assert ids == ["r0", "r1", "r2", "r3", "r4"] and manifest["count"] == 5
    assert Artifact(config.output_dir).open("sample", config, []) is True  # complete: nothing to do
    with pytest.raises(ArtifactMismatch, match="another config"):
        Artifact(config.output_dir).open("sample", config.replace(max_new_tokens=3), [])
    assert fingerprint(config.output_dir)["sha256"] == manifest["records_sha256"]


# -- align-anything parquet layouts (PUBLISHED-DATA.md §4) ---------------------------------------

def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def _wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\0\0" * 1600)
    return buffer.getvalue()


def _annotations(better):
    return {"response_1": "first answer", "response_2": "second answer", "overall_response": better,
            "text_critique_1": "critique of the first", "text_critique_2": "critique of the second",
            "overall_textfeedback": "overall feedback", "p_response": 1, "prompt_following_rate_1": 3,
            "prompt_following_rate_2": 2, "p_rationale_1": "r", "p_rationale_2": "r"}


def _write(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_ti2t_parquet_gives_llf_and_binary_records(tmp_path, monkeypatch):
    monkeypatch.setenv("EVAL_ANYTHING_CACHE", str(tmp_path / "cache"))
    rows = [{"question": "What colour?", "image": {"bytes": _png(), "path": "x.png"}, **_annotations(2)},
            {"question": "Tie?", "image": {"bytes": _png(), "path": "y.png"}, **_annotations(0)}]  # dropped
    path = _write(tmp_path / "text-image-to-text" / "train.parquet", rows)
    (llf,) = load_llf_records(path)
    assert (llf.prompt, llf.response, llf.refinement, llf.critique) == (
        "What colour?", "first answer", "second answer", "critique of the first")
    assert llf.media[0].modality == "image" and llf.media[0].path.endswith(".png")
    from PIL import Image

    assert Image.open(llf.media[0].path).size == (8, 8)
    (pref,) = load_preference_records(path)
    assert (pref.chosen, pref.rejected, pref.source) == ("second answer", "first answer", "binary")
    assert pref.id == llf.id


def test_audio_video_text_subsets_and_llf_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("EVAL_ANYTHING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ROOT_VIDEO_PATH", str(tmp_path / "videos"))
    audio = _write(tmp_path / "ta2t.parquet", [{"prompt": "Sound?", "audio_path": {"bytes": _wav(), "path": "a.wav"},
                                                **_annotations(1)}])
    video = _write(tmp_path / "tv2t.parquet", [{"prompt": "<video> Moves?", "video_path": "./clips/v.mp4",
                                                **_annotations(1)}])
    text = _write(tmp_path / "text-to-text" / "val.parquet", [{"prompt": "Hi?", **_annotations(1)}])
    llf = _write(tmp_path / "llf.parquet", [{"prompt": "Q", "response": "bad", "critique": "fix it",
                                             "refinement": "good", "image": __import__("base64").b64encode(_png()).decode()}])
    (a,) = load_preference_records(audio)
    assert a.media[0].modality == "audio" and a.chosen == "first answer"
    import soundfile

    assert soundfile.info(a.media[0].path).samplerate == 16000
    (v,) = load_llf_records(video)
    assert v.media[0].path == str((tmp_path / "videos" / "clips" / "v.mp4"))
    (t,) = load_llf_records(text)
    assert t.media == () and t.critique == "critique of the second"
    (r,) = load_llf_records(llf)
    assert (r.response, r.critique, r.refinement, r.media[0].modality) == ("bad", "fix it", "good", "image")
    (p,) = load_preference_records(llf)
    assert (p.chosen, p.rejected, p.source) == ("good", "bad", "llf")


def test_align_cli_lists_stages_and_reports_config_errors_without_torch(tmp_path):
    import subprocess
    import sys

    (tmp_path / "bad.yaml").write_text("output_dir: out\nmax_stepz: 3\n")
    code = ("import sys, contextlib, io\n"
            "from eval_anything.cli import main\n"
            "out, err = io.StringIO(), io.StringIO()\n"
            "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
            "    try: main(['align', '--help'])\n"
            "    except SystemExit: pass\n"
            f"    code = main(['align', 'dpo', '--config', {str(tmp_path / 'bad.yaml')!r}])\n"
            "assert code == 2, code\n"
            "assert \"unknown key 'max_stepz' (did you mean 'max_steps'?)\" in err.getvalue(), err.getvalue()\n"
            "for stage in ('llf', 'compare', 'critic-sft', 'sample', 'critique', 'refine', 'pairs', 'dpo', 'rm', 'ppo',\n"
            "              'rloo', 'grpo'):\n"
            "    assert stage in out.getvalue(), stage\n"
            "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
