"""Generation throughput on one GPU, side by side in one run: eval-anything's `hf` backend (bfloat16, continuous
batching) and `vllm` backend against lm-evaluation-harness's `hf` and `vllm` models, on the same generate-until
task (vs_lm_eval.py's arithmetic questions and task files), the same model folder and length, greedy.

    pip install 'lm_eval[hf,vllm]'            # into the interpreter that runs this script (or see --lm-eval-python)
    python benchmarks/random_model.py --shape qwen2.5-0.5b --out /tmp/model   # where no real weights reach
    python benchmarks/gpu_throughput.py --model /tmp/model --json results.json [--side-timeout-s 150]
        [--items 512] [--max-new-tokens 256] [--batch-size 64] [--sides ea-hf,ea-vllm,lm-hf,lm-vllm]
    python benchmarks/gpu_throughput.py --device cpu --model DIR --items 8 --max-new-tokens 16 --batch-size 8

--device cuda (default): bfloat16 on GPU 0; peak memory is nvidia-smi's memory.used, polled every 0.2 s, over
what was used before the side started (the vLLM sides take their gpu_memory_utilization share, 0.9 by default,
whatever the model needs). --device cpu: a smoke run of the same script on a machine without a GPU,
float32; peak memory is the side's largest resident set (its process tree's ru_maxrss). lm-eval runs in this
interpreter unless --lm-eval-python names another. A side whose package (lm_eval, vllm) its interpreter cannot
import is skipped with one line saying so.

Each side is one end-to-end subprocess (imports, loading, generation, scoring, writing), timed from outside;
one that runs past --side-timeout-s is killed with its process group and recorded as timed out, one that fails
is recorded with the end of its output, and the other sides go on. Output tokens are counted the same way for
every side: each answer (cut at the stop, as the task scores it, whitespace around it stripped) re-tokenised with
the model's tokenizer. The answers are compared item by item with the ea-hf side's (greedy, same weights).
Prints tokens/s, peak memory, score and equal answers per side (and the ea sides' requests per batching), and
the ratios the issue sets as goals (ours hf / lm-eval hf >= 1.5, ours vllm / lm-eval vllm >= 1.0); --json
keeps every measurement and answer, rewritten after each side, so a run killed from outside keeps the sides
that finished. Exits 1 when a side failed or timed out. lmms-eval is not a
side: its generate tasks come from its own registry, with no local-file task to give it the same questions.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from timing import command_line, machine, markdown_table, today  # benchmarks/timing.py, beside this script
from vs_lm_eval import LM_EVAL_TASK, arithmetic_questions, eval_anything_task

from eval_anything.rundir import write_json_atomic

TITLE = "GPU throughput against lm-evaluation-harness"
SIDES = ("ea-hf", "ea-vllm", "lm-hf", "lm-vllm")
NEEDS = {"ea-hf": (), "ea-vllm": ("vllm",), "lm-hf": ("lm_eval",), "lm-vllm": ("lm_eval", "vllm")}
GOALS = (("ea-hf", "lm-hf", 1.5), ("ea-vllm", "lm-vllm", 1.0))
REFERENCE = "ea-hf"
MEASURED, TIMED_OUT, FAILED, SKIPPED = "measured", "timed out", "failed", "skipped"
VERSIONS = ("eval-anything", "lm_eval", "vllm", "transformers", "torch")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}


@dataclasses.dataclass(frozen=True)
class Side:
    """One side's outcome."""

    name: str
    status: str
    """measured, timed out, failed or skipped."""
    seconds: float | None = None
    """Wall time of its subprocess, start to exit."""
    peak_mib: int | None = None
    """GPU memory over the start (cuda) or largest resident set (cpu), MiB."""
    score: float | None = None
    answers: dict[str, str] = dataclasses.field(default_factory=dict)
    """Item id to answer, cut at the stop, without the whitespace around it (eval-anything strips it, lm-eval
    keeps the space a tokenizer puts before the first word)."""
    tokens: int | None = None
    """Output tokens: the answers re-tokenised."""
    note: str = ""
    """Why it was skipped, the end of a failed side's output, or why ea-hf could not batch continuously."""
    batching: dict[str, int] = dataclasses.field(default_factory=dict)
    """ea-hf: the requests each batching generated (a silent fallback to static batches shows here)."""

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.tokens is not None and self.seconds else None


@dataclasses.dataclass(frozen=True)
class Written:
    """What a side's own output files say."""

    score: float | None
    answers: dict[str, str]
    batching: dict[str, int] = dataclasses.field(default_factory=dict)
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Run:
    """A side's subprocess as it ended."""

    seconds: float
    exit_code: int
    timed_out: bool
    peak_mib: int
    log: Path


class PeakGpuMemory:
    """Polls nvidia-smi while a side runs; `peak_mib` is the most used over the start."""

    def __init__(self) -> None:
        self.start = self._used()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def _used() -> int:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, check=True).stdout
        return int(out.split()[0])

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._used())

    def __enter__(self) -> "PeakGpuMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> int:
        return self.peak - self.start


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the side's own session: vLLM's engine processes go with it
    except ProcessLookupError:
        pass


def run_side(command: list[str], env: dict, log: Path, timeout_s: float | None, device: str) -> Run:
    """`command` in its own session, its output in `log`; killed with its process group past `timeout_s`."""
    killed = threading.Event()
    memory = PeakGpuMemory() if device == "cuda" else contextlib.nullcontext()
    with log.open("w") as out, memory:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        timer = threading.Timer(timeout_s or 0, lambda: (killed.set(), _kill_group(process.pid)))
        if timeout_s:
            timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)  # the rusage of this side alone, not of earlier ones
        finally:  # also when this script is stopped: the side's session is out of reach of a `timeout` around it
            timer.cancel()
            _kill_group(process.pid)  # anything it left running holds memory the next side needs
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    peak = memory.peak_mib if device == "cuda" else usage.ru_maxrss // 1024  # Linux: KiB
    return Run(seconds, process.returncode, killed.is_set(), peak, log)


def ea_command(backend: str, model: str, task: Path, out: Path, args: argparse.Namespace) -> list[str]:
    model_args = f"dtype={dtype_of(args)}"
    if backend == "hf":
        model_args += f",device={args.device},batching=continuous"
    command = [sys.executable, "-m", "eval_anything", "run", "--model", f"{backend}:{model}", "--model-args",
               model_args, "--tasks", str(task), "--max-new-tokens", str(args.max_new_tokens),
               "--output-dir", str(out)]
    return command + (["--batch-size", str(args.batch_size)] if backend == "hf" else [])


def ea_results(out: Path) -> Written:
    (run_dir,) = out.iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    score = results["tasks"]["arith_bench"]["metrics"]["numeric"]["value"]
    loaded = results["model"]["loaded"]
    records = [json.loads(line) for line in (run_dir / "samples" / "arith_bench.jsonl").read_text().splitlines()]
    if errors := [record["outputs"][0]["error"] for record in records if record["outputs"][0]["error"]]:
        raise ValueError(f"{len(errors)} of {len(records)} generations failed, the first with: {errors[0]}")
    answers = {record["id"]: record["outputs"][0]["text"].strip() for record in records}
    return Written(score, answers, loaded.get("requests_by_batching", {}), loaded.get("continuous_unsupported", ""))


def lm_command(backend: str, model: str, tasks: Path, out: Path, args: argparse.Namespace) -> list[str]:
    command = [args.lm_eval_python, "-m", "lm_eval", "--model", backend, "--model_args",
               f"pretrained={model},dtype={dtype_of(args)}", "--tasks", "arith_mini_ea", "--include_path", str(tasks),
               "--batch_size", str(args.batch_size if backend == "hf" else "auto"), "--apply_chat_template",
               "--log_samples", "--output_path", str(out)]
    return command + (["--device", "cuda:0" if args.device == "cuda" else "cpu"] if backend == "hf" else [])


def lm_results(out: Path) -> Written:
    (result_file,) = out.rglob("results_*.json")
    score = json.loads(result_file.read_text())["results"]["arith_mini_ea"]["exact_match,last_number"]
    (samples,) = out.rglob("samples_arith_mini_ea_*.jsonl")
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    return Written(score, {record["doc"]["id"]: record["resps"][0][0].strip() for record in records})


def dtype_of(args: argparse.Namespace) -> str:
    return "bfloat16" if args.device == "cuda" else "float32"


def python_of(side: str, args: argparse.Namespace) -> str:
    return args.lm_eval_python if side.startswith("lm-") else sys.executable


def installed(python: str) -> dict[str, str | None]:
    """The version of each of VERSIONS that `python` can import (None where it cannot), without importing them."""
    probe = ("import importlib.metadata as m, importlib.util as u, json, sys\n"
             "def version(n):\n"
             "    if u.find_spec(n.replace('-', '_')) is None: return None\n"
             "    try: return m.version(n)\n"
             "    except m.PackageNotFoundError: return 'unknown'\n"
             "print(json.dumps({n: version(n) for n in sys.argv[1:]}))")
    try:
        done = subprocess.run([python, "-c", probe, *VERSIONS], capture_output=True, text=True)
    except OSError:  # no such interpreter: nothing importable by it
        return dict.fromkeys(VERSIONS)
    if done.returncode != 0:
        raise SystemExit(f"{python} cannot run: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def missing_package(side: str, python: str, packages: dict[str, str | None]) -> str | None:
    absent = [name for name in NEEDS[side] if packages.get(name) is None]
    if not absent:
        return None
    return f"{' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} not importable by {python}"


def measure(side: str, model_dir: Path, work: Path, data: Path, task: Path, args: argparse.Namespace,
            env: dict) -> Side:
    owner, backend = side.split("-")
    out = work / side
    if owner == "ea":
        command = ea_command(backend, str(model_dir), task, out, args)
    else:
        tasks = work / "lm_eval_tasks"
        tasks.mkdir(exist_ok=True)
        (tasks / "arith_mini_ea.yaml").write_text(LM_EVAL_TASK.format(data=data, max_new_tokens=args.max_new_tokens))
        command = lm_command(backend, str(model_dir), tasks, out, args)
    run = run_side(command, env, work / f"{side}.log", args.side_timeout_s, args.device)
    if run.timed_out:
        return Side(side, TIMED_OUT, run.seconds, run.peak_mib, note=f"killed after {args.side_timeout_s} s")
    if run.exit_code != 0:
        tail = run.log.read_text(errors="replace")[-3000:]
        return Side(side, FAILED, run.seconds, run.peak_mib, note=f"exit {run.exit_code}: {tail}")
    try:
        written = (ea_results if owner == "ea" else lm_results)(out)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        return Side(side, FAILED, run.seconds, run.peak_mib, note=f"its results: {type(exc).__name__}: {exc}")
    return Side(side, MEASURED, run.seconds, run.peak_mib, written.score, written.answers,
                count_tokens(model_dir, written.answers), written.note, written.batching)


def count_tokens(model_dir: Path, answers: dict[str, str]) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return sum(len(tokenizer(text, add_special_tokens=False).input_ids) for text in answers.values())


def reference_of(sides: dict[str, Side]) -> Side | None:
    """The ea-hf side when it was measured, else the first side that was."""
    measured = [s for s in sides.values() if s.status == MEASURED]
    return sides[REFERENCE] if REFERENCE in sides and sides[REFERENCE].status == MEASURED else \
        (measured[0] if measured else None)


def equal_answers(side: Side, reference: Side) -> int:
    return sum(side.answers.get(item) == answer for item, answer in reference.answers.items())


def ratios(sides: dict[str, Side]) -> dict[str, float]:
    found = {}
    for ours, theirs, _ in GOALS:
        if all(name in sides and sides[name].tokens_per_s for name in (ours, theirs)):
            found[f"{ours} / {theirs}"] = sides[ours].tokens_per_s / sides[theirs].tokens_per_s
    return found


def write_json(path: Path, setup: dict, sides: dict[str, Side]) -> None:
    """Everything measured so far; written to a temporary file and renamed, so a kill leaves the last whole one."""
    reference = reference_of(sides)
    records = {}
    for name, side in sides.items():
        record = {**dataclasses.asdict(side), "tokens_per_s": side.tokens_per_s}
        if reference is not None and side.status == MEASURED:
            record["answers_equal_to"] = {"side": reference.name, "equal": equal_answers(side, reference),
                                          "of": len(reference.answers)}
        records[name] = record
    write_json_atomic(path, {"benchmark": TITLE, **setup, "sides": records, "ratios": ratios(sides)})


def _fixed(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report(sides: dict[str, Side]) -> None:
    reference = reference_of(sides)
    rows = []
    for side in sides.values():
        if side.status != MEASURED:
            print(f"{side.name:8s} {side.status}" + (f" ({side.note.splitlines()[0]})" if side.note else ""))
            rows.append([side.name, side.status, "", "", "", "", ""])
            continue
        equal = f"{equal_answers(side, reference)}/{len(reference.answers)}"
        batching = "".join(f"  {name} {count}" for name, count in side.batching.items())
        print(f"{side.name:8s} {side.seconds:8.1f} s  {side.tokens_per_s:9.1f} tokens/s  peak {side.peak_mib:7d} MiB  "
              f"score {_fixed(side.score, 4)}  answers equal to {reference.name}'s: {equal}{batching}"
              + (f"  ({side.note})" if side.note else ""))
        rows.append([side.name, side.status, f"{side.seconds:.1f} s", f"{side.tokens_per_s:.1f}",
                     f"{side.peak_mib} MiB", _fixed(side.score, 3), equal])
    for ours, theirs, goal in GOALS:
        if (ratio := ratios(sides).get(f"{ours} / {theirs}")) is not None:
            print(f"tokens/s {ours} / {theirs}: {ratio:.2f} (goal >= {goal})")
            rows.append([f"{ours} / {theirs}", "", "", f"ratio {ratio:.2f} (goal >= {goal})", "", "", ""])
    columns = ["side", "status", "wall", "tokens/s", "peak memory", "score",
               f"answers = {reference.name}'s" if reference else "answers equal"]
    markdown_table(TITLE, columns, rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder or Hub id (resolved once, then by folder)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda: bfloat16 on GPU 0; cpu: a float32 smoke run, memory from ru_maxrss")
    parser.add_argument("--lm-eval-python", default=sys.executable, help="the interpreter lm-eval runs in")
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64, help="the hf sides' batch (vLLM schedules its own)")
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--side-timeout-s", type=float, default=None, help="kill a side past this many seconds")
    parser.add_argument("--json", type=Path, help="write every measurement here, after each side")
    args = parser.parse_args()
    args.sides = [side for side in args.sides.split(",") if side]
    if unknown := [side for side in args.sides if side not in SIDES]:
        parser.error(f"--sides: unknown {', '.join(unknown)}; choose from {', '.join(SIDES)}")
    return args


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through run_side, which ends the side running


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    args = parse_args()
    if args.device == "cuda" and shutil.which("nvidia-smi") is None:
        raise SystemExit("--device cuda measures GPU memory with nvidia-smi, which is not on PATH here; "
                         "--device cpu makes a smoke run without a GPU")
    from eval_anything.models.weights import resolve_weights

    model_dir = resolve_weights(args.model).path  # every side loads the same folder
    packages = {python: installed(python) for python in {sys.executable, args.lm_eval_python}}
    setup = {"date": today(), "machine": machine(), "command": command_line(), "model": str(model_dir),
             "device": args.device, "dtype": dtype_of(args), "items": args.items,
             "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
             "side_timeout_s": args.side_timeout_s, "packages": packages}
    env = {**os.environ, **OFFLINE}
    sides: dict[str, Side] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = arithmetic_questions(work / "arith.jsonl", args.items)
        task = eval_anything_task(work, data, args.max_new_tokens)
        for name in args.sides:
            python = python_of(name, args)
            if absent := missing_package(name, python, packages[python]):
                print(f"{name}: skipped, {absent}", flush=True)
                sides[name] = Side(name, SKIPPED, note=absent)
            else:
                sides[name] = measure(name, model_dir, work, data, task, args, env)
                print(f"{name}: {sides[name].status} after {sides[name].seconds:.1f} s", flush=True)
                if sides[name].status == FAILED:
                    print(sides[name].note, file=sys.stderr, flush=True)
            if args.json:
                write_json(args.json, setup, sides)
    report(sides)
    sys.exit(1 if any(side.status in (FAILED, TIMED_OUT) for side in sides.values()) else 0)


if __name__ == "__main__":
    main()
