"""Task, group and run statuses: one enum each in the data model, spelled nowhere else in the package,
and written to results.json and manifest.json as the same plain strings as before."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import eval_anything
from eval_anything.composites import Composite, composites, group_scores
from eval_anything.datamodel import Modality, RunStatus, Status
from eval_anything.models import resolve_spec
from eval_anything.models.replay import ReplayModel
from eval_anything.runner import evaluate
from eval_anything.settings import RunSettings
from eval_anything.tasks import Catalog

PACKAGE = Path(eval_anything.__file__).parent
ENUMS = ("Status", "RunStatus")
"""The classes in eval_anything/datamodel.py that alone may spell a status."""
STATUS_STRINGS = frozenset(m.value for enum in (Status, RunStatus) for m in enum)
MAPPING_METHODS = ("get", "pop", "setdefault")


def _is_field_name(node: ast.Constant, parent: ast.AST) -> bool:
    """`error` and `not_applicable` are also record fields (a score's error, a metric's count of
    inapplicable samples): a literal used as a key names the field, not the status."""
    if isinstance(parent, ast.Dict):
        return any(key is node for key in parent.keys)
    if isinstance(parent, ast.Subscript):
        return parent.slice is node
    if isinstance(parent, ast.Call):
        func = parent.func
        return isinstance(func, ast.Attribute) and func.attr in MAPPING_METHODS and parent.args[:1] == [node]
    if isinstance(parent, (ast.Tuple, ast.List, ast.Set)):  # `k in ("value", "error")`: field names
        return any(isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value not in STATUS_STRINGS
                   for e in parent.elts)
    return False


def spelled_statuses(source: str, enum_module: bool = False) -> list[tuple[int, str]]:
    """(line, string) of each status spelled as a string literal rather than through the enums."""
    tree = ast.parse(source)
    allowed: set[int] = set()
    if enum_module:
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in ENUMS:
                allowed.update(id(n) for n in ast.walk(node))
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = [node for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STATUS_STRINGS
             and id(node) not in allowed and not _is_field_name(node, parents[id(node)])]
    return [(node.lineno, node.value) for node in sorted(found, key=lambda n: (n.lineno, n.col_offset))]


def test_the_scan_tells_a_status_from_a_field_name():
    source = ('RUNNING = "running"\n'
              'if outcome["status"] == "error" or status in ("not_applicable", "incomplete"): pass\n'
              'row = {"status": "complete", "error": score["error"], "n": metric.get("not_applicable")}\n'
              'keep = k in ("value", "error") or slim.keys() == {"value", "error"}\n'
              'label = "error" if failed else "absent"\n'
              'if "error" in statuses: pass\n')  # a key of a mapping reads the same: spell it as a key
    assert spelled_statuses(source) == [(1, "running"), (2, "error"), (2, "not_applicable"), (2, "incomplete"),
                                        (3, "complete"), (5, "error"), (5, "absent"), (6, "error")]
    enum_source = 'class Status:\n    COMPLETE = "complete"\nclass Other:\n    X = "complete"\n'
    assert spelled_statuses(enum_source, enum_module=True) == [(4, "complete")]


def test_no_module_spells_a_status_outside_the_enums():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {value!r}"
             for path in sorted(PACKAGE.rglob("*.py"))
             for line, value in spelled_statuses(path.read_text(encoding="utf-8"), path == PACKAGE / "datamodel.py")]
    assert not found, "use eval_anything.datamodel.Status / RunStatus:\n" + "\n".join(found)


@pytest.mark.parametrize("member", [*Status, *RunStatus])
def test_a_status_is_its_plain_string(member):
    assert member == member.value and hash(member) == hash(member.value)
    assert str(member) == f"{member}" == f"{member:s}" == "%s" % member == member.value
    assert json.dumps({member: member}) == json.dumps({member.value: member.value})
    assert type(member)(member.value) is member


def _statuses(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith('"status"')]


def test_a_runs_files_hold_the_plain_status_strings(tmp_path, monkeypatch):
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "broken.jsonl").write_text('{"id": "a", "question": "q", "answer": "a"}\nnot json\n')
    (task_dir / "broken.yaml").write_text(
        "name: broken\nversion: 1\ndescription: a bad data file\ntags: [text]\ndataset: {path: broken.jsonl}\n"
        "input:\n  - text: question\ntarget: answer\nprompt: '{{ question }}'\nscorers: [exact_match]\n")
    catalog = Catalog([task_dir])
    arith = catalog.tasks["arith_mini"]
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"task": "arith_mini", "id": s.id, "text": s.target[0]}) + "\n"
                                   for s in arith.samples()))
    monkeypatch.setattr(ReplayModel, "input_modalities", frozenset({Modality.TEXT}))  # no images: n/a
    report = evaluate(resolve_spec(str(predictions)), catalog.resolve("arith_mini,shapes_color,broken"),
                      RunSettings(output_dir=tmp_path / "runs"))
    results_text = (report.run_dir / "results.json").read_text()
    manifest_text = (report.run_dir / "manifest.json").read_text()
    assert _statuses(results_text) == ['"status": "complete",', '"status": "complete",',
                                       '"status": "not_applicable",', '"status": "error",']
    assert _statuses(manifest_text) == ['"status": "complete"']
    results = json.loads(results_text)
    assert {name: t["status"] for name, t in results["tasks"].items()} == {
        "arith_mini": "complete", "shapes_color": "not_applicable", "broken": "error"}
    assert results["tasks"]["arith_mini"]["metrics"]["numeric"]["value"] == 1.0
    assert report.results["tasks"]["broken"]["status"] is Status.ERROR and not report.ok
    assert json.loads(json.dumps({"format_version": 1, **report.results})) == results  # enums: their strings

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "1"}\n{"text": "no id"}\n')
    with pytest.raises(ValueError):
        evaluate(resolve_spec(str(bad)), catalog.resolve("arith_mini"), RunSettings(output_dir=tmp_path / "stopped"))
    (stopped,) = (tmp_path / "stopped").iterdir()
    assert _statuses((stopped / "manifest.json").read_text()) == ['"status": "interrupted"']
    assert _statuses((stopped / "results.json").read_text()) == ['"status": "interrupted",']


def test_group_statuses_serialise_as_plain_strings(monkeypatch):
    monkeypatch.setattr(composites, "_entries", dict(composites._entries))  # registered for this test only
    composites.register("status_pair", Composite(("status_a", "status_b"), "numeric"))
    scored = {"status": "complete", "metrics": {"numeric": {"value": 0.5}}}
    cases = {"complete": {"status_a": scored, "status_b": scored},
             "incomplete": {"status_a": scored, "status_b": {"status": "complete", "metrics": {}}},
             "not_applicable": {"status_a": scored, "status_b": {"status": "not_applicable"}}}
    for expected, outcomes in cases.items():
        assert f'"status": "{expected}"' in json.dumps(group_scores(outcomes)["status_pair"])
