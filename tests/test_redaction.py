"""Secrets are written down nowhere: one redactor for model arguments and command lines, and a rerun
from a bundle says when the command it restores had secrets taken out."""
from __future__ import annotations

import json

from eval_anything.cli import main
from eval_anything.models.base import ModelSpec
from eval_anything.redaction import REDACTED, redact, redact_command, was_redacted


def test_secret_looking_names_are_hidden_and_variable_names_kept():
    assert redact({"api_token": "abc", "api_key_env": "MY_KEY", "base_url": "http://h"}) == {
        "api_token": REDACTED, "api_key_env": "MY_KEY", "base_url": "http://h"}
    assert ModelSpec("openai", "m", {"auth_secret": "s3"}).describe()["args"] == {"auth_secret": REDACTED}
    argv = ["--judge-args", "base_url=http://h,auth_token=abc,api_key_env=K", "--model-args", "password=pw"]
    assert redact_command(argv) == ["--judge-args", f"base_url=http://h,auth_token={REDACTED},api_key_env=K",
                                    "--model-args", f"password={REDACTED}"]
    assert was_redacted(redact_command(argv)) and not was_redacted(["--tasks", "arith_mini"])


def test_a_rerun_from_a_bundle_says_its_command_had_secrets_taken_out(tmp_path, capsys):
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text("".join(json.dumps({"task": "arith_mini", "id": f"arith-{i:03d}", "text": "1"}) + "\n"
                                   for i in range(2)))
    first = tmp_path / "first"
    assert main(["run", "--model", f"replay:{predictions}", "--tasks", "arith_mini", "--limit", "2",
                 "--judge", "openai:judge-model", "--judge-args", "auth_token=not-for-the-log", "--output-dir", str(first)]) == 0
    (run_dir,) = first.iterdir()
    assert "not-for-the-log" not in (run_dir / "manifest.json").read_text()
    archive = tmp_path / "run.tar.gz"
    assert main(["export", str(run_dir), "-o", str(archive)]) == 0
    capsys.readouterr()
    assert main(["run", "--from", str(archive), "--output-dir", str(tmp_path / "second")]) == 0
    assert "the bundle's command had secrets redacted" in capsys.readouterr().err
