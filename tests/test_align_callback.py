"""align: the in-loop evaluation callback evaluates the model in training, in memory, on both ranks of a
2-process DPO run (`accelerate launch`, DDP over gloo), and scores exactly what a separate run on the
checkpoint saved at that step scores."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from eval_anything.align.config import DPOConfig
from eval_anything.align.records import write_jsonl

PAIRS = [{"id": f"p{i}", "prompt": prompt, "chosen": chosen, "rejected": rejected}
         for i, (prompt, chosen, rejected) in enumerate([("What is 2+2?", "4", "5"), ("What is 3+3?", "6", "9"),
                                                         ("What is 1+4?", "5", "3"), ("What is 2+5?", "7", "1")])]
LIMIT = 5
"""Odd: the ranks' shares differ in size."""


def answers(run_dir):
    return {r["id"]: (r["outputs"][0]["text"], {name: s["value"] for name, s in r["scores"].items()})
            for r in map(json.loads, (run_dir / "samples" / "arith_mini.jsonl").read_text().splitlines())}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_two(config_path: Path, cwd: Path) -> str:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "EVAL_ANYTHING_RANK_TIMEOUT_S": "60",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "eval_anything", "align", "dpo",
               "--config", str(config_path)]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stderr


def test_in_loop_scores_on_two_ranks_equal_a_separate_run_on_the_saved_checkpoint(tmp_path, tiny_llama_dir):
    from eval_anything.models import resolve_spec
    from eval_anything.runner import evaluate
    from eval_anything.settings import RunSettings
    from eval_anything.tasks import Catalog

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, PAIRS)
    values = {"model": str(tiny_llama_dir), "pairs": str(pairs), "output_dir": str(tmp_path / "dpo"),
              "max_steps": 3, "save_steps": 2, "batch_size": 1, "learning_rate": 1e-2, "max_length": 64,
              "eval_every": 2, "eval_tasks": ["arith_mini"], "eval_limit": LIMIT, "eval_max_new_tokens": 4,
              "eval_output_dir": str(tmp_path / "runs")}
    config = DPOConfig.from_dict(values)
    (tmp_path / "dpo.yaml").write_text(json.dumps(values))  # JSON is YAML
    log = _launch_two(tmp_path / "dpo.yaml", tmp_path)
    assert log.count("in-loop evaluation at step 2") == 1  # logged by the main rank only
    manifest = json.loads((tmp_path / "dpo" / "manifest.json").read_text())
    assert manifest["global_step"] == 3 and manifest["distributed"]["processes"] == 2  # training went on
    (run_dir,) = (tmp_path / "runs").iterdir()  # one run directory, both ranks' shares in it
    manifest = json.loads((run_dir / "manifest.json").read_text())
    lineage = manifest["lineage"]
    assert manifest["model"]["backend"] == "live" and manifest["status"] == "complete"
    assert manifest["data_parallel"] == {"world_size": 2}
    assert (lineage["base_model"], lineage["method"], lineage["step"]) == (str(tiny_llama_dir), "dpo", 2)
    assert lineage["config_hash"] == config.config_hash() and str(pairs) in lineage["data"]
    arith = Catalog().resolve("arith_mini")
    ids = [s.id for s in arith[0].samples(LIMIT)]
    assert [json.loads(line)["id"] for line in (run_dir / "samples" / "arith_mini.jsonl").read_text().splitlines()] == ids
    # a separate run on the step-2 checkpoint (linears unpacked, as the live model's are) answers the same
    settings = RunSettings(output_dir=tmp_path / "separate", limit=LIMIT, max_new_tokens=4)
    checkpoint = tmp_path / "dpo" / "checkpoints" / "checkpoint-2"
    separate = evaluate(resolve_spec(f"hf:{checkpoint}", {"packed_linears": False}), arith, settings)
    assert answers(run_dir) == answers(separate.run_dir)
    in_loop = json.loads((run_dir / "results.json").read_text())["tasks"]["arith_mini"]["metrics"]
    assert in_loop == separate.results["tasks"]["arith_mini"]["metrics"]
    base = evaluate(resolve_spec(str(tiny_llama_dir), {"packed_linears": False}), arith, settings)
    assert answers(base.run_dir) != answers(run_dir)  # it evaluated the trained weights, not the base's
