"""The adaptive limit on requests in flight (AIMD on 429, the server's Retry-After shared by every
request, sends paced at the admitted rate): its state on a fake clock, the order it lets waiting
requests go, and a judged run against a server that admits R requests a second losing no judgement."""
from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest
from stub_openai import StubServer, TokenBucket, completion, rate_limited

from eval_anything.datamodel import GenerationConfig, Part, Request
from eval_anything.models import ModelSpec, resolve_spec
from eval_anything.models.base import BackendError
from eval_anything.models.openai_api import OpenAIModel
from eval_anything.models.rate_limit import (PROBE_GAIN, RATE_WINDOW, SEARCH_GAIN, AdaptiveConcurrency,
                                             AdaptiveLimiter, Ticket)
from eval_anything.rundir import SampleLog
from eval_anything.runner import evaluate
from eval_anything.settings import JudgeSettings, RunSettings
from eval_anything.tasks import Catalog


def test_halved_once_per_round_paused_for_retry_after_paced_and_grown_back_to_the_ceiling() -> None:
    state = AdaptiveConcurrency(8)
    round_one = [state.start(0.0) for _ in range(8)]
    assert state.wait(0.0) is None  # full
    state.rate_limited(round_one[0], now=0.01, retry_after=0.5)
    assert state.allowed == 4 and state.wait(0.02) == pytest.approx(0.49)  # nobody goes during the pause
    state.rate_limited(round_one[1], now=0.02, retry_after=0.5)  # sent before the cut: no second cut
    assert state.allowed == 4 and state.resume_at == pytest.approx(0.52)
    state.failed()  # a 5xx: the limit stays
    for ticket in round_one[3:]:
        state.succeeded(ticket, now=0.2)  # each took 0.2 s
    assert state.in_flight == 0 and state.allowed == 5 and state.wait(0.6) == 0.0

    # refused once, sends are paced: one every latency / limit while the admitted rate is unknown,
    # so that a pause's end lets one go, not five
    first = state.start(0.6)
    assert state.wait(0.6) == pytest.approx(0.2 / 5) and state.wait(0.6 + 0.2 / 5) == 0.0

    state.rate_limited(first, now=0.61, retry_after=None)  # sent after the cut: halved again; no pause
    assert state.allowed == 2 and state.wait(0.7) == 0.0
    for now in (0.7, 0.8, 0.9):
        state.rate_limited(state.start(now), now=now + 0.01, retry_after=3600.0)
    assert state.allowed == 1 and state.limit == 1.0  # never below one in flight
    assert state.resume_at == pytest.approx(0.91 + state.max_pause)  # an hour is taken as the cap
    ticket = state.start(100.0)
    assert ticket.limit == 1
    limits = []
    for i in range(60):
        state.succeeded(ticket, now=100.2 + i)
        ticket = state.start(100.2 + i)
        limits.append(state.limit)
    assert limits == sorted(limits) and max(limits) == 8.0  # back to the ceiling, never past it
    assert limits.index(8.0) <= 40  # about one more per round of successes: 1 + 2 + ... + 7 = 28


def test_paced_at_the_admitted_rate_cut_no_lower_than_that_rate_needs_and_a_silent_server_counts() -> None:
    state = AdaptiveConcurrency(16)
    for i in range(RATE_WINDOW):  # a server admitting 20 a second, 0.2 s each: 4 in flight
        state.succeeded(state.start(i / 20), now=i / 20 + 0.2)
    assert state.admitted_rate() == pytest.approx(20.0)
    state.rate_limited(state.start(1.6), now=1.61, retry_after=0.02)
    # 16 halved would be 8; the floor is what 20 a second x 1.1 keeps in flight (4.4), and one more
    assert state.allowed == 8 and state.floor() == 6.0
    for now in (1.7, 1.8, 1.9):  # each sent after the latest cut: halved again, down to the floor
        state.rate_limited(state.start(now), now=now + 0.01, retry_after=None)
    assert state.allowed == 6

    # the refused request's turn is when the server said, not a paced interval after it
    state.rate_limited(state.start(2.0), now=2.001, retry_after=0.01)
    assert state.wait(2.005) == pytest.approx(0.006) and state.wait(2.011) == 0.0
    interval = 1 / (PROBE_GAIN * 20)
    state.start(2.011)  # sends then go a little faster than the server has been admitting
    assert state.wait(2.011) == pytest.approx(interval)
    late = 2.011 + interval + 0.004  # the loop let the next one go 4 ms late
    state.start(late)
    assert state.next_send == pytest.approx(2.011 + 2 * interval)  # its lateness is not lost to the rate

    quiet = AdaptiveConcurrency(16)  # refused once, long ago: the rate it admits is its own pacing's
    quiet.rate_limited(quiet.start(0.0), now=0.0, retry_after=None)
    for i in range(RATE_WINDOW):
        quiet.succeeded(quiet.start(1 + i / 10), now=1.2 + i / 10)
    assert quiet.interval() == pytest.approx(1 / (SEARCH_GAIN * 10))  # so it searches for more, faster

    last = state.admitted_at
    assert not state.starved(last + state.patience - 1)
    assert state.starved(last + state.patience + 1)  # nothing admitted for a minute: down, not busy
    state.succeeded(Ticket(last + state.patience, 6), now=last + state.patience + 0.2)
    assert not state.starved(last + state.patience + 1)


def test_a_refused_request_goes_before_new_ones_when_a_slot_opens() -> None:
    async def scenario() -> list[str]:
        limiter = AdaptiveLimiter(1, clock=lambda: 0.0)
        order: list[str] = []
        first = await limiter.acquire()

        async def request(name: str, retrying: bool) -> None:
            ticket = await limiter.acquire(retrying)
            order.append(name)
            await limiter.succeeded(ticket)

        new = asyncio.create_task(request("new", False))
        await asyncio.sleep(0)  # the new request waits first
        refused = asyncio.create_task(request("refused", True))
        await asyncio.sleep(0)
        await limiter.rate_limited(first, retry_after=None)  # frees the slot
        await asyncio.gather(new, refused)
        return order

    assert asyncio.run(scenario()) == ["refused", "new"]


N, RATE = 60, 20.0


def test_a_judged_run_against_a_rate_limited_server_loses_no_judgement(tmp_path: Path) -> None:
    rows = [{"id": f"q{i:03d}", "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(N)]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "judged.yaml").write_text(textwrap.dedent("""
        name: judged_rate
        version: 1
        dataset: {path: items.jsonl}
        input: [{text: question}]
        target: answer
        scorers: [judge_rating]
    """))
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": r["id"], "text": f"It is {r['answer']}."}) + "\n" for r in rows))

    bucket = TokenBucket(RATE, burst=RATE)  # R a second, one second's worth at once
    reply = lambda call, body, auth: (200, {}, completion("Explanation: fine.\nRating: [[7]]", 40, 6), 0.1)
    with StubServer(rate_limited(reply, bucket)) as server:
        spec = ModelSpec("openai", "stub-judge", {"base_url": server.base_url, "concurrency": 16})
        report = evaluate(resolve_spec(str(predictions)), Catalog([tmp_path]).resolve("judged_rate"),
                          RunSettings(output_dir=tmp_path / "runs", judge=JudgeSettings(spec, cache_path=None)))
        calls = server.calls
    task = report.results["tasks"]["judged_rate"]
    assert bucket.refused > 0 and calls == N + bucket.refused  # the server did refuse; each refusal was retried
    assert task["judge"]["errors"] == 0 and task["metrics"]["judge_rating"]["n"] == N  # every judgement made
    assert task["metrics"]["judge_rating"]["value"] == 7.0
    records = list(SampleLog(report.run_dir / "samples" / "judged_rate.jsonl"))
    assert sorted(r["id"] for r in records) == [r["id"] for r in rows]  # every reply present, once
    assert all(r["scores"]["judge_rating"]["details"]["judge"][0]["raw"] == ["Explanation: fine.\nRating: [[7]]"]
               for r in records)


def test_a_used_up_quota_stops_the_run_instead_of_being_waited_out() -> None:
    quota = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota",
                       "code": "insufficient_quota"}}
    request = Request(task="t", sample_id="s", variant=0, parts=(Part.of_text("hi"),),
                      generation=GenerationConfig(max_new_tokens=4))
    with StubServer(lambda call, body, auth: (429, {"Retry-After": "1"}, quota, 0.0)) as server:
        model = OpenAIModel(ModelSpec("openai", "stub", {"base_url": server.base_url}))
        try:
            with pytest.raises(BackendError, match="quota"):
                model.generate([request])
        finally:
            model.close()
        assert server.calls == 1  # not retried, not waited out
