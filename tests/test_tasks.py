import json
import textwrap

import pytest

from eval_anything.datamodel import Modality
from eval_anything.tasks import ALL, Catalog, DataFileError, TaskFileError, task_from_dict

BUILTIN = {"arith_mini", "shapes_color", "shapes_count", "tones_count", "motion_direction"}


@pytest.fixture(scope="module")
def catalog():
    return Catalog()


def write_task(tmp_path, body, rows=({"id": "a", "question": "2+2?", "answer": "4"},), name="t.yaml"):
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
    name: mine
    version: 2
    dataset: {path: data.jsonl}
    input: [{text: question}]
    target: answer
    prompt: "Q: {{ question }}"
    scorers: [exact_match]
"""


def test_builtin_tasks_load_with_groups(catalog):
    assert BUILTIN <= set(catalog.tasks)
    assert {t.name for t in catalog.resolve(ALL)} == set(catalog.tasks)
    assert {t.name for t in catalog.resolve("image")} == {"shapes_color", "shapes_count"}
    assert [t.name for t in catalog.resolve("arith_mini,tones_count,arith_mini")] == ["arith_mini", "tones_count"]


def test_builtin_media_paths_exist(catalog):
    for task in catalog.tasks.values():
        for sample in task.samples():
            for part in sample.media:
                assert part.path and __import__("os").path.exists(part.path), (task.name, sample.id)


def test_unknown_task_suggests(catalog):
    with pytest.raises(KeyError, match="did you mean 'arith_mini'"):
        catalog.resolve("arith_mni")


def test_circular_task_renders_one_request_per_rotation(catalog):
    task = catalog.tasks["shapes_color"]
    sample = next(task.samples())
    requests = task.requests(sample, task.generation(seed=1))
    assert len(requests) == len(sample.choices) == 4
    assert [r.variant for r in requests] == [0, 1, 2, 3]
    assert requests[1].choices == sample.choices[1:] + sample.choices[:1]
    assert f"A. {requests[1].choices[0]}" in requests[1].prompt_text
    assert requests[0].parts[0].modality is Modality.IMAGE and requests[0].parts[-1].modality is Modality.TEXT
    assert sample.target[0] in sample.choices  # the letter target became the option text


def test_yaml_task_from_include_path(tmp_path):
    write_task(tmp_path, GOOD)
    task = Catalog([tmp_path]).tasks["mine"]
    sample = next(task.samples())
    assert task.requests(sample, task.generation(seed=0))[0].prompt_text == "Q: 2+2?"
    assert task.version == 2 and len(task.content_hash) == 64


def test_content_hash_follows_data_and_template(tmp_path):
    path = write_task(tmp_path, GOOD)
    first = Catalog([tmp_path]).tasks["mine"].content_hash
    (tmp_path / "data.jsonl").write_text(json.dumps({"id": "a", "question": "2+3?", "answer": "5"}) + "\n")
    second = Catalog([tmp_path]).tasks["mine"].content_hash
    path.write_text(path.read_text().replace("Q: ", "Question: "))
    third = Catalog([tmp_path]).tasks["mine"].content_hash
    assert len({first, second, third}) == 3


@pytest.mark.parametrize("change,message", [
    (("scorers: [exact_match]", "scorers: [exact_mach]"), "field 'scorers.0'.*did you mean 'exact_match'"),
    (("version: 2", "version: 2\n    colour: red"), "field 'colour': Extra inputs are not permitted"),
    (("    version: 2\n", ""), "field 'version': Field required"),
    (("input: [{text: question}]", "input: [{smell: question}]"), "field 'input.0.smell': Input should be 'text', 'image'"),
    (('prompt: "Q: {{ question }}"', 'prompt: "Q: {{ question }"'), "field 'prompt': template syntax error"),
])
def test_bad_task_file_names_file_field_and_fault(tmp_path, change, message):
    path = write_task(tmp_path, GOOD.replace(*change))
    with pytest.raises(TaskFileError, match=message) as info:
        Catalog([tmp_path])
    assert str(path) in str(info.value)


def test_invalid_yaml_is_reported_with_its_file(tmp_path):
    path = write_task(tmp_path, "name: [unclosed\n")
    with pytest.raises(TaskFileError, match="not valid YAML") as info:
        Catalog([tmp_path])
    assert str(path) in str(info.value)


def test_duplicate_task_names_are_refused(tmp_path):
    write_task(tmp_path, GOOD, name="a.yaml")
    write_task(tmp_path, GOOD, name="b.yaml")
    with pytest.raises(TaskFileError, match="defined twice"):
        Catalog([tmp_path])


def test_duplicate_ids_and_missing_columns_name_the_row(tmp_path):
    rows = [{"id": "a", "question": "x", "answer": "1"}, {"id": "a", "question": "y", "answer": "2"}]
    write_task(tmp_path, GOOD, rows)
    with pytest.raises(DataFileError, match="row 2: duplicate id 'a'"):
        list(Catalog([tmp_path]).tasks["mine"].samples())
    write_task(tmp_path, GOOD, [{"id": "a", "answer": "1"}])
    with pytest.raises(DataFileError, match="row 1: missing column 'question'"):
        list(Catalog([tmp_path]).tasks["mine"].samples())


def test_media_urls_are_refused(tmp_path):
    body = GOOD.replace("input: [{text: question}]", "input: [{image: image}, {text: question}]")
    write_task(tmp_path, body, [{"id": "a", "question": "x", "answer": "1", "image": "https://example.com/a.png"}])
    with pytest.raises(DataFileError, match="holds a URL"):
        list(Catalog([tmp_path]).tasks["mine"].samples())


def test_python_defined_task(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "1", "q": "hi", "a": "hello"}) + "\n")
    task = task_from_dict({"name": "py_task", "version": 1, "dataset": {"path": "d.jsonl"},
                           "input": [{"text": "q"}], "target": "a", "scorers": ["token_f1"]}, tmp_path)
    sample = next(task.samples())
    assert sample.target == ("hello",) and task.requests(sample, task.generation(0))[0].prompt_text == "hi"
