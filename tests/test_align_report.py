"""`eval-anything align report DIR`: every stage's metrics.jsonl under an llf work_dir, plotted into one page."""
import json

from eval_anything.align.metrics import MetricsFile, read_metrics


def test_report_plots_every_stage_and_says_when_pngs_cannot_be_made(tmp_path, capsys):
    from eval_anything.align.report import NO_MATPLOTLIB
    from eval_anything.cli import main

    work = tmp_path / "work"
    for stage, rows in {"dpo": [{"loss": 0.69, "rewards/margins": 0.0}, {"loss": 0.5, "rewards/margins": 0.4}],
                        "ppo": [{"score": -1.0, "kl": 0.0, "entropy": 3.0}, {"score": 0.5, "kl": 0.2, "entropy": 2.5},
                                {"score": 1.0, "kl": 0.3, "entropy": 2.0}]}.items():
        metrics = MetricsFile(work / stage)
        for step, row in enumerate(rows, 1):
            metrics.write(step, {**row, "note": "not a number"})
        metrics.write(1, {"loss": 99.0})  # a resumed run re-logging a step: kept once
        (work / stage / "manifest.json").write_text(json.dumps({"stage": stage}))
    assert [r["step"] for r in read_metrics(work / "dpo" / "metrics.jsonl")] == [1, 2]

    assert main(["align", "report", str(work)]) == 0
    out, err = capsys.readouterr()
    page = (work / "report" / "index.html").read_text()
    assert f"report: {work / 'report' / 'index.html'} (5 plots)" in out
    assert page.count("<svg") == 5 and "dpo (dpo)" in page and "rewards/margins" in page and "note" not in page
    assert "last 1 at step 3" in page  # ppo's score
    pngs = sorted(p.name for p in (work / "report").glob("*.png"))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert NO_MATPLOTLIB in err and not pngs
    else:
        assert len(pngs) == 5 and "ppo-ppo--score.png" in pngs

    assert main(["align", "report", str(tmp_path / "empty")]) == 2
    assert "is not a folder" in capsys.readouterr().err
