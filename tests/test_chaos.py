"""A few random faults of every kind (SIGKILL, SIGTERM, a full disk, a second process, a judge or
model answering 429, a dead data-parallel rank) while a judged run generates and while it judges,
then the same command (tests/chaos.py; many more rounds: benchmarks/chaos.py)."""
from chaos import FAULTS, Chaos, Stub, check, clean_run, run_chaos, write_task


def test_random_faults_then_the_same_command_equal_a_clean_run(tmp_path):
    with Stub() as stub:
        chaos = Chaos(stub, write_task(tmp_path / "tasks", items=32), tmp_path / "chaos", items=32)
        clean = clean_run(chaos, tmp_path / "clean")
        log = run_chaos(chaos, rounds=len(FAULTS), seed=18)
        check(chaos, clean)
    assert sorted(r["fault"] for r in log) == sorted(FAULTS)
    assert {r["phase"] for r in log} <= {"generation", "judging"}
