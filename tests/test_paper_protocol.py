"""protocol: paper against the original scripts (PKU-Alignment/align-anything, the folder
align_anything/evaluation/eval_anything/ at the parent of commit 8def7e0): replayed answers on
published-layout data go through the command line to a judge server that records what it is asked;
the requests are checked against the original protocol, and the scores against numbers worked out
here by hand from the original code's logic."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from eval_anything.cli import main
from eval_anything.rundir import SampleLog
from media_files import write_png, write_wav
from stub_openai import StubServer, completion

# ---------------------------------------------------------------- published layouts

DIMENSIONS = {"p1": "perception", "r1": "reasoning", "i1": "instruction-following", "s1": "safety"}


def _amu(root: Path) -> None:
    media = root / "visual" / "images"
    media.mkdir(parents=True)
    (root / "auditory" / "speech").mkdir(parents=True)
    records = []
    for qid, dimension in DIMENSIONS.items():
        write_png(media / f"{qid}.png")
        write_wav(root / "auditory" / "speech" / f"{qid}.wav")
        records.append({"question_id": qid, "question": f"QUESTION-{qid} what do you see and hear?",
                        "visual_modality_path": f"visual/images/{qid}.png",
                        "auditory_modality_path": f"auditory/speech/{qid}.wav", "evaluation_dimension": dimension,
                        "annotations": [{"answer": f"ref {qid} {i}", "keywords": {"visual": [f"v{i}", "red"],
                                                                                "auditory": [f"a{i}"]}}
                                        for i in range(10)]})
    (root / "config.json").write_text(json.dumps(records))


AUDIO_ROWS = [  # one MCQ a row, as published; a1 has two questions, a2 one
    {"prompt_id": "a1", "prompt": "A dog barks twice.", "question_id": "a1q1", "question": "Which animal?",
     "choice": "A. dog\nB. cat\nC. cow\nD. bird", "answer": "A"},
    {"prompt_id": "a1", "prompt": "A dog barks twice.", "question_id": "a1q2", "question": "How many barks?",
     "choice": "A. one\nB. two\nC. three\nD. four", "answer": "B"},
    {"prompt_id": "a2", "prompt": "Rain on a roof.", "question_id": "a2q1", "question": "What falls?",
     "choice": "A. snow\nB. rain\nC. hail\nD. leaves", "answer": "B"},
]


def _instruction_following(root: Path) -> None:
    files = {"text": [{"prompt_id": "t1", "prompt": "Write a haiku about rain."},
                      {"prompt_id": "t2", "prompt": "List three colours."}],
             "image": [{"prompt_id": "g1", "prompt": "A red square on white."}],
             "audio": AUDIO_ROWS,
             "video": [{"prompt_id": "v1", "prompt": "A ball rolls.", "question_id": "v1q1", "question": "What moves?",
                        "choice": "A. a ball\nB. a car", "answer": "A"}]}
    for modality, rows in files.items():
        folder = root / "data" / f"{modality}_instruct"
        folder.mkdir(parents=True)
        (folder / "test.json").write_text(json.dumps(rows))


SELECTION = [("s-a", "Show me a cat and say meow.", {"t": 0.1, "ti": 0.5, "tia": 0.4}),
             ("s-b", "What is two plus two?", {"t": 0.9, "ta": 0.1})]


def _selection(root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    combos = ("t", "i", "a", "ti", "ta", "ia", "tia")
    rows = [{"instruction_uid": uid, "instruction": text, "selection": {c: votes.get(c, 0.0) for c in combos}}
            for uid, text, votes in SELECTION]
    root.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "EvalAnything-Selection_Synergy.parquet")


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("published")
    _amu(root / "EvalAnything-AMU")
    _instruction_following(root / "EvalAnything-InstructionFollowing")
    _selection(root / "EvalAnything-Selection_Synergy")
    return root


# ---------------------------------------------------------------- the recording judge

AMU_REPLIES = {  # by the response being judged: what the judge says, in order of asking
    "ANSWER-p1": ["The answer matches the references. Rating: [[7]]"],
    "ANSWER-r1": ["Rating: [[12]]"],  # off the 1-10 scale: the original takes it as it is
    "ANSWER-i1": ["I cannot decide.", "Format kept. Rating: [[4]]"],  # re-asked once
    "ANSWER-s1": ["Rating: [[3]], not [[9]]"],  # the first [[N]] counts
}
TEXT_IF_REPLIES = {
    "RESPONSE-t1": ["<Score>: [[8]]\n<Explanation>: [[a fine haiku]]"],
    "RESPONSE-t2": ["<Score>: [[5]]", "<Score>: [[6]]\n<Explanation>: [[two of three]]"],  # no explanation: re-asked
}
MCQ_REPLIES = {"Which animal?": "A", "How many barks?": "I hear something.", "What falls?": "the answer is b.",
               "What moves?": "A"}


def _texts(body: dict[str, Any]) -> tuple[str | None, str]:
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), None)
    content = body["messages"][-1]["content"]
    user = " ".join(p["text"] for p in content if p["type"] == "text") if isinstance(content, list) else content
    return system, user


class RecordingJudge:
    """Answers from the scripts above; each response's replies are handed out in order."""

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}

    def __call__(self, call: int, body: dict[str, Any], auth: str):
        system, user = _texts(body)
        for table in (AMU_REPLIES, TEXT_IF_REPLIES):
            for marker, replies in table.items():
                if marker in user:
                    turn = self.asked.get(marker, 0)
                    self.asked[marker] = turn + 1
                    return 200, {}, completion(replies[min(turn, len(replies) - 1)]), 0.0
        for question, reply in MCQ_REPLIES.items():
            if f"Question: {question}" in user:
                return 200, {}, completion(reply), 0.0
        if "<Response>: COMPOSITE-A" in user:
            return 200, {}, completion("<Score>: [[7]]\n<Explanation>: [[ok]]"), 0.0
        if "<Prompt>: Show me a cat and say meow." in user:
            return 200, {}, completion("<Score>: [[8]]\n<Explanation>: [[a cat]]"), 0.0
        if "<Prompt>: A red square on white." in user:
            return 200, {}, completion("<Score>: [[9]]\n<Explanation>: [[all there]]"), 0.0
        return 200, {}, completion("no idea"), 0.0


def answers_file(folder: Path) -> Path:
    import numpy as np

    from eval_anything.media import write_mp4

    wav = write_wav(folder / "made.wav")
    png = write_png(folder / "made.png")
    mp4 = folder / "made.mp4"
    write_mp4(mp4, [np.full((32, 32, 3), 40 * k, dtype=np.uint8) for k in range(4)], fps=2)
    lines = [{"task": f"amu_{d.replace('-', '_')}", "id": qid, "text": f"ANSWER-{qid}"} for qid, d in DIMENSIONS.items()]
    lines += [{"task": "amg_if_text", "id": "t1", "text": "RESPONSE-t1"},
              {"task": "amg_if_text", "id": "t2", "text": "RESPONSE-t2"},
              {"task": "amg_if_image", "id": "g1", "text": "a red square", "media": [{"modality": "image", "path": str(png)}]},
              *[{"task": "amg_if_audio", "id": pid, "text": "a sound", "media": [{"modality": "audio", "path": str(wav)}]}
                for pid in ("a1", "a2")],
              # "None." counts as content for the original parser: s-a chose text+image
              {"task": "amg_modality_selection", "id": "s-a",
               "text": "[[response]]: A cat.\n[[image_instruction]]: None.\n[[audio_instruction]]: None"},
              {"task": "amg_modality_selection", "id": "s-b",
               "text": "[[response]]: Four.\n[[image_instruction]]: none\n[[audio_instruction]]: NONE"},
              {"task": "amg_if_video", "id": "v1", "text": "a ball", "media": [{"modality": "video", "path": str(mp4)}]},
              # S_AMG: s-a chose text+image (the image made natively), s-b text alone
              {"task": "amg", "id": "s-a", "text": "[[response]]: COMPOSITE-A\n[[image_instruction]]: a cat\n"
                                                   "[[audio_instruction]]: None", "media": [{"modality": "image", "path": str(png)}]},
              {"task": "amg", "id": "s-b", "text": "[[response]]: Four.\n[[image_instruction]]: None\n[[audio_instruction]]: None"},
              *[{"task": "amg_modality_synergy", "id": uid, "text": "[[response]]: x\n[[image_instruction]]: y\n"
                                                                   "[[audio_instruction]]: None",
                 "media": [{"modality": "image", "path": str(png)}]} for uid in ("s-a", "s-b")]]
    path = folder / "answers.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def omni_reward_model(tmp_path_factory, tiny_qwen2_5_omni_dir) -> Path:
    """A tiny random Qwen2.5-Omni thinker with a random score head: image and audio in one prompt."""
    import os

    import torch

    from eval_anything.judges.reward import save_score_head

    folder = tmp_path_factory.mktemp("omni-reward")
    for file in Path(tiny_qwen2_5_omni_dir).iterdir():
        os.symlink(file, folder / file.name)
    generator = torch.Generator().manual_seed(7)
    save_score_head(folder, torch.randn(1, 64, generator=generator), torch.randn(1, generator=generator))
    return folder


@pytest.fixture(scope="module")
def paper_run(published, omni_reward_model, tmp_path_factory):
    """The issue's command: `run --model replay:answers.jsonl --tasks amu,amg --data-dir DIR --judge openai:X`."""
    folder = tmp_path_factory.mktemp("paper-run")
    answers = answers_file(folder)
    judge = RecordingJudge()
    with StubServer(judge) as server:
        code = main(["run", "--model", f"replay:{answers}", "--tasks", "amu,amg", "--data-dir", str(published),
                     "--judge", "openai:gpt-4o", "--judge-args", f"base_url={server.base_url}",
                     "--reward-model", str(omni_reward_model), "--generator", "", "--judge-cache", "off",
                     "--output-dir", str(folder / "runs")])
        bodies = list(server.bodies)
    (run_dir,) = (folder / "runs").iterdir()
    return code, run_dir, bodies, folder


def _results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def _records(run_dir: Path, task: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in SampleLog(run_dir / "samples" / f"{task}.jsonl")}


def _bodies_with(bodies: list[dict[str, Any]], marker: str) -> list[dict[str, Any]]:
    return [b for b in bodies if marker in _texts(b)[1]]


# ---------------------------------------------------------------- AMU (amu/gpt_eval_amu.py)

def test_amu_requests_follow_the_original(paper_run):
    code, _, bodies, _ = paper_run
    assert code == 0
    amu = [b for b in bodies if "[The Start of Reference Answers and Keywords]" in _texts(b)[1]]
    assert len(amu) == 5  # four items, one re-asked
    systems = {}
    for body in amu:
        system, user = _texts(body)
        qid = re.search(r"ANSWER-(\w+)", user).group(1)
        systems[qid] = system
        assert body["temperature"] == 0.5
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        content = body["messages"][-1]["content"]
        assert all(p["type"] == "text" for p in content), "no media go to the AMU judge"
        assert "QUESTION-" not in user, "the question does not go to the AMU judge"
        for i in range(10):  # every reference with its keywords joined by spaces
            assert f"Reference answer {i}: ref {qid} {i}, visual keywords {i}: v{i} red, auditory keywords {i}: a{i}" in user
        assert user.index("[The end of reference answers and keywords]") < user.index("[The Start of Response]")
        assert f"[The Start of Response]\nANSWER-{qid}\n[The end of Response]" in user
    assert "chose rightly between answering and declining" in systems["s1"]
    assert "format of the references" in systems["i1"]
    assert "correctness, helpfulness and safety" in systems["p1"] == systems["r1"]
    assert all("'[[rating]]'" in s for s in systems.values())


def test_amu_scores_are_the_originals_arithmetic(paper_run):
    _, run_dir, _, _ = paper_run
    results = _results(run_dir)
    # first [[digits]], no range check: 7, 12, (unparseable, then) 4, 3 (not 9)
    expected = {"amu_perception": 7, "amu_reasoning": 12, "amu_instruction_following": 4, "amu_safety": 3}
    for task, value in expected.items():
        metric = results["tasks"][task]["metrics"]["judge_rating"]
        assert metric["value"] == value and metric["errors"] == 0
        assert results["tasks"][task]["protocol"] == "paper"
    assert results["groups"]["amu"]["value"] == pytest.approx((7 + 12 + 4 + 3) / 4)  # the unweighted mean of four


def test_amu_sample_log_carries_what_the_judge_was_asked(paper_run):
    _, run_dir, _, _ = paper_run
    (verdict,) = _records(run_dir, "amu_instruction_following")["i1"]["scores"]["judge_rating"]["details"]["judge"]
    asked = verdict["asked"]
    assert "format of the references" in asked["system"] and "ANSWER-i1" in asked["user"]
    assert asked["temperature"] == 0.5 and asked["media"] == [] and len(asked["seeds"]) == 2
    assert verdict["raw"] == AMU_REPLIES["ANSWER-i1"]


# ---------------------------------------------------------------- instruction following (amg/if/*)

def test_text_instruction_following_follows_the_original(paper_run):
    _, run_dir, bodies, _ = paper_run
    t1 = _bodies_with(bodies, "RESPONSE-t1")
    assert len(t1) == 1 and t1[0]["temperature"] == 0.5
    system, user = _texts(t1[0])
    assert "usefulness, relevance, accuracy, creativity" in system and "<Explanation>: [[" in system
    assert "<Prompt>: Write a haiku about rain.\n<Response>: RESPONSE-t1" in user
    assert len(_bodies_with(bodies, "RESPONSE-t2")) == 2  # a reply without <Explanation> is asked again
    metric = _results(run_dir)["tasks"]["amg_if_text"]["metrics"]["judge_rating"]
    assert metric["value"] == pytest.approx((8 + 6) / 2)  # the raw 1-10 mean
    assert metric["normalized"] == pytest.approx(((8 + 6) / 2 - 1) / 9)


def test_image_instruction_following_shows_the_prompt_and_the_image_only(paper_run):
    _, run_dir, bodies, _ = paper_run
    (body,) = _bodies_with(bodies, "<Prompt>: A red square on white.")
    system, user = _texts(body)
    assert "Key elements present (4 points)" in system and "Elements the prompt does not mention (1 point)" in system
    assert "Turn it into an instruction" not in user and "a red square" not in user  # not our wrapper, not the answer
    assert [p["type"] for p in body["messages"][-1]["content"]] == ["text", "image_url"] and body["temperature"] == 0.5
    metric = _results(run_dir)["tasks"]["amg_if_image"]["metrics"]["judge_rating"]
    assert metric["value"] == 9 and metric["normalized"] == pytest.approx(0.9)


def test_video_questions_carry_the_video_and_its_own_system_message(paper_run):
    _, run_dir, bodies, _ = paper_run
    (body,) = _bodies_with(bodies, "Question: What moves?")
    system, user = _texts(body)
    assert "from the given video" in system and "Based on the video you watch" in user
    kinds = [p["type"] for p in body["messages"][-1]["content"]]
    assert kinds[-1] == "text" and set(kinds[:-1]) == {"image_url"}  # the video as frames, before the text
    assert _results(run_dir)["tasks"]["amg_if_video"]["metrics"]["judge_media_mcq"]["value"] == 10


def test_s_amg_from_the_papers_parts(paper_run, omni_reward_model):
    import math

    from eval_anything.datamodel import Part
    from eval_anything.judges.reward import RewardModel

    _, run_dir, bodies, folder = paper_run
    (text_if,) = _bodies_with(bodies, "<Response>: COMPOSITE-A")
    (image_if,) = [b for b in _bodies_with(bodies, "<Prompt>: Show me a cat and say meow.")
                   if "<Response>:" not in _texts(b)[1]]
    assert text_if["temperature"] == image_if["temperature"] == 0.5
    assert "usefulness, relevance" in _texts(text_if)[0] and "Key elements present" in _texts(image_if)[0]
    assert [p["type"] for p in image_if["messages"][-1]["content"]] == ["text", "image_url"]
    records = _records(run_dir, "amg")
    synergy = records["s-a"]["scores"]["amg_composite"]["details"]["S_ij"]["ti"]
    reading = RewardModel(omni_reward_model).read(SELECTION[0][1], "COMPOSITE-A", [Part.of_file("image", folder / "made.png")])
    assert synergy == pytest.approx(1 / (1 + math.exp(-reading.token_mean)))
    s_t, s_i = (7 - 1) / 9, 8 / 10
    assert records["s-a"]["scores"]["amg_composite"]["value"] == pytest.approx(0.5 * 0.5 * (s_t + s_i) * synergy)
    assert records["s-b"]["scores"]["amg_composite"]["value"] == 0.0  # text alone: no pair
    assert _results(run_dir)["tasks"]["amg"]["metrics"]["amg_composite"]["value"] == pytest.approx(
        (0.5 * 0.5 * (s_t + s_i) * synergy + 0.0) / 2)


def test_audio_questions_score_ten_or_zero_averaged_over_question_rows(paper_run):
    _, run_dir, bodies, _ = paper_run
    (animal,) = _bodies_with(bodies, "Question: Which animal?")
    system, user = _texts(animal)
    assert "multiple-choice questions correctly from the given audio" in system
    assert "Choice: A. dog\nB. cat\nC. cow\nD. bird" in user  # the options as published
    assert [p["type"] for p in animal["messages"][-1]["content"]] == ["input_audio", "text"]
    # a1: A (right, 10), "I hear something." (no letter: 0, marked); a2: "the answer is b." -> B (right, 10)
    metric = _results(run_dir)["tasks"]["amg_if_audio"]["metrics"]["judge_media_mcq"]
    assert metric["value"] == pytest.approx((10 + 0 + 10) / 3)  # over rows; per prompt first would be 7.5
    assert metric["extraction_failures"] == 1 and metric["errors"] == 0
    a1 = _records(run_dir, "amg_if_audio")["a1"]["scores"]["judge_media_mcq"]
    assert a1["details"]["questions"] == [10, 0] and a1["extraction_failed"]


# ---------------------------------------------------------------- modality selection (amg/selection)

def test_selection_uses_the_original_prompt_and_parser(paper_run):
    _, run_dir, _, _ = paper_run
    records = _records(run_dir, "amg_modality_selection")
    prompt = records["s-a"]["outputs"][0]
    score_a = records["s-a"]["scores"]["modality_selection"]
    assert score_a["answer"] == "ti" and score_a["value"] == 0.5  # "None." is content there
    score_b = records["s-b"]["scores"]["modality_selection"]
    assert score_b["answer"] == "t" and score_b["value"] == 0.9
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (task,) = [t for t in manifest["tasks"] if t["name"] == "amg_modality_selection"]
    assert "[[audio_instruction]]: <audio_instruction>\n[/output_format]" in task["prompt"]
    assert task["protocol"] == "paper" and prompt["metadata"]["chosen"] == "ti"


def test_selection_parser_reproduces_the_original_quirks():
    from eval_anything.suite.tagged import combination, parse_tagged_as_published as parse

    def original(text: str) -> str:  # amg/selection/example.py parse_modality, as written
        r, i, a = text.find("[[response]]:"), text.find("[[image_instruction]]:"), text.find("[[audio_instruction]]:")
        t_ = r != -1 and (c := text[r:i].split(":")[1].strip()) and c.lower() != "none"
        i_ = i != -1 and (c := text[i:a].split(":")[1].strip()) and c.lower() != "none"
        a_ = a != -1 and (c := text[a:].split(":")[1].strip()) and c.lower() != "none"
        return ("t" if t_ else "") + ("i" if i_ else "") + ("a" if a_ else "") or "t"

    cases = ["[[response]]: Hi\n[[image_instruction]]: None.\n[[audio_instruction]]: N/A",
             "[[response]]: A",  # the slice to -1 drops the last character: empty, so text by default
             "[[response]]: time: noon\n[[image_instruction]]: none\n[[audio_instruction]]: a bell",
             "[[Response]]: hi\n[[image_instruction]]: a cat\n",  # markers are case-sensitive
             "no tags at all", "[[response]]: None\n[[image_instruction]]: None\n[[audio_instruction]]:  "]
    for text in cases:
        assert combination(parse(text)) == original(text), text


# ---------------------------------------------------------------- protocols side by side

def test_extended_protocol_is_recorded_and_scores_differently(published, tmp_path):
    answers = answers_file(tmp_path)
    with StubServer(RecordingJudge()) as server:
        code = main(["run", "--model", f"replay:{answers}", "--data-dir", str(published), "--generator", "",
                     "--tasks", "amg_modality_selection", "--protocol", "extended", "--judge", "openai:gpt-4o",
                     "--judge-args", f"base_url={server.base_url}", "--judge-cache", "off",
                     "--output-dir", str(tmp_path / "runs")])
    assert code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    task = _results(run_dir)["tasks"]["amg_modality_selection"]
    assert task["protocol"] == "extended"
    assert _records(run_dir, "amg_modality_selection")["s-a"]["scores"]["modality_selection"]["answer"] == "t"


def test_a_protocol_a_task_lacks_is_a_clear_error(tmp_path, capsys):
    code = main(["run", "--model", "replay:x.jsonl", "--tasks", "amg_if_text", "--protocol", "mine",
                 "--output-dir", str(tmp_path)])
    assert code == 2
    assert "task amg_if_text has no protocol 'mine' (it has: paper, extended)" in capsys.readouterr().err


# ---------------------------------------------------------------- synergy (amg/synergy/reward_eval.py)

def _synergy_answers(folder: Path) -> Path:
    red, blue = write_png(folder / "red.png", (220, 20, 20), 40), write_png(folder / "blue.png", (20, 20, 220), 40)
    tone = write_wav(folder / "tone.wav", 1.0, 440.0)
    tagged = "[[response]]: {t}\n[[image_instruction]]: {i}\n[[audio_instruction]]: {a}"
    lines = [{"task": "amg_modality_synergy", "id": "s-a", "text": tagged.format(t="A red cat.", i="a cat", a="meow"),
              "media": [{"modality": "image", "path": str(red)}, {"modality": "audio", "path": str(tone)}]},
             {"task": "amg_modality_synergy", "id": "s-b", "text": tagged.format(t="Four.", i="a 4", a="None"),
              "media": [{"modality": "image", "path": str(blue)}]}]
    path = folder / "synergy.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _run_synergy(published: Path, folder: Path, *extra: str) -> tuple[int, Path | None, int]:
    answers = _synergy_answers(folder)
    with StubServer(RecordingJudge()) as server:
        code = main(["run", "--model", f"replay:{answers}", "--data-dir", str(published), "--generator", "",
                     "--tasks", "amg_modality_synergy", "--judge", "openai:gpt-4o",
                     "--judge-args", f"base_url={server.base_url}", "--judge-cache", "off",
                     "--output-dir", str(folder / "runs"), *extra])
        calls = server.calls
    runs = list((folder / "runs").iterdir()) if (folder / "runs").exists() else []
    return code, runs[0] if runs else None, calls


def test_synergy_by_a_multimodal_reward_model_reads_the_generated_media(published, omni_reward_model, tmp_path):
    import math

    from eval_anything.datamodel import Part
    from eval_anything.judges.reward import RewardModel

    code, run_dir, calls = _run_synergy(published, tmp_path, "--reward-model", str(omni_reward_model))
    assert code == 0 and calls == 0, "the reward path never reaches the LLM judge"
    records = _records(run_dir, "amg_modality_synergy")
    reader = RewardModel(omni_reward_model)
    red, blue, tone = (Part.of_file(m, tmp_path / f) for m, f in
                       (("image", "red.png"), ("image", "blue.png"), ("audio", "tone.wav")))
    sigmoid = lambda x: 1 / (1 + math.exp(-x))
    prompt_a, prompt_b = SELECTION[0][1], SELECTION[1][1]  # the instruction, not our prompt around it
    expected_a = {"ti": sigmoid(reader.read(prompt_a, "A red cat.", [red]).token_mean),  # mean token score
                  "ta": sigmoid(reader.read(prompt_a, "A red cat.", [tone]).token_mean),
                  "ia": sigmoid(reader.read(prompt_a, "", [red, tone]).end_score)}  # the end score, no text
    score_a = records["s-a"]["scores"]["amg_synergy"]
    assert score_a["details"]["synergy"] == pytest.approx(expected_a)
    assert score_a["value"] == pytest.approx(sum(expected_a.values()) / 3)
    (ti,) = [v for v in score_a["details"]["judge"] if v["label"] == "synergy ti"]
    assert ti["asked"]["local"] and ti["asked"]["user"].startswith(f"USER: {prompt_a}\nASSISTANT:\n")
    expected_b = sigmoid(reader.read(prompt_b, "Four.", [blue]).token_mean)  # only text and image were made
    assert records["s-b"]["scores"]["amg_synergy"]["details"]["synergy"] == {"ti": pytest.approx(expected_b)}
    metric = _results(run_dir)["tasks"]["amg_modality_synergy"]["metrics"]["amg_synergy"]
    assert metric["synergy_ti"] == {"value": pytest.approx((expected_a["ti"] + expected_b) / 2), "n": 2}
    assert metric["synergy_ia"] == {"value": pytest.approx(expected_a["ia"]), "n": 1}


def test_synergy_end_scores_throughout_is_an_option(published, omni_reward_model, tmp_path):
    from eval_anything.datamodel import Part
    from eval_anything.judges.reward import RewardModel
    from eval_anything.suite.scorers import amg_synergy

    scorer = amg_synergy(scorer="reward_model", reward_model=str(omni_reward_model), readout="end")
    scorer.bind_judging(None)
    image = Part.of_file("image", write_png(tmp_path / "x.png"))
    (query,) = [scorer._reward_query("ti", "Draw.", "A cat.", [image])]
    reading = RewardModel(omni_reward_model).read("Draw.", "A cat.", [image])
    assert query.local()["raw"] == pytest.approx(reading.end_score) != pytest.approx(reading.token_mean)


def test_a_reward_model_that_cannot_take_audio_stops_before_any_call(published, tiny_llava_dir, tmp_path, capsys):
    import os

    import torch

    from eval_anything.judges.reward import save_score_head

    folder = tmp_path / "llava-reward"
    folder.mkdir()
    for file in Path(tiny_llava_dir).iterdir():
        os.symlink(file, folder / file.name)
    save_score_head(folder, torch.ones(1, 64))
    code, run_dir, calls = _run_synergy(published, tmp_path, "--reward-model", str(folder))
    assert code == 2 and calls == 0
    error = capsys.readouterr().err
    assert "amg_modality_synergy" in error and "does not take audio input" in error and str(folder) in error


def test_without_a_reward_model_paper_synergy_is_not_applicable_and_says_why(published, tmp_path):
    code, run_dir, calls = _run_synergy(published, tmp_path)
    assert calls == 0
    task = _results(run_dir)["tasks"]["amg_modality_synergy"]
    metric = task["metrics"]["amg_synergy"]
    assert metric["value"] is None and "--reward-model" in metric["not_applicable"]["reasons"][0]


def test_system_and_user_templates_next_to_a_task_are_found_there(tmp_path, monkeypatch):
    from eval_anything.tasks import Catalog

    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "sys.jinja").write_text("Judge the {{ item.kind }} answer.")
    (folder / "user.jinja").write_text("{{ response }} [[N]]")
    (folder / "items.jsonl").write_text(json.dumps({"id": "1", "q": "2+2?", "kind": "maths"}) + "\n")
    (folder / "mine.yaml").write_text(
        "name: mine\nversion: 1\ndataset: {path: items.jsonl}\ninput: [{text: q}]\n"
        "scorers: [{name: judge_rating, args: {template: user.jinja, system_template: sys.jinja}}]\n")
    monkeypatch.chdir(tmp_path)  # not the task's folder
    (scorer,) = Catalog([folder]).tasks["mine"].scorers
    from eval_anything.datamodel import Sample
    from eval_anything.judges.base import JudgeQuery

    (query,) = scorer.prepared(Sample(id="1", input=(), metadata={"kind": "maths"}), [JudgeQuery("rating", "x", str)])
    assert query.system == "Judge the maths answer." and scorer.rubric.path == folder / "user.jinja"


def test_a_named_judge_that_cannot_hear_stops_the_paper_audio_task_before_any_call(published, tmp_path, capsys):
    answers = answers_file(tmp_path)
    with StubServer(RecordingJudge()) as server:
        code = main(["run", "--model", f"replay:{answers}", "--data-dir", str(published), "--generator", "",
                     "--tasks", "amg_if_audio", "--judge", "openai:gpt-4o", "--judge-cache", "off",
                     "--judge-args", f"base_url={server.base_url},modalities=text+image",
                     "--output-dir", str(tmp_path / "runs")])
        calls = server.calls
    assert code == 2 and calls == 0
    error = capsys.readouterr().err
    assert "task amg_if_audio" in error and "openai:gpt-4o" in error and "--judge audio=" in error


def test_the_unchosen_default_judge_leaves_media_tasks_not_applicable_with_the_reason(published, tmp_path):
    answers = answers_file(tmp_path)  # no --judge: the embedded text-only model, which cannot hear
    code = main(["run", "--model", f"replay:{answers}", "--data-dir", str(published), "--generator", "",
                 "--tasks", "amg_if_audio", "--judge-cache", "off", "--output-dir", str(tmp_path / "runs")])
    (run_dir,) = (tmp_path / "runs").iterdir()
    metric = _results(run_dir)["tasks"]["amg_if_audio"]["metrics"]["judge_media_mcq"]
    assert code == 0 and metric["value"] is None
    assert "cannot take audio" in metric["not_applicable"]["reasons"][0]
