"""Genuine run directories for leaderboard and gate tests: the real runner on the replay backend."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

from eval_anything.models import resolve_spec
from eval_anything.runner import evaluate
from eval_anything.settings import RunSettings
from eval_anything.tasks import Catalog


def write_task(directory: Path, name: str, items: list[dict], version: int = 1, scorer: str = "exact_match",
               prompt: str = "{{ question }}", extra: str = "") -> Path:
    """A text task (YAML + JSONL) in `directory`: items are {id, question, answer}; `extra` is more
    YAML appended to the task file (e.g. `protocol: paper` and its `protocols:`)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    (directory / f"{name}.yaml").write_text(
        f"name: {name}\nversion: {version}\ndescription: test task\ntags: [text]\n"
        f"dataset: {{path: {name}.jsonl}}\ninput:\n  - text: question\ntarget: answer\n"
        f"prompt: {json.dumps(prompt)}\ngeneration: {{max_new_tokens: 8}}\nscorers: [{scorer}]\n" + extra)
    return directory


def make_run(root: Path, name: str, tasks: str = "arith_mini,shapes_color", *, wrong: Iterable[str] = (),
             texts: Mapping[str, str] | None = None, errors: Iterable[str] = (), include: Iterable[Path] = (),
             answers: Mapping[str, Mapping[str, str]] | None = None, protocol: str | None = None) -> Path:
    """Replay predictions named `name` for `tasks`: right, except ids in `wrong` (a wrong answer),
    `errors` (a failed generation) and `texts` (this exact output). `answers[task][id]` overrides
    the right answer of custom tasks; `protocol` scores the tasks that have one under it (as
    `run --protocol`). Returns the run directory."""
    catalog = Catalog(list(include))
    wrong, errors, texts = set(wrong), set(errors), dict(texts or {})
    resolved = [task.under(protocol) for task in catalog.resolve(tasks)]
    rows = []
    for task in resolved:
        for sample in task.samples():
            for request in task.requests(sample, task.generation(0)):
                if request.choices:
                    right = "ABCD"[request.choices.index(sample.target[0])]
                    bad = "ABCD"[(request.choices.index(sample.target[0]) + 1) % 4]
                else:
                    right = ((answers or {}).get(task.name) or {}).get(sample.id, sample.target[0])
                    bad = "99999"
                row = {"task": task.name, "id": sample.id, "variant": request.variant,
                       "text": texts.get(sample.id, bad if sample.id in wrong else right)}
                if sample.id in errors:
                    row = {"task": task.name, "id": sample.id, "variant": request.variant, "error": "the model crashed"}
                rows.append(row)
    root.mkdir(parents=True, exist_ok=True)
    predictions = root / f"{name}.jsonl"
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = evaluate(resolve_spec(str(predictions)), resolved, RunSettings(output_dir=root / "runs"))
    return report.run_dir


def edit_json(path: Path, change) -> None:
    """Rewrite a run file in place, e.g. to add fields that later issues write (judge, lineage)."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


PAYLOADS = (
    '<script>window.__pwned = (window.__pwned || 0) + 1</script>',
    '<img src=x onerror="window.__pwned = (window.__pwned || 0) + 1">',
    '<a href="javascript:window.__pwned = (window.__pwned || 0) + 1">click me</a>',
    '</script><script>window.__pwned = 1</script><!--',
    '<svg onload="window.__pwned = 1"></svg>',
)
"""Model output that must show as text and never run."""

AMU_DIMENSIONS = ("perception", "reasoning", "instruction-following", "safety")


def board_runs(root: Path) -> dict[str, Path]:
    """Two genuine runs over the built-in text, image, audio and video tasks, then the fields later
    issues add: judge identity and accounting, checkpoint lineage, AMU-style dimensions, S_AMG-style
    components, modality-selection shares, a not-applicable task; the second run is hostile."""
    tasks = "arith_mini,shapes_color,tones_count,motion_direction"
    arith = [f"arith-{i:03d}" for i in range(40)]
    good = make_run(root, "good-model", tasks, wrong=arith[:2])
    evil = make_run(root, "evil-model", tasks, wrong=arith[:6] + ["color_03"],
                    texts={arith[10 + i]: p for i, p in enumerate(PAYLOADS)})

    def add_fields(run: Path, scale: float, hostile: bool) -> None:
        tag = PAYLOADS[1] if hostile else ""

        def results(data: dict) -> None:
            data["judge"] = {"backend": "openai", "reference": "gpt-4o" + tag, "weak_default": False,
                             "calls": 52, "cached": 4, "errors": 1, "parse_retries": 2, "input_tokens": 9000,
                             "output_tokens": 700}
            color = data["tasks"]["shapes_color"]
            color["judge"] = {"calls": 12, "cached": 0, "errors": 1, "parse_retries": 2, "weak_default": False}
            color["metrics"]["multiple_choice"]["breakdown"] = {
                d + (tag if hostile and i == 0 else ""): {"value": round(scale * (0.9 - 0.1 * i), 3), "stderr": 0.05, "n": 3}
                for i, d in enumerate(AMU_DIMENSIONS)}
            arith_metric = data["tasks"]["arith_mini"]["metrics"]["numeric"]
            arith_metric["components"] = {"S_T": 0.8 * scale, "S_TI": 0.6 * scale, "S_TA": 0.5 * scale}
            arith_metric["selection"] = {"T": {"model": 0.5, "human": 0.3}, "T+I": {"model": 0.3 * scale, "human": 0.5},
                                         "T+I+A": {"model": 0.2, "human": 0.2}}
            if hostile:
                tones = data["tasks"]["tones_count"]
                tones.update(status="not_applicable", reason="model does not take audio input" + tag)
                for key in ("metrics", "counts", "usage"):
                    tones.pop(key, None)

        edit_json(run / "results.json", results)
        if hostile:
            edit_json(run / "manifest.json", lambda m: m.update(lineage={
                "base_model": "good-model" + PAYLOADS[0], "method": "llf-dpo", "data": "javascript:alert(1)",
                "config_hash": "abc123"}))
        else:
            edit_json(run / "manifest.json", lambda m: m.update(lineage={
                "base_model": "SmolLM2-135M-Instruct", "method": "llf-dpo", "data": "align-anything t2t 1k",
                "config_hash": "0f1e2d3c"}))

    add_fields(good, 1.0, False)
    add_fields(evil, 0.9, True)
    add_suite_fields(good)
    return {"good": good, "evil": evil}


def add_suite_fields(run: Path) -> None:
    """What the all-modality suite writes: the AMU group over its dimension tasks, a task breakdown by
    input modalities, the modality-selection shares, and S_AMG components in each sample's score."""
    def results(data: dict) -> None:
        data["groups"] = {"amu": {"metric": "judge_rating", "value": 6.25, "stderr_over_dimensions": 0.48,
                                  "parts": {"amu_perception": 7.0, "amu_reasoning": 6.0,
                                            "amu_instruction_following": 6.5, "amu_safety": 5.5}}}
        arith = data["tasks"]["arith_mini"]
        arith["breakdown"] = {"image+speech": {"numeric": {"value": 0.9, "n": 20}},
                              "video+sound": {"numeric": {"value": 1.0, "n": 20}}}
        arith["metrics"]["numeric"]["chosen_vs_human"] = {"t": {"chosen": 0.5, "human": 0.25},
                                                          "ti": {"chosen": 0.5, "human": 0.75}}

    edit_json(run / "results.json", results)
    log = run / "samples" / "arith_mini.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for index, record in enumerate(sorted(records, key=lambda r: r["id"])):
        details = ({"chosen": "ti", "S_i": {"t": 0.8, "i": 0.6}, "S_ij": {"ti": 0.5}, "alpha": {"ti": 0.4},
                    "terms": {"ti": 0.07}} if index % 2 else
                   {"chosen": "t", "S_i": {"t": 1.0}, "S_ij": {}, "alpha": {}, "terms": {}})
        record["scores"]["numeric"]["details"] = details
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
