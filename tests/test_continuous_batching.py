"""The hf backend's continuous batching (`batching=continuous`, the default) against its static
batches: same greedy answers and token counts, stop strings, failures recorded, media requests
routed to static batches in the same stream."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from eval_anything.datamodel import GenerationConfig, Modality, Part, Request
from eval_anything.models.base import ModelSpec
from eval_anything.models.continuous_batching import PAGE_SIZE, paged_cache_config
from eval_anything.models.hf import HFModel
from tiny_models import LLAVA_IMAGE_TOKENS

PROMPTS = (
    "What is 2 + 3? Answer with the number only.",
    "Name three colors, one per line.",
    "What is the capital of France?",
    "Write one sentence about the sea, mentioning waves, sand and the summer sun.",
    "Count from 1 to 5.",
)
LINE = GenerationConfig(max_new_tokens=16, stop=("\n",))
FREE = GenerationConfig(max_new_tokens=12)


def text_request(prompt: str, sample_id: str, generation: GenerationConfig = LINE) -> Request:
    return Request("test", sample_id, 0, (Part.of_text(prompt),), generation)


def streamed(model: HFModel, requests: list[Request]) -> list:
    """Outputs in the order of `requests` (a stream yields them as they finish)."""
    by_id = {request.sample_id: output for request, output in model.stream(requests)}
    assert len(by_id) == len(requests)
    return [by_id[r.sample_id] for r in requests]


@pytest.fixture(scope="module")
def continuous(smollm2_dir: Path) -> HFModel:
    return HFModel(ModelSpec("hf", str(smollm2_dir), {"batch_size": 3}))


@pytest.fixture(scope="module")
def static(smollm2_dir: Path) -> HFModel:
    return HFModel(ModelSpec("hf", str(smollm2_dir), {"batch_size": 3, "batching": "static"}))


def test_continuous_and_static_give_the_same_greedy_answers_and_counts(continuous: HFModel, static: HFModel) -> None:
    requests = [text_request(p, f"line-{i}") for i, p in enumerate(PROMPTS)]
    requests += [text_request(p, f"free-{i}", FREE) for i, p in enumerate(PROMPTS[:2])]
    before = continuous.generated
    fast, slow = streamed(continuous, requests), streamed(static, requests)
    for request, a, b in zip(requests, fast, slow):
        assert a.error is None and b.error is None
        assert (a.text, a.raw_text, a.usage) == (b.text, b.raw_text, b.usage)
        assert a.text and a.latency_s >= 0
        assert "\n" not in a.text or not request.generation.stop
    assert continuous.generated - before == len(requests)
    assert continuous.describe()["batching"] == "continuous"
    assert continuous.describe()["requests_by_batching"]["continuous"] >= len(requests)
    assert static.describe()["batching"] == "static"
    assert "continuous" not in static.describe()["requests_by_batching"]


def test_static_counts_tokens_up_to_the_stop_not_the_padding(static: HFModel) -> None:
    requests = [text_request(p, f"s{i}") for i, p in enumerate(PROMPTS[:3])]
    together = static.generate(requests)
    alone = [static.generate([r])[0] for r in requests]
    assert [o.usage.output_tokens for o in together] == [o.usage.output_tokens for o in alone]


def test_a_stop_spanning_tokens_is_cut_and_counted_to_its_end(continuous: HFModel, static: HFModel) -> None:
    stop = GenerationConfig(max_new_tokens=16, stop=("France is",))
    request = text_request("What is the capital of France?", "paris", stop)
    [fast], [slow] = streamed(continuous, [request]), streamed(static, [request])
    assert fast.text == slow.text == "The capital of"
    assert fast.usage == slow.usage
    assert continuous.tokenizer.decode(continuous.tokenizer(fast.raw_text).input_ids).endswith("France is")


class _Result:
    def __init__(self, request_id: str, error: str) -> None:
        self.request_id, self.error, self.generated_tokens = request_id, error, []

    def is_finished(self) -> bool:
        return True


class _BrokenManager:
    """Fails request 0 and loses the others, then stops, as a crashed generation loop does."""

    def __init__(self, error: str = "RuntimeError: simulated", fail_all: bool = False) -> None:
        self.results = [_Result("0", error)]
        self.error, self.fail_all = error, fail_all
        self.stopped = False

    def add_request(self, input_ids, request_id, **kwargs) -> str:
        if self.fail_all and request_id != "0":
            self.results.append(_Result(request_id, self.error))
        return request_id

    def get_result(self, timeout=None):
        return self.results.pop() if self.results else None

    def is_running(self) -> bool:
        return False

    def stop(self, **kwargs) -> None:
        self.stopped = True

    def destroy(self) -> None:
        pass


def test_failed_and_missing_results_become_recorded_errors(continuous: HFModel, monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    manager = _BrokenManager()
    monkeypatch.setattr(continuous, "_start_manager", lambda cache, max_new_tokens: manager)
    failed, lost = streamed(continuous, [text_request("a", "failed"), text_request("b", "lost")])
    assert failed.error is not None and "simulated" in failed.error and failed.text == ""
    assert lost.error is not None and "no result" in lost.error
    assert manager.stopped


def test_a_model_transformers_cannot_batch_continuously_falls_back_to_static(
        continuous: HFModel, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(cache, max_new_tokens):
        raise ValueError("Implementation flex_attention is not supported for continuous batching.")

    monkeypatch.setattr(continuous, "_start_manager", refuse)
    monkeypatch.setattr(continuous, "continuous_unsupported", None)
    before = continuous.requests_by_batching["static"]
    [output] = streamed(continuous, [text_request("What is the capital of France?", "fallback", FREE)])
    assert output.error is None and output.text
    assert continuous.requests_by_batching["static"] == before + 1
    assert "flex_attention" in continuous.describe()["continuous_unsupported"]


@dataclasses.dataclass
class _BlockSizeConfig:
    """ContinuousBatchingConfig's sizing fields as transformers 5.17 names them (page_size from 5.18 on)."""
    block_size: int = 256
    num_blocks: int | None = None
    max_batch_tokens: int | None = None
    max_requests_per_batch: int | None = None


@dataclasses.dataclass
class _UnknownPageConfig:
    tokens_per_page: int = 256
    num_blocks: int | None = None
    max_batch_tokens: int | None = None
    max_requests_per_batch: int | None = None


def test_the_page_size_goes_under_the_name_the_config_takes() -> None:
    inputs, max_new_tokens, in_flight = [[1] * 40, [2] * 10, [3] * 25], 30, 2
    installed = paged_cache_config(inputs, max_new_tokens, in_flight)
    older = paged_cache_config(inputs, max_new_tokens, in_flight, _BlockSizeConfig)
    pages = {name: getattr(installed, name) for name in ("page_size", "block_size") if hasattr(installed, name)}
    # transformers 5.18 on: page_size, with block_size a deprecated alias left unset; 5.17: block_size alone
    assert pages in ({"page_size": PAGE_SIZE, "block_size": None}, {"block_size": PAGE_SIZE})
    assert older.block_size == PAGE_SIZE
    assert (older.num_blocks, older.max_batch_tokens, older.max_requests_per_batch) == \
        (installed.num_blocks, installed.max_batch_tokens, installed.max_requests_per_batch)
    assert older.num_blocks * PAGE_SIZE >= in_flight * (40 + max_new_tokens), "the longest, in flight, fit"
    assert older.max_requests_per_batch == in_flight and older.max_batch_tokens >= 40
    with pytest.raises(TypeError, match="none of page_size, block_size .* batching=static"):
        paged_cache_config(inputs, max_new_tokens, in_flight, _UnknownPageConfig)


def test_a_cache_config_transformers_refuses_is_an_error_not_static_batching(
        continuous: HFModel, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.generation import configuration_utils

    monkeypatch.setattr(configuration_utils, "ContinuousBatchingConfig", _UnknownPageConfig)
    monkeypatch.setattr(continuous, "continuous_unsupported", None)
    before = dict(continuous.requests_by_batching)
    with pytest.raises(TypeError, match="_UnknownPageConfig takes none of page_size, block_size"):
        streamed(continuous, [text_request("What is the capital of France?", "refused", FREE)])
    assert continuous.continuous_unsupported is None
    assert dict(continuous.requests_by_batching) == before


def test_out_of_memory_with_auto_batch_size_retries_with_fewer_in_flight(
        continuous: HFModel, monkeypatch: pytest.MonkeyPatch) -> None:
    start_manager = continuous._start_manager
    started: list[int] = []

    def first_one_runs_out_of_memory(cache, max_new_tokens):
        started.append(cache.max_requests_per_batch)
        if len(started) == 1:
            return _BrokenManager("CUDA out of memory (simulated)", fail_all=True)
        return start_manager(cache, max_new_tokens)

    monkeypatch.setattr(continuous, "_start_manager", first_one_runs_out_of_memory)
    monkeypatch.setattr(continuous, "_auto_batch", True)
    monkeypatch.setattr(continuous, "_batch_size", 4)
    requests = [text_request(p, f"m{i}", FREE) for i, p in enumerate(PROMPTS[:3])]
    outputs = streamed(continuous, requests)
    assert started == [3, 1]  # in flight: the 3 requests (under batch 4), then the halved batch
    assert all(o.error is None and o.text for o in outputs)


def test_sampled_requests_go_in_static_batches_and_repeat_with_their_seed(continuous: HFModel) -> None:
    sampled = GenerationConfig(max_new_tokens=8, temperature=1.0, seed=7)
    requests = [text_request(p, f"t{i}", sampled) for i, p in enumerate(PROMPTS[:2])]
    before = dict(continuous.requests_by_batching)
    first, second = streamed(continuous, requests), streamed(continuous, requests)
    assert [o.text for o in first] == [o.text for o in second]
    assert continuous.requests_by_batching["static"] - before.get("static", 0) == 4
    assert continuous.requests_by_batching["continuous"] == before.get("continuous", 0)


def test_text_and_image_requests_in_one_stream(tiny_llava_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image)
    short = GenerationConfig(max_new_tokens=4)
    requests = [text_request("Say hello.", "text", short),
                Request("test", "image", 0, (Part.of_file(Modality.IMAGE, image), Part.of_text("What is this?")),
                        short)]
    model = HFModel(ModelSpec("hf", str(tiny_llava_dir), {}))
    text, picture = streamed(model, requests)
    assert text.error is None and picture.error is None
    assert picture.usage.input_tokens > LLAVA_IMAGE_TOKENS and picture.usage.output_tokens >= 1
    assert model.requests_by_batching == {"continuous": 1, "static": 1}
    static_model = HFModel(ModelSpec("hf", str(tiny_llava_dir), {"batching": "static"}))
    [alone] = static_model.generate(requests[:1])
    assert (text.text, text.usage) == (alone.text, alone.usage)


def test_one_out_of_memory_rule_for_both_batchings() -> None:
    from eval_anything.models.out_of_memory import worth_retrying

    assert worth_retrying(True, 4, 3) and not worth_retrying(False, 4, 3)
    assert not worth_retrying(True, 4, 1), "a request alone would run out of memory again"
    assert not worth_retrying(True, 1, 3), "one at a time cannot get smaller"
