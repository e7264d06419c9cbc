"""Backends describe themselves (`BackendTraits`, registered beside each backend in eval_anything.models):
no module outside eval_anything/models/ names a backend to decide what to do, and the behaviours the
traits drive (--batch-size, judge concurrency, noise, export, lineage, align's model folders) hold."""
from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import eval_anything
from eval_anything.models import (BackendTraits, ModelSpec, backend_traits, backends, backends_where,
                                  known_traits)
from eval_anything.errors import UsageError
from eval_anything.registry import UnknownNameError

PACKAGE = Path(eval_anything.__file__).resolve().parent
MODELS = PACKAGE / "models"


# ---- no backend names outside eval_anything/models/ ---------------------------------------------

def _names_a_backend(node: ast.AST, names: set[str]) -> bool:
    """A string constant that is a backend name, a tuple/list/set of strings holding one, or (for
    prefix checks) a string starting with "NAME:"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value in names or node.value.partition(":")[0] in names and ":" in node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_backend(e, names) for e in node.elts)
    return False


def backend_name_checks(source: str, names: set[str]) -> list[int]:
    """Lines that compare against a backend name: `x == "hf"`, `x in ("hf", ...)`, `"hf" != x`,
    `x.startswith("embedded:")`, `case "replay":`, or a dict keyed by backend names."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            hit = any(_names_a_backend(side, names) for side in (node.left, *node.comparators))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            hit = node.func.attr in ("startswith", "endswith") and any(_names_a_backend(a, names) for a in node.args)
        elif isinstance(node, ast.MatchValue):
            hit = _names_a_backend(node.value, names)
        elif isinstance(node, ast.Dict):
            hit = any(k is not None and _names_a_backend(k, names) for k in node.keys)
        else:
            continue
        if hit:
            lines.append(node.lineno)
    return lines


def test_the_check_finds_backend_name_comparisons():
    names = set(backends.names())
    for snippet in ('if spec.backend == "hf": pass', 'ok = backend not in ("hf", "embedded")',
                    'ok = "replay" != model.get("backend")', 'ok = text.startswith("embedded:")',
                    'key = {"openai": "concurrency"}[backend]',
                    'match backend:\n    case "vllm":\n        pass'):
        assert backend_name_checks(snippet, names), snippet
    for snippet in ('spec = ModelSpec("embedded", NAME)', 'ok = backend == "hfx"', 'ok = name in ("a", "b")',
                    'ok = traits.local_weights'):
        assert not backend_name_checks(snippet, names), snippet


def test_no_module_outside_models_compares_against_a_backend_name():
    names = set(backends.names())
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if MODELS in path.parents:
            continue
        for line in backend_name_checks(path.read_text(encoding="utf-8"), names):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    assert not found, "ask backend_traits(...) instead of naming a backend: " + ", ".join(found)


# ---- the traits themselves --------------------------------------------------------------------

def test_every_registered_backend_has_traits_and_unknown_names_are_refused():
    for name in backends.names():
        traits = backend_traits(name)
        assert isinstance(traits, BackendTraits)
        assert known_traits(name) is traits
        if traits.batch_size_flag:  # the flags need an argument to set
            assert traits.batch_argument
        if traits.cached_weights:
            module, _, attr = traits.cached_weights.partition(":")
            assert module and attr
    with pytest.raises(UnknownNameError, match="did you mean 'hf'"):
        backend_traits("hff")
    assert known_traits("hff") is None and known_traits(None) is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        backend_traits("hf").lineage = False  # type: ignore[misc]


def test_the_traits_pin_each_backend():
    assert backends_where(lambda t: t.batch_size_flag) == ["embedded", "hf"]
    assert {n: backend_traits(n).batch_argument for n in backends.names()} == {
        "embedded": "batch_size", "hf": "batch_size", "openai": "concurrency", "replay": None, "vllm": "batch_size",
        "live": "batch_size"}
    assert backends_where(lambda t: t.local_weights) == ["hf", "vllm"]
    assert backends_where(lambda t: t.lineage) == ["hf", "live", "vllm"]
    assert backends_where(lambda t: t.packs_reference_file) == ["replay"]
    assert backends_where(lambda t: t.cached_weights is not None) == ["embedded"]


def test_traits_are_read_without_importing_any_backend():
    code = ("import sys; from eval_anything.models import backend_traits, backends; "
            "[backend_traits(n) for n in backends.names()]; "
            "print(sorted(m for m in sys.modules if m.startswith('eval_anything.models.') and m not in "
            "('eval_anything.models.base',)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- the behaviours they drive ----------------------------------------------------------------

@pytest.mark.parametrize("backend, rest", [("openai", "sets its own (--model-args concurrency=N)"),
                                           ("vllm", "sets its own (--model-args batch_size=N)"),
                                           ("replay", "takes no batch size")])
def test_batch_size_error_names_the_backends_that_take_it(backend, rest):
    from eval_anything.settings import with_batch_size

    with pytest.raises(ValueError) as caught:
        with_batch_size(ModelSpec(backend, "x"), "4")
    assert str(caught.value) == f"--batch-size applies to the embedded and hf backends; the {backend} backend {rest}"


def test_batch_size_sets_the_batch_argument():
    from eval_anything.settings import with_batch_size

    assert with_batch_size(ModelSpec("hf", "x"), "4").args == {"batch_size": 4}
    assert with_batch_size(ModelSpec("embedded", "x", {"a": 1}), "auto").args == {"a": 1, "batch_size": "auto"}
    for bad in ("0", "-2", "8x"):
        with pytest.raises(UsageError, match=f"--batch-size {bad}: use a whole number of at least 1, or auto"):
            with_batch_size(ModelSpec("hf", "x"), bad)


@pytest.mark.parametrize("model, expected", [("openai:gpt-x", {"concurrency": 3}), ("hf:/m", {"batch_size": 3}),
                                             ("vllm:/m", {"batch_size": 3}), (None, {"batch_size": 3})])
def test_judge_concurrency_sets_each_backends_batch_argument(model, expected):
    from eval_anything.settings import EvaluationArguments, judge_settings

    arguments = EvaluationArguments(judge=[model] if model else [], judge_concurrency=3)
    assert judge_settings(arguments).spec.args == expected


def test_judge_concurrency_refuses_a_backend_without_a_batch_argument(tmp_path):
    from eval_anything.settings import EvaluationArguments, judge_settings

    preds = tmp_path / "p.jsonl"
    preds.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="the replay backend takes no batch argument"):
        judge_settings(EvaluationArguments(judge=[f"replay:{preds}"], judge_concurrency=3))


def test_noise_varies_the_batch_only_where_the_flags_set_it(capsys):
    from eval_anything.noise import _batch_sizes

    for name in backends.names():
        sizes = _batch_sizes("8,1", name)
        assert sizes == (["8", "1"] if backend_traits(name).batch_size_flag else None), name
    assert "the openai backend sets its own batching; only the seed is varied" in capsys.readouterr().err


def test_lineage_is_read_for_every_backend_that_carries_it(tmp_path):
    """`vllm:DIR` is a local folder of weights like `hf:DIR`: a checkpoint align trained keeps its lineage."""
    from eval_anything.manifest import LINEAGE_FILE, read_lineage

    lineage = {"base_model": "base", "method": "sft", "data": "d.jsonl (sha256 0123)", "config_hash": "abc"}
    (tmp_path / LINEAGE_FILE).write_text(json.dumps(lineage), encoding="utf-8")
    assert read_lineage(ModelSpec("hf", str(tmp_path))) == lineage
    assert read_lineage(ModelSpec("vllm", str(tmp_path))) == lineage
    assert read_lineage(ModelSpec("live", str(tmp_path))) == lineage  # an in-memory model described by its folder
    for name in backends_where(lambda t: not t.lineage):
        assert read_lineage(ModelSpec(name, str(tmp_path))) is None
    assert read_lineage(ModelSpec("vllm", str(tmp_path / "elsewhere"))) is None


def test_align_finds_the_folder_of_a_local_weights_backend(tmp_path):
    from eval_anything.align.train import model_dir

    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    for name in backends_where(lambda t: t.local_weights):
        assert model_dir(f"{name}:{tmp_path}") == tmp_path
    assert model_dir(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError):
        model_dir(f"openai:{tmp_path}")


def test_export_packs_a_reference_file_and_notes_an_unpacked_model_folder(tmp_path):
    """The full export -> run --from round trip is test_reproducibility's; here, what the traits decide."""
    from eval_anything.cli import main
    from eval_anything.export import export_run

    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"task": "arith_mini", "id": "arith-000", "text": "1"}) + "\n", encoding="utf-8")
    assert main(["run", "--model", f"replay:{preds}", "--tasks", "arith_mini", "--limit", "1",
                 "--output-dir", str(tmp_path / "runs")]) == 0
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    info = export_run(run_dir, tmp_path / "replay.tar.gz")
    assert info["model_file"] == "model/p.jsonl" and not info["notes"]
    with tarfile.open(tmp_path / "replay.tar.gz") as tar:
        assert "model/p.jsonl" in tar.getnames()
        assert not [n for n in tar.getnames() if "/.lock" in n], "the run directory's lock is not part of the run"
    manifest_path = run_dir / "manifest.json"
    for name in backends_where(lambda t: t.local_weights):
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["model"] = {"backend": name, "reference": "/models/m", "args": {}}
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
        info = export_run(run_dir, tmp_path / f"{name}.tar.gz")
        assert info["model_file"] is None
        assert info["notes"] == ["the model folder /models/m is not packed; give it with --model on rerun"]
