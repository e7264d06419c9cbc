"""Models named as users name them: a Hub id `ORG/NAME[@REV]` resolved through a Hugging Face cache laid
out on disk here (offline), its commit recorded with the run; lm-eval's spelling of the same."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval_anything.cli import main
from eval_anything.models import ModelSpec, resolve_spec
from eval_anything.models.weights import WeightsNotFoundError, resolve_weights
from hub_cache import MAIN_SHA, REPO, TAGGED_SHA

ROOT = Path(__file__).resolve().parent.parent


def test_a_run_by_hub_id_records_the_commit(hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """As a user types it, in a fresh process: HF_HOME and HF_HUB_OFFLINE from the environment."""
    env = {**os.environ, "HF_HOME": str(hub_cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_CACHE", None)
    command = [sys.executable, "-m", "eval_anything", "run", "--model", f"hf:{REPO}", "--tasks", "arith_mini",
               "--limit", "4", "--output-dir", str(tmp_path / "runs")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    model = json.loads((run_dir / "manifest.json").read_text())["model"]
    assert (model["reference"], model["repo_id"], model["revision"], model["commit"]) == (REPO, REPO, "main", MAIN_SHA)
    assert model["loaded"]["trust_remote_code"] is False
    results = json.loads((run_dir / "results.json").read_text())
    value = results["tasks"]["arith_mini"]["metrics"]["numeric"]["value"]
    for pinned, code in ((MAIN_SHA[:12], 0), (TAGGED_SHA[:12], 2)):  # verify: another commit is another model
        references = tmp_path / f"refs-{pinned}.yaml"
        references.write_text(json.dumps({"format": 1, "version": 1, "references": [
            {"task": "arith_mini", "model": f"hf:{REPO}@{pinned}", "metric": "numeric", "value": value,
             "tolerance": 0}]}))
        assert main(["verify", str(run_dir), "--references", str(references)]) == code
    assert f"the run used commit {MAIN_SHA}: another revision is another model" in capsys.readouterr().out
    from eval_anything.export import apply_bundle, export_run
    from eval_anything.settings import RunArguments

    info = export_run(run_dir, tmp_path / "run.tar.gz")  # a bundle reruns the commit, not where main is now
    assert info["model"]["commit"] == MAIN_SHA and "commit " + MAIN_SHA in info["notes"][0]
    rerun = apply_bundle(RunArguments(from_bundle=str(tmp_path / "run.tar.gz"), output_dir=tmp_path / "again"))
    assert rerun.model == f"hf:{REPO}@{MAIN_SHA}"


def test_revisions_resolve_to_their_commits_and_ids(offline_cache: Path, tmp_path: Path):
    from eval_anything.runner import run_id
    from eval_anything.settings import RunSettings
    from eval_anything.tasks import Catalog

    by_suffix = resolve_spec(f"hf:{REPO}@{TAGGED_SHA}")
    by_argument = resolve_spec(f"hf:{REPO}", {"revision": TAGGED_SHA})
    by_tag = resolve_spec(f"hf:{REPO}@v2")
    lm_eval = resolve_spec("hf", {"pretrained": REPO, "revision": "v2", "dtype": "float32"})
    assert by_suffix == by_argument  # one model, whichever way the revision is written
    assert by_suffix.describe() == {"backend": "hf", "reference": REPO, "args": {}, "repo_id": REPO,
                                    "revision": TAGGED_SHA, "commit": TAGGED_SHA}
    assert (by_tag.weights.commit_sha, lm_eval.weights.commit_sha, lm_eval.args) == (TAGGED_SHA, TAGGED_SHA,
                                                                                     {"dtype": "float32"})
    assert by_tag.weights.path == offline_cache / "models--acme--tiny-llama" / "snapshots" / TAGGED_SHA
    tasks = Catalog().resolve("arith_mini")
    main_id = run_id(resolve_spec(f"hf:{REPO}"), tasks, RunSettings())
    assert main_id != run_id(by_suffix, tasks, RunSettings())  # another commit is another run
    assert main_id == run_id(resolve_spec(f"hf:{REPO}@main"), tasks, RunSettings())
    assert main_id.startswith("hf-tiny-llama-")
    local = resolve_spec(f"hf:{by_tag.weights.path}")
    assert (local.weights.commit_sha, "commit" in local.describe()) == (None, False)  # a folder stays a folder


def test_judges_reward_models_and_align_take_hub_ids_too(offline_cache: Path):
    from eval_anything.judges.reward_models import RewardModel
    from eval_anything.models import local_weights_dir
    from eval_anything.settings import EvaluationArguments, judge_settings

    judge = judge_settings(EvaluationArguments(judge=(f"hf:{REPO}@v2",))).identity()["judge"]
    assert judge == {"backend": "hf", "reference": REPO, "commit": TAGGED_SHA}  # another commit, another judge
    reward = RewardModel(REPO)
    assert (reward.path.name, reward.describe()["commit"]) == (MAIN_SHA, MAIN_SHA)
    assert local_weights_dir(f"hf:{REPO}@v2") == offline_cache / "models--acme--tiny-llama" / "snapshots" / TAGGED_SHA
    # the run id holds the commit a Hub reward model or generator pipeline resolved to, not a moving name
    rewarded = judge_settings(EvaluationArguments(reward_model=f"{REPO}@v2")).identity()["reward_model"]
    assert rewarded == f"{REPO}@{TAGGED_SHA}"
    pipeline = offline_cache / "models--acme--tiny-flux" / "snapshots" / MAIN_SHA
    pipeline.mkdir(parents=True)
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    (offline_cache / "models--acme--tiny-flux" / "refs").mkdir()
    (offline_cache / "models--acme--tiny-flux" / "refs" / "main").write_text(MAIN_SHA)
    from eval_anything.settings import RunSettings

    spec = "image=diffusers:acme/tiny-flux"
    assert RunSettings(generators=spec).generator_identity() == {"spec": spec, "commits": {"image": MAIN_SHA}}
    assert RunSettings(generators="image=textcard").generator_identity() == "image=textcard"


def test_a_name_the_cache_lacks_is_one_clear_error(offline_cache: Path, capsys: pytest.CaptureFixture,
                                                   tmp_path: Path):
    assert main(["run", "--model", "hf:acme/absent", "--tasks", "arith_mini", "--output-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "acme/absent revision main is not in the Hugging Face cache" in error
    assert str(offline_cache) in error and "download acme/absent --revision main" in error
    misspelt = ["run", "--model", f"hf:{REPO}", "--model-args", "dtyp=bfloat16", "--tasks", "arith_mini",
                "--output-dir", str(tmp_path)]
    assert main(misspelt) == 2
    assert "unknown model argument 'dtyp' for the hf backend; did you mean 'dtype'?" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # both refused before a run directory was made
    with pytest.raises(WeightsNotFoundError, match=f"{REPO} revision v9 is not in .* --revision v9"):
        resolve_weights(REPO, "v9")
    with pytest.raises(ValueError, match="names revision 'v2' but revision='v3'"):
        resolve_weights(f"{REPO}@v2", "v3")
    with pytest.raises(WeightsNotFoundError, match="no such directory, and not a Hub id"):
        resolve_weights("./not/a/dir")
    with pytest.raises(ValueError, match="--model hf names no model: add --model-args pretrained="):
        resolve_spec("hf", {"dtype": "auto"})


def test_lm_eval_arguments_map_to_ours_or_say_what_to_use():
    from eval_anything.models.lm_eval_names import from_lm_eval
    from eval_anything.settings import EvaluationArguments, parse_run_command

    assert from_lm_eval("hf", {"parallelize": True, "max_memory_per_gpu": "20GiB", "max_cpu_memory": "64GiB",
                               "load_in_4bit": True, "dtype": "bfloat16", "batch_size": 8}) == {
        "device_map": "auto", "max_memory": "gpu:20GiB,cpu:64GiB", "quantization": "4bit", "dtype": "bfloat16",
        "batch_size": 8}
    assert from_lm_eval("vllm", {"max_length": 4096, "batch_size": "auto", "tensor_parallel_size": 2}) == {
        "max_model_len": 4096, "tensor_parallel_size": 2}
    with pytest.raises(ValueError, match="max_length .lm-eval. is not supported by the hf backend"):
        from_lm_eval("hf", {"max_length": 2048})
    with pytest.raises(ValueError, match="parallelize=True and device_map=sequential disagree"):
        from_lm_eval("hf", {"parallelize": True, "device_map": "sequential"})
    parsed = parse_run_command(["run", "--model", "hf", "--model_args", "pretrained=/x,dtype=bfloat16"])
    assert isinstance(parsed, EvaluationArguments) and parsed.model_args == "pretrained=/x,dtype=bfloat16"


def test_verify_and_gate_see_another_commit_as_another_model(tmp_path: Path):
    from eval_anything import gate, verify

    label = "hf:acme/tiny-llama"
    results = {"model": {"backend": "hf", "reference": REPO, "commit": MAIN_SHA}}
    assert verify.names_run_model(f"{label}@{TAGGED_SHA[:12]}", label)
    assert verify.revision_differs(f"{label}@{MAIN_SHA[:12]}", label, verify.model_commit(results)) == ""
    reason = verify.revision_differs(f"{label}@{TAGGED_SHA[:12]}", label, verify.model_commit(results))
    assert f"the run used commit {MAIN_SHA}: another revision is another model" in reason

    class Run:
        def __init__(self, commit: str) -> None:
            self.results, self.manifest = {"judge": {"backend": "hf", "reference": REPO, "commit": commit}}, {}

    assert gate.judge_of(Run(MAIN_SHA)) != gate.judge_of(Run(TAGGED_SHA))
    assert gate.judge_label(gate.judge_of(Run(MAIN_SHA))) == f"hf:{REPO} at commit {MAIN_SHA}"


def test_model_arguments_keep_json_and_device_lists_whole():
    from eval_anything.models import parse_model_args

    assert parse_model_args('device_map={"model": 0, "lm_head": 1},max_memory=0:20GiB,1:20GiB,cpu:64GiB,x=2') == {
        "device_map": '{"model": 0, "lm_head": 1}', "max_memory": "0:20GiB,1:20GiB,cpu:64GiB", "x": 2}
    with pytest.raises(ValueError, match="'1:2' is not key=value"):
        parse_model_args("batch_size=4,1:2")
    assert ModelSpec("hf", "/m").describe() == {"backend": "hf", "reference": "/m", "args": {}}
