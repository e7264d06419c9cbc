"""What a run is asked to do: the typed request (`RunSettings`, with its `JudgeSettings`), the
command-line arguments it is made from (`EvaluationArguments`, `RunArguments`: each flag declared
on its field, see eval_anything.flags) and the builders between the two. Light to import: models,
tasks and the suite load inside the builders."""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple, Sequence

from eval_anything.datamodel import GenerationConfig, Modality
from eval_anything.errors import UsageError
from eval_anything.flags import Group, add_arguments, flag, from_namespace
from eval_anything.models import backend_traits, backends_where
from eval_anything.models.base import ModelSpec, batch_size_value

if TYPE_CHECKING:
    from eval_anything.tasks import Task

RUN_COMMAND = "run"
JUDGE_DEFAULTS = (256, 2)
"""Longest reply and re-asks of a named judge."""
WEAK_JUDGE_DEFAULTS = (96, 1)
"""The same for the embedded 135M default judge, which rarely keeps to a format however long it talks."""

DEFAULT_ROUTE = "default"
MEDIA_ROUTES = (Modality.VIDEO, Modality.AUDIO, Modality.IMAGE)
"""The modalities a judge can be named for (`--judge audio=...`), in the order a query's media
choose among them: a query with video goes to the video judge, else with audio to the audio judge,
else with an image to the image judge; a text-only query to the default judge."""
_MEDIA_KEYS = frozenset(m.value for m in MEDIA_ROUTES)


def judge_identity(spec: ModelSpec) -> dict[str, Any]:
    """A judge model by backend and name (what cache keys and run ids hold of it), and by commit for
    Hub weights: another revision is another judge."""
    identity = {"backend": spec.backend, "reference": spec.reference}
    if spec.weights is not None and spec.weights.commit_sha:
        identity["commit"] = spec.weights.commit_sha
    return identity


@dataclass(frozen=True)
class JudgeSettings:
    """Who judges the queries of judge scorers, and how."""

    spec: ModelSpec
    """The default judge: it answers every query no route claims."""
    weak_default: bool = False
    """The embedded model judges because the user named no judge."""
    max_new_tokens: int = 256
    """The longest judge reply."""
    temperature: float = 0.0
    """Judge sampling temperature (a judge scorer may ask for its own)."""
    seed: int = 1234
    """Seed of the judge's sampling."""
    parse_retries: int = 2
    """How many times a malformed reply is asked again before it is recorded as a judge error."""
    reward_model: str | None = None
    """The reward model (a folder or Hub id) that scores synergy under protocol paper."""
    price_per_million: tuple[float, float] | None = None
    """USD per million input and output tokens, for the cost line of the results."""
    cache_path: Path | None = None
    """The judge cache's folder, shared across runs; None: no cache."""
    routes: Mapping[str, ModelSpec] = field(default_factory=dict)
    """Judges other than `spec` (the default), by route: a modality (image, audio, video: the
    queries carrying it, see MEDIA_ROUTES) or a task name (every query of that task; beats a modality)."""

    def identity(self) -> dict[str, Any]:
        """What judged scores depend on (part of the run id and of cache keys): the judge model by
        backend and name, not by where it is served, and how it is sampled."""
        identity = {"judge": judge_identity(self.spec), "max_new_tokens": self.max_new_tokens,
                    "temperature": self.temperature, "parse_retries": self.parse_retries}
        if self.reward_model:  # only when set, so that earlier runs keep their ids
            from eval_anything.models.weights import pinned_name

            identity["reward_model"] = pinned_name(self.reward_model)
        routes = {key: judge_identity(spec) for key, spec in sorted(self.routes.items())
                  if judge_identity(spec) != identity["judge"]}
        if routes:  # only with other judges than the default, likewise
            identity["routes"] = routes
        return identity

    def route(self, task: str, media: Iterable[Modality]) -> str:
        """Which judge answers a query of `task` carrying `media`: a route key, or DEFAULT_ROUTE."""
        if task in self.routes and task not in _MEDIA_KEYS:
            return task
        carried = set(media)
        return next((m.value for m in MEDIA_ROUTES if m in carried and m.value in self.routes), DEFAULT_ROUTE)

    def spec_of(self, route: str) -> ModelSpec:
        return self.routes.get(route, self.spec) if route != DEFAULT_ROUTE else self.spec

    def for_tasks(self, names: Iterable[str]) -> "JudgeSettings":
        """These settings without the routes of tasks not among `names` (they judge nothing here,
        so they are no part of the run's identity)."""
        names = set(names)
        kept = {k: v for k, v in self.routes.items() if k in _MEDIA_KEYS or k in names}
        return self if len(kept) == len(self.routes) else dataclasses.replace(self, routes=kept)


@dataclass(frozen=True)
class RunSettings:
    """Run-wide settings; everything that changes results is part of the run id."""

    output_dir: Path = Path("runs")
    """Where run directories go."""
    wait_for_lock: bool = True
    """Wait while another process holds the run directory; False: stop at once (RunDirectoryBusy)."""
    limit: int | None = None
    """Evaluate only the first N samples of each task."""
    seed: int = 1234
    """Seed of sampling and of anything random."""
    max_new_tokens: int | None = None
    """Override every task's generation length."""
    command: tuple[str, ...] = ()
    """The command line, recorded (secrets redacted) in the manifest."""
    judge: JudgeSettings | None = None
    """Who judges tasks with judge scorers; None means the embedded model, labelled a weak judge."""
    generators: str | None = None
    """Which generator renders each modality of tagged answers, e.g. "audio=espeak"; None: espeak
    for audio when espeak-ng is installed."""
    repeats: int = 1
    """Generations per sample, repeat r seeded with seed + r; a sample scores the mean of its repeats."""
    temperature: float | None = None
    """Override every task's sampling temperature (repeats of greedy decoding differ little)."""
    rank_timeout: float | None = None
    """Seconds without a heartbeat after which a data-parallel rank counts as dead; None:
    $EVAL_ANYTHING_RANK_TIMEOUT_S, else 120."""

    def __post_init__(self) -> None:
        if self.rank_timeout is not None and not self.rank_timeout > 0:
            raise UsageError(f"--rank-timeout must be a positive number of seconds, not {self.rank_timeout}")
        if self.repeats < 1:
            raise UsageError(f"--repeats must be at least 1, not {self.repeats}")
        if self.temperature is not None and self.temperature < 0:
            raise UsageError(f"--temperature must be 0 or more, not {self.temperature}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens must be at least 1, not {self.max_new_tokens}")

    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {"limit": self.limit, "seed": self.seed, "max_new_tokens": self.max_new_tokens}
        if self.repeats != 1:  # only when set, so that the run ids of earlier runs stay as they were
            identity["repeats"] = self.repeats
        if self.temperature is not None:
            identity["temperature"] = self.temperature
        return identity

    def generations(self, task: "Task") -> list[GenerationConfig]:
        """The generation settings of each repeat of a task's samples."""
        return [task.generation(self.seed + r, self.max_new_tokens, self.temperature) for r in range(self.repeats)]

    def generator_spec(self) -> str:
        if self.generators is not None:
            return self.generators
        return "audio=espeak" if shutil.which("espeak-ng") else ""

    def generator_identity(self) -> str | dict[str, Any]:
        """What rendered media depend on (part of the run id): the generators' spec, and the commit of
        each generator whose pipeline is a Hub id (only then, so that earlier runs keep their ids)."""
        described = {m.value: g.describe() for m, g in self.generator_table().items()}
        commits = {m: d["commit"] for m, d in described.items() if d.get("commit")}
        return {"spec": self.generator_spec(), "commits": commits} if commits else self.generator_spec()

    def generator_table(self) -> dict:
        from eval_anything.suite.generators import parse_generators

        return parse_generators(self.generator_spec())

    def judge_settings(self) -> JudgeSettings:
        if self.judge is not None:
            return self.judge
        from eval_anything.models.embedded import NAME, cache_root

        return JudgeSettings(ModelSpec("embedded", NAME), weak_default=True, seed=self.seed,
                             cache_path=cache_root() / "judge-cache")


JUDGES = Group("judges", "for tasks scored by a model judge")


@dataclass(frozen=True)
class EvaluationArguments:
    """Which model to evaluate on which tasks, how, and who judges, as the command line says it:
    the flags of `run` and of the commands that run evaluations (`noise`)."""

    model: str | None = field(default=None, metadata=flag(
        "--model", metavar="[BACKEND:]REF",
        help="backend and model: hf:DIR or hf:ORG/NAME[@REVISION] (a Hub id, through the Hugging Face cache), "
             "vllm:DIR|ORG/NAME, openai:NAME, replay:FILE.jsonl, embedded:smollm2-135m-instruct; a directory alone "
             "means hf, a .jsonl file replay; lm-eval's '--model hf --model_args pretrained=ORG/NAME' too "
             "(default: the embedded SmolLM2-135M-Instruct)"))
    model_args: str = field(default="", metadata=flag(
        "--model-args", "--model_args", metavar="K=V,...",
        help="backend arguments, e.g. base_url=http://127.0.0.1:8000/v1,concurrency=8 (openai), "
             "revision=REV,dtype=bfloat16,device_map=auto,peft=ADAPTER,video_frames=8,batching=static (hf; README: "
             "the loading arguments and lm-eval's spellings; batching=continuous, the default, "
             "runs greedy text-only requests through transformers' continuous batching). API keys come from environment "
             "variables (api_key_env=NAME), never from here"))
    tasks: str = field(default="all", metadata=flag(
        "--tasks", metavar="all|NAME,...",
        help="comma-separated task names, group names, task YAML paths, data files (.jsonl, .csv, .parquet: a task "
             "inferred from column names), or 'all' (default: all)"))
    limit: int | None = field(default=None, metadata=flag(
        "--limit", type=int, metavar="N", help="only the first N items of each task"))
    output_dir: Path = field(default=Path("runs"), metadata=flag(
        "--output-dir", type=Path, metavar="DIR", help="where run directories go (default: runs)"))
    no_wait: bool = field(default=False, metadata=flag(
        "--no-wait", action="store_true",
        help="when another process is running the same run directory, exit at once with code 75 "
             "instead of waiting for it to finish"))
    batch_size: str | None = field(default=None, metadata=flag(
        "--batch-size", "--batch_size", metavar="N|auto",
        help=f"{'/'.join(backends_where(lambda t: t.batch_size_flag))} backends: requests per forward pass; "
             "'auto' starts at 32 and halves on out-of-memory (default: auto)"))
    rank_timeout: float | None = field(default=None, metadata=flag(
        "--rank-timeout", type=float, metavar="S",
        help="data-parallel runs: the ranks stop, naming the rank, when one sends no heartbeat for S seconds "
             "(killed, crashed, host lost); a rank that is only slow keeps beating "
             "(default: $EVAL_ANYTHING_RANK_TIMEOUT_S, else 120)"))
    seed: int = field(default=1234, metadata=flag(
        "--seed", type=int, help="seed for sampling and anything random (default: 1234)"))
    max_new_tokens: int | None = field(default=None, metadata=flag(
        "--max-new-tokens", type=int, metavar="N", help="override every task's generation length"))
    temperature: float | None = field(default=None, metadata=flag(
        "--temperature", type=float, metavar="T",
        help="override every task's sampling temperature (0 = greedy, the tasks' usual setting)"))
    data_dir: Path | None = field(default=None, metadata=flag(
        "--data-dir", type=Path, metavar="DIR",
        help="run the AMU/AMG suite on a local copy of the published datasets in DIR (folders "
             "EvalAnything-AMU, EvalAnything-Selection_Synergy, EvalAnything-InstructionFollowing) "
             "instead of the embedded mini-suite"))
    protocol: str | None = field(default=None, metadata=flag(
        "--protocol", metavar="NAME",
        help="how the AMU/AMG suite prompts and scores: 'paper' (the default) reproduces the original "
             "authors' scripts (judge messages, sampling, parsers, aggregation); 'extended' is ours "
             "(the judge also sees the question and the media). Recorded with the run; gate and "
             "verify refuse to compare runs of different protocols"))
    generator: str | None = field(default=None, metadata=flag(
        "--generator", metavar="MODALITY=NAME,...",
        help="render media instructions of any-to-any answers (AMG tasks), e.g. audio=espeak "
             "(default: audio=espeak when espeak-ng is installed; '' for none). A modality "
             "nothing renders is not applicable for the scores that need it"))
    judge: tuple[str, ...] | None = field(default=None, metadata=flag(
        "--judge", group=JUDGES, metavar="[KEY=][BACKEND:]REF|FILE.yaml", action="append",
        help="the judge model, any backend: openai:gpt-4o, hf:DIR, ... (default: the embedded "
             "SmolLM2, labelled a weak judge in the results). Repeatable: KEY=[BACKEND:]REF names "
             "another judge for the queries of KEY: a modality, image, audio or video (a query "
             "goes to the judge of the media it carries, video first, then audio, then image; "
             "text-only queries to the default judge), or a task name (all its queries; a task "
             "beats a modality). E.g. --judge openai:gpt-4o --judge audio=hf:DIR --judge "
             "video=hf:DIR. FILE.yaml maps keys (default, image, audio, video, TASK) to "
             "[BACKEND:]REF or {model: [BACKEND:]REF, args: {K: V}}"))
    judge_args: tuple[str, ...] | None = field(default=None, metadata=flag(
        "--judge-args", group=JUDGES, metavar="[KEY:]K=V,...", action="append",
        help="judge backend arguments, as --model-args (e.g. base_url=...,api_key_env=JUDGE_KEY), "
             "for the default judge; KEY:K=V,... for the judge named with --judge KEY=... (e.g. "
             "--judge-args audio:base_url=http://127.0.0.1:8001/v1,concurrency=4). Repeatable; "
             "each judge gets only its own"))
    judge_concurrency: int | None = field(default=None, metadata=flag(
        "--judge-concurrency", group=JUDGES, type=int, metavar="N",
        help="judge requests in flight at once (openai judges; default 8)"))
    judge_max_tokens: int | None = field(default=None, metadata=flag(
        "--judge-max-tokens", group=JUDGES, type=int, metavar="N",
        help=f"longest judge reply (default {JUDGE_DEFAULTS[0]}; {WEAK_JUDGE_DEFAULTS[0]} for the "
             "embedded default judge)"))
    judge_retries: int | None = field(default=None, metadata=flag(
        "--judge-retries", group=JUDGES, type=int, metavar="N",
        help="re-ask a judge whose reply cannot be parsed up to N times, then record a judge "
             f"error with the raw replies (default {JUDGE_DEFAULTS[1]}; {WEAK_JUDGE_DEFAULTS[1]} "
             "for the embedded default judge)"))
    judge_price: str | None = field(default=None, metadata=flag(
        "--judge-price", group=JUDGES, metavar="IN,OUT",
        help="USD per million input and output judge tokens, to report cost (e.g. 2.5,10)"))
    judge_cache: str | None = field(default=None, metadata=flag(
        "--judge-cache", group=JUDGES, metavar="DIR|off",
        help="the judge cache shared across runs and processes, a folder of one SQLite file per writer "
             "(default: ~/.cache/eval-anything/judge-cache)"))
    reward_model: str | None = field(default=None, metadata=flag(
        "--reward-model", group=JUDGES, metavar="DIR|ORG/NAME",
        help="the multimodal reward model that scores modality synergy under protocol paper (the "
             "paper's PKU-Alignment/AnyRewardModel, or any local transformers model with a score "
             "head); without one, paper-protocol synergy is not applicable, with the reason"))
    include_path: tuple[Path, ...] = field(default=(), metadata=flag(
        "--include-path", action="append", default=[], type=Path, metavar="DIR",
        help="also load task YAML files from DIR (repeatable)"))
    argv: tuple[str, ...] = ()
    """The command line after the program's name, recorded with the run."""

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, argv: Sequence[str] = ()):
        return from_namespace(cls, args, argv=tuple(argv))


@dataclass(frozen=True)
class RunArguments(EvaluationArguments):
    """The flags of `eval-anything run`."""

    repeats: int = field(default=1, metadata=flag(
        "--repeats", type=int, metavar="K",
        help="generate each item K times (repeat r with seed + r) and score the mean per item; results "
             "add a 95%% interval over items and repeats and how much repeats of one item vary "
             "(default: 1). Greedy tasks vary little: sample with --temperature"))
    from_bundle: Path | None = field(default=None, metadata=flag(
        "--from", type=Path, metavar="BUNDLE.tar.gz",
        help="rerun exactly the evaluation packed by `eval-anything export` (its tasks, settings "
             "and command; --model, --data-dir and --output-dir given here win)"))


def add_task_source(parser: argparse.ArgumentParser) -> None:
    """--include-path alone, for commands that list tasks without running them."""
    add_arguments(parser, EvaluationArguments, only=("include_path",))


def parse_run_command(argv: Sequence[str]) -> RunArguments | None:
    """A recorded command line (after the program's name) as the arguments of `run`; None when it
    is another command. Invalid arguments exit as on the command line."""
    if not argv or argv[0] != RUN_COMMAND:
        return None
    parser = argparse.ArgumentParser(prog="eval-anything")
    run = parser.add_subparsers(dest="command", required=True).add_parser(RUN_COMMAND)
    add_arguments(run, RunArguments)
    return RunArguments.from_namespace(parser.parse_args(list(argv)), argv)


class Evaluation(NamedTuple):
    """What `runner.evaluate` takes: the model, the tasks and the run settings."""

    spec: ModelSpec
    tasks: list["Task"]
    settings: RunSettings


def resolve_evaluation(arguments: EvaluationArguments, repeats: int = 1) -> Evaluation:
    """The model, tasks and run settings the arguments name."""
    from eval_anything.models import parse_model_args, resolve_spec
    from eval_anything.tasks import Catalog

    if arguments.data_dir is not None:  # local published data: nothing may reach the network
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    spec = resolve_spec(arguments.model, parse_model_args(arguments.model_args))
    if arguments.batch_size is not None:
        spec = with_batch_size(spec, arguments.batch_size)
    tasks = [task.under(arguments.protocol) for task in Catalog(arguments.include_path).resolve(arguments.tasks)]
    if arguments.data_dir is not None:
        from eval_anything.suite.data_dir import with_published_data

        tasks = with_published_data(tasks, arguments.data_dir)
    judge = judge_settings(arguments, tasks)
    settings = RunSettings(output_dir=arguments.output_dir, wait_for_lock=not arguments.no_wait,
                           limit=arguments.limit, seed=arguments.seed,
                           max_new_tokens=arguments.max_new_tokens, command=("eval-anything", *arguments.argv),
                           judge=judge, generators=arguments.generator, temperature=arguments.temperature,
                           repeats=repeats, rank_timeout=arguments.rank_timeout)
    if any(t.config.output_format == "tagged" for t in tasks):
        settings.generator_table()  # a misspelt generator fails here, before any model loads
    return Evaluation(spec, tasks, settings)


def judge_settings(arguments: EvaluationArguments, tasks: Sequence["Task"] = ()) -> JudgeSettings:
    """The judges the --judge flags name (every key checked against the tasks), with their defaults."""
    from eval_anything.judges.naming import check_judge_keys, judge_entries
    from eval_anything.models import resolve_spec
    from eval_anything.models.embedded import NAME, cache_root

    entries = judge_entries(arguments.judge or [], arguments.judge_args or [])
    check_judge_keys(list(entries), [t.name for t in tasks], list(arguments.include_path))

    def judge_spec(model: str | None, extra: dict[str, Any]) -> ModelSpec:
        spec = resolve_spec(model or f"embedded:{NAME}", extra)
        if arguments.judge_concurrency is not None:
            key = backend_traits(spec.backend).batch_argument
            if key is None:
                raise UsageError(f"--judge-concurrency: the {spec.backend} backend takes no batch argument")
            spec = dataclasses.replace(spec, args={**spec.args, key: arguments.judge_concurrency})
        return spec

    default_model, default_args = entries.get("default", (None, {}))
    spec = judge_spec(default_model, default_args)
    routes = {key: judge_spec(model, extra) for key, (model, extra) in entries.items() if key != "default"}
    price = _judge_price(arguments)
    cache = (None if arguments.judge_cache == "off"
             else Path(arguments.judge_cache or cache_root() / "judge-cache"))
    weak = default_model is None
    max_tokens, retries = WEAK_JUDGE_DEFAULTS if weak and not routes else JUDGE_DEFAULTS
    return JudgeSettings(spec, weak_default=weak, seed=arguments.seed, price_per_million=price,
                         cache_path=cache, routes=routes, reward_model=arguments.reward_model,
                         max_new_tokens=arguments.judge_max_tokens if arguments.judge_max_tokens is not None else max_tokens,
                         parse_retries=arguments.judge_retries if arguments.judge_retries is not None else retries)


def _judge_price(arguments: EvaluationArguments) -> tuple[float, float] | None:
    if not arguments.judge_price:
        return None
    try:
        price_in, price_out = (float(p) for p in arguments.judge_price.split(","))
    except ValueError:
        raise UsageError("--judge-price takes IN,OUT: USD per million input and output tokens") from None
    return price_in, price_out


def with_batch_size(spec: ModelSpec, batch_size: str | int) -> ModelSpec:
    traits = backend_traits(spec.backend)
    if not traits.batch_size_flag:
        takers = " and ".join(backends_where(lambda t: t.batch_size_flag))
        own = (f"sets its own (--model-args {traits.batch_argument}=N)" if traits.batch_argument
               else "takes no batch size")
        raise UsageError(f"--batch-size applies to the {takers} backends; the {spec.backend} backend {own}")
    value = batch_size_value(batch_size, f"--batch-size {batch_size}")
    return dataclasses.replace(spec, args={**spec.args, traits.batch_argument: value})

