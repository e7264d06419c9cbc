"""Per-modality and per-task judges: `--judge KEY=[BACKEND:]REF` (or a judge file) routes each
query to the judge of the media it carries or of its task, every judge an OpenAI-compatible stub
server of its own (which server saw which request is checked); strict_media refuses, before any
request, a judge that cannot take a scorer's media; run ids and cache keys keep the judges apart."""
from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path
from typing import Any

from eval_anything.cli import main
from eval_anything.manifest import read_lineage
from eval_anything.rundir import SampleLog
from eval_anything.runner import run_id
from eval_anything.settings import parse_run_command, resolve_evaluation
from media_files import write_wav
from stub_openai import StubServer, completion, user_text

QUESTIONS = [{"question": "Is there a tone?", "choices": ["yes", "no"], "answer": "A"},
             {"question": "Is it speech?", "choices": ["yes", "no"], "answer": "no"}]
ITEMS = ("m1", "m2")
MEDIA_TASK, TEXT_TASK = "judged_media", "judged_text"


def carries_audio(body: dict[str, Any]) -> bool:
    content = body["messages"][-1]["content"]
    return isinstance(content, list) and any(p["type"] == "input_audio" for p in content)


def is_mcq(body: dict[str, Any]) -> bool:
    return "Is there a tone?" in user_text(body) or "Is it speech?" in user_text(body)


def judge_server(letter: str = "A", rating: int = 7, malformed_once: str | None = None) -> StubServer:
    """Answers questions about media with [[letter]], everything else with a rating; the first ask of
    the question `malformed_once` gets an unparseable reply."""
    seen: set[str] = set()

    def reply(call: int, body: dict[str, Any], auth: str):
        text = user_text(body)
        if malformed_once and malformed_once in text and malformed_once not in seen:
            seen.add(malformed_once)
            return 200, {}, completion("I cannot decide"), 0.0
        return 200, {}, completion(f"[[{letter}]]" if is_mcq(body) else f"Rating: [[{rating}]]"), 0.0

    return StubServer(reply)


def write_tasks(tmp_path: Path, strict: bool = False, scorers: str | None = None) -> Path:
    """judged_media: a text rating (no media) and audio MCQs about the generated audio per item
    (or `scorers`); judged_text: a text rating only."""
    folder = tmp_path / "tasks"
    folder.mkdir(exist_ok=True)
    rows = [{"id": i, "question": f"Make a tone for {i}.", "answer": "a tone", "questions": QUESTIONS} for i in ITEMS]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    strict_arg = ", strict_media: true" if strict else ""
    scorers = scorers or (f"[{{name: judge_rating, args: {{media: none}}}}, "
                          f"{{name: judge_media_mcq, args: {{questions: questions, modality: audio{strict_arg}}}}}]")
    for file, name, scorer_list in (("media.yaml", MEDIA_TASK, scorers), ("text.yaml", TEXT_TASK, "[judge_rating]")):
        (folder / file).write_text(textwrap.dedent(f"""
            name: {name}
            version: 1
            dataset: {{path: items.jsonl}}
            input: [{{text: question}}]
            target: answer
            scorers: {scorer_list}
        """))
    return folder


def predictions(tmp_path: Path) -> Path:
    """Each item's answer: text and its own generated audio (other bytes: other judge questions)."""
    path = tmp_path / "predictions.jsonl"
    lines = []
    for k, i in enumerate(ITEMS):
        audio = write_wav(tmp_path / f"made-{i}.wav", hz=440.0 + 220 * k)
        media = [{"modality": "audio", "path": str(audio)}]
        lines.append(json.dumps({"id": i, "text": "Here is a tone.", "media": media}))
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(tmp_path: Path, *judge: str, tasks: str = MEDIA_TASK, output: str = "runs", model: list[str] | None = None,
            strict: bool = False, scorers: str | None = None) -> tuple[int, Path | None]:
    folder = write_tasks(tmp_path, strict, scorers)
    argv = ["run", *(model or ["--model", str(predictions(tmp_path))]), "--include-path", str(folder), "--tasks", tasks,
            "--judge-cache", str(tmp_path / "cache.sqlite"), "--output-dir", str(tmp_path / output),
            "--judge-retries", "1", *judge]
    code = main(argv)
    runs = list((tmp_path / output).iterdir()) if (tmp_path / output).exists() else []
    return code, (runs[0] if len(runs) == 1 else None)


def judged(url: str, key: str = "") -> list[str]:
    return ["--judge-args", f"{key}:base_url={url}" if key else f"base_url={url}"]


def records(run_dir: Path, task: str = MEDIA_TASK) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in SampleLog(run_dir / "samples" / f"{task}.jsonl")}


def test_audio_queries_reach_the_audio_judge_and_text_queries_the_default(tmp_path):
    with judge_server() as default, judge_server(letter="A", malformed_once="Is it speech?") as audio:
        code, run_dir = run_cli(tmp_path, "--judge", "openai:default-judge", *judged(default.base_url),
                                "--judge", "audio=openai:audio-judge", *judged(audio.base_url, "audio"))
        assert code == 0
        assert default.calls == 2 and not any(carries_audio(b) or is_mcq(b) for b in default.bodies)
        # 2 items x 2 questions, and the malformed reply re-asked of the same judge
        assert audio.calls == 5 and all(carries_audio(b) and is_mcq(b) for b in audio.bodies)
    results = json.loads((run_dir / "results.json").read_text())
    judge = results["judge"]
    assert (judge["backend"], judge["reference"]) == ("openai", "default-judge")
    assert judge["routes"]["audio"]["reference"] == "audio-judge" and judge["routes"]["audio"]["loaded"]
    assert (judge["calls"], judge["cached"], judge["parse_retries"]) == (7, 0, 1)  # sums over both judges
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["judge"]["routes"]["audio"]["args"]["base_url"] == audio.base_url
    record = records(run_dir)["m1"]["scores"]
    assert record["judge_media_mcq"]["value"] == 0.5
    assert {v["asked"]["judge"]["route"] for v in record["judge_media_mcq"]["details"]["judge"]} == {"audio"}
    assert record["judge_rating"]["details"]["judge"][0]["asked"]["judge"] == {
        "route": "default", "backend": "openai", "reference": "default-judge"}


def test_a_task_judge_beats_the_modality_judge(tmp_path):
    with judge_server() as default, judge_server() as audio, judge_server() as task_judge:
        code, run_dir = run_cli(tmp_path, "--judge", "openai:default-judge", *judged(default.base_url),
                                "--judge", "audio=openai:audio-judge", *judged(audio.base_url, "audio"),
                                "--judge", f"{MEDIA_TASK}=openai:task-judge", *judged(task_judge.base_url, MEDIA_TASK),
                                tasks=f"{MEDIA_TASK},{TEXT_TASK}")
        assert code == 0
        # judged_media: all its queries, text ratings and audio questions, to its task's judge
        assert task_judge.calls == 2 + 4 and sum(map(is_mcq, task_judge.bodies)) == 4
        # judged_text rates answers with their generated audio (media: both): the audio judge's
        assert audio.calls == 2 and all(carries_audio(b) and not is_mcq(b) for b in audio.bodies)
        assert default.calls == 0
    routes = json.loads((run_dir / "results.json").read_text())["judge"]["routes"]
    assert set(routes) == {"audio", MEDIA_TASK}


def test_judge_file_routes_and_its_mistakes_are_named(tmp_path, capsys):
    with judge_server() as default, judge_server() as audio:
        judges = tmp_path / "judges.yaml"
        judges.write_text(textwrap.dedent(f"""
            default: {{model: "openai:default-judge", args: {{base_url: "{default.base_url}"}}}}
            audio: {{model: "openai:audio-judge", args: "base_url={audio.base_url}"}}
            {TEXT_TASK}: "openai:unused-because-not-run"
        """))
        code, run_dir = run_cli(tmp_path, "--judge", str(judges))
        assert code == 0
        assert default.calls == 2 and audio.calls == 4 and all(map(carries_audio, audio.bodies))
    judge = json.loads((run_dir / "results.json").read_text())["judge"]
    assert set(judge["routes"]) == {"audio"}  # the route of a task this run leaves out is dropped

    capsys.readouterr()
    for text, message in [("audoi: openai:x\n", "unknown judge key 'audoi'; did you mean 'audio'"),
                          ("audio: {modle: 'openai:x'}\n", "unknown field 'modle'; did you mean 'model'?"),
                          ("audio: {args: {concurrency: 2}}\n", "audio: model must be [BACKEND:]REF")]:
        judges.write_text(text)
        assert run_cli(tmp_path, "--judge", str(judges), output="bad")[0] == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert run_cli(tmp_path, "--judge", "openai:j", "--judge-args", "video:concurrency=2", output="bad")[0] == 2
    assert "no judge is named for 'video'; give --judge video=[BACKEND:]REF" in capsys.readouterr().err
    assert run_cli(tmp_path, "--judge", "openai:j", "--judge", "openai:k", output="bad")[0] == 2
    assert "a second judge for 'default'" in capsys.readouterr().err


def test_strict_media_refuses_a_text_only_judge_before_any_request(tmp_path, capsys, tiny_llama_dir):
    with StubServer(lambda c, b, a: (200, {}, completion("Here is a tone."), 0.0)) as evaluated, \
            judge_server() as image:
        model = ["--model", "openai:evaluated", "--model-args", f"base_url={evaluated.base_url}"]
        code, run_dir = run_cli(tmp_path, "--judge", f"hf:{tiny_llama_dir}", "--judge", "image=openai:image-judge",
                                *judged(image.base_url, "image"), model=model, strict=True)
        assert code == 2
        assert evaluated.calls == 0 and image.calls == 0  # refused before the model or any judge was asked
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("eval-anything:")] == \
        [line for line in err.splitlines() if "strict_media" in line], err  # one line says it all
    assert re.search(rf"task {MEDIA_TASK}: scorer judge_media_mcq \(strict_media\) sends audio to the default judge "
                     rf"hf:{re.escape(str(tiny_llama_dir))}, which cannot take audio \(it takes text\); .*"
                     r"--judge audio=\[BACKEND:\]REF", err), err
    assert not (run_dir / "samples" / f"{MEDIA_TASK}.jsonl").exists() or \
        not (run_dir / "samples" / f"{MEDIA_TASK}.jsonl").read_text().strip()

    with judge_server() as audio:  # an audio judge for the audio questions: the same run now goes through
        code, _ = run_cli(tmp_path, "--judge", f"hf:{tiny_llama_dir}", "--judge", "audio=openai:audio-judge",
                          *judged(audio.base_url, "audio"), "--judge-max-tokens", "4", strict=True, output="fixed")
        assert code == 0 and audio.calls == 4 and all(map(carries_audio, audio.bodies))


def test_strict_media_errors_media_it_did_not_declare_instead_of_dropping_them(tmp_path, tiny_llama_dir):
    # media: output without `requires` declares no modality, so the check passes; the answers' audio
    # still reaches the query, and the text-only judge cannot take it
    for strict, output in ((True, "strict"), (False, "lenient")):
        scorer = f"[{{name: judge_rating, args: {{media: output, strict_media: {str(strict).lower()}}}}}]"
        code, run_dir = run_cli(tmp_path, "--judge", f"hf:{tiny_llama_dir}", "--judge-max-tokens", "4", output=output,
                                scorers=scorer)
        assert code == 0
        score = records(run_dir)["m1"]["scores"]["judge_rating"]
        verdict = score["details"]["judge"][0]
        if strict:
            assert score["value"] is None
            assert f"strict_media: the judge hf:{tiny_llama_dir} cannot take audio" in score["error"]
            assert verdict["calls"] == 0 and verdict["raw"] == []
        else:  # as before: judged on the text, the dropped media recorded
            assert verdict["media_dropped"] == ["audio"] and verdict["calls"] >= 1 and verdict["raw"]


def old_run_id(spec, tasks, settings) -> str:
    """run_id as it was computed before judges could be routed (a verbatim copy)."""
    judge = settings.judge_settings()
    identity = {"model": spec.describe(), "settings": settings.identity(),
                "tasks": [(t.name, t.version, t.content_hash) for t in tasks],
                "judge": {"judge": {"backend": judge.spec.backend, "reference": judge.spec.reference},
                          "max_new_tokens": judge.max_new_tokens, "temperature": judge.temperature,
                          "parse_retries": judge.parse_retries}}
    if read_lineage(spec):
        identity["lineage"] = read_lineage(spec)
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{spec.backend}-{Path(spec.reference).name}").strip("-")
    return f"{slug}-{digest}"


def test_run_ids_change_only_with_another_judge(tmp_path):
    folder, preds = write_tasks(tmp_path), predictions(tmp_path)

    def ids(*judge: str) -> tuple[str, str]:
        arguments = parse_run_command(["run", "--model", str(preds), "--include-path", str(folder),
                                       "--tasks", MEDIA_TASK, *judge])
        spec, tasks, settings = resolve_evaluation(arguments)
        return run_id(spec, tasks, settings), old_run_id(spec, tasks, settings)

    for judge in [(), ("--judge", "openai:gpt-4o", "--judge-args", "base_url=http://127.0.0.1:9/v1,concurrency=3"),
                  ("--judge-args", "batch_size=2")]:
        new, old = ids(*judge)
        assert new == old
    single = ids("--judge", "openai:gpt-4o")[0]
    # the same judge under another key or served elsewhere, and a task this run leaves out: still one judge
    assert ids("--judge", "openai:gpt-4o", "--judge", "audio=openai:gpt-4o",
               "--judge-args", "audio:base_url=http://127.0.0.1:9/v1")[0] == single
    assert ids("--judge", "openai:gpt-4o", "--judge", f"{TEXT_TASK}=openai:other")[0] == single
    routed = {ids("--judge", "openai:gpt-4o", "--judge", "audio=openai:audio-judge")[0],
              ids("--judge", "openai:gpt-4o", "--judge", "video=openai:audio-judge")[0],
              ids("--judge", "openai:gpt-4o", "--judge", f"{MEDIA_TASK}=openai:audio-judge")[0]}
    assert len(routed) == 3 and single not in routed


def test_the_cache_never_gives_one_judges_reply_to_another(tmp_path):
    with judge_server(letter="A") as only:  # one judge for everything: its replies are cached
        code, first = run_cli(tmp_path, "--judge", "openai:judge-a", *judged(only.base_url), output="one")
        assert code == 0 and only.calls == 6
    with judge_server(letter="A") as default, judge_server(letter="B") as audio:
        code, second = run_cli(tmp_path, "--judge", "openai:judge-a", *judged(default.base_url),
                               "--judge", "audio=openai:judge-b", *judged(audio.base_url, "audio"), output="two")
        assert code == 0
        assert default.calls == 0  # the text ratings: judge-a's, from the cache
        assert audio.calls == 4  # the audio questions: judge-b has not answered them before
    assert records(first)["m1"]["scores"]["judge_media_mcq"]["answer"] == "AA"
    assert records(second)["m1"]["scores"]["judge_media_mcq"]["answer"] == "BB"
    results = json.loads((second / "results.json").read_text())["judge"]
    assert (results["calls"], results["cached"]) == (4, 2)
    with judge_server(letter="A") as default, judge_server(letter="B") as audio:  # judge-b's replies are reused
        code, _ = run_cli(tmp_path, "--judge", "openai:judge-a", *judged(default.base_url),
                          "--judge", "audio=openai:judge-b", *judged(audio.base_url, "audio"), output="three")
        assert code == 0 and default.calls == 0 and audio.calls == 0
