"""The `openai` backend: against a real `transformers serve`, and against a fault-injecting stub server."""
from __future__ import annotations

import base64
import email.utils
import importlib.util
import io
import json
import logging
import socket
import threading
import time
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from eval_anything.datamodel import GenerationConfig, Modality, Part, Request
from eval_anything.models.base import ModelSpec
from eval_anything.models.base import BackendError
from eval_anything.models.openai_api import PREFETCH, OpenAIModel, RetryPolicy, _env_proxy, _retry_after
from servers import free_port, transformers_serve
from stub_openai import Reply, StubServer, completion, echo, user_text

FAKE_KEY = "sk-planted-NOT-A-REAL-KEY-7f3a9c1e5b"
KEY_ENV = "EVAL_ANYTHING_TEST_OPENAI_KEY"


def make_request(text: str, *media: Part, sample_id: str | None = None, system: str | None = None,
                 **generation: Any) -> Request:
    generation.setdefault("max_new_tokens", 12)
    return Request(task="t", sample_id=sample_id or text, variant=0, parts=(*media, Part.of_text(text)),
                   generation=GenerationConfig(**generation), system=system)


def openai_model(base_url: str, reference: str = "stub-model", **args: Any) -> OpenAIModel:
    return OpenAIModel(ModelSpec("openai", reference, {"base_url": base_url, **args}))


# --------------------------------------------------------------------------- fault-injecting stub server

@contextmanager
def stub_model(reply: Callable[[int, dict[str, Any], str], Reply], **args: Any) -> Iterator[tuple[StubServer, OpenAIModel]]:
    with StubServer(reply) as server:
        model = openai_model(server.base_url, **args)
        try:
            yield server, model
        finally:
            model.close()


def fail_first(k: int, status: int, headers: dict[str, str] | None = None) -> Callable[[int, dict[str, Any], str], Reply]:
    def reply(call: int, body: dict[str, Any], auth: str) -> Reply:
        if call <= k:
            return status, headers or {}, {"error": {"message": f"injected {status} #{call}", "type": "server_error"}}, 0.0
        return 200, {}, completion("recovered"), 0.0

    return reply


# --------------------------------------------------------------------------- retries and failures

def test_retries_5xx_until_success() -> None:
    with stub_model(fail_first(2, 500), max_retries=5) as (server, model):
        [output] = model.generate([make_request("hi")])
    assert output.error is None and output.text == "recovered"
    assert server.calls == 3  # k failures + 1 success, no extra calls


def test_429_honours_retry_after() -> None:
    # Retry-After 0.05 s: three retries take well under the SDK's own backoff (>= 0.375+0.75+1.5 s).
    with stub_model(fail_first(3, 429, {"Retry-After": "0.05"}), max_retries=5) as (server, model):
        started = time.perf_counter()
        [output] = model.generate([make_request("hi")])
        elapsed = time.perf_counter() - started
    assert output.error is None and output.text == "recovered"
    assert server.calls == 4
    assert elapsed < 2.0


def test_persistent_errors_fail_one_request_only() -> None:
    def reply(call: int, body: dict[str, Any], auth: str) -> Reply:
        if "BROKEN" in user_text(body):
            return 500, {"Retry-After": "0.01"}, {"error": {"message": "always broken"}}, 0.0
        return 200, {}, completion("echo: " + user_text(body)), 0.0

    requests = [make_request("one"), make_request("BROKEN two"), make_request("three")]
    with stub_model(reply, max_retries=2) as (server, model):
        outputs = model.generate(requests)
    assert [o.text for o in outputs] == ["echo: one", "", "echo: three"]
    assert outputs[0].error is None and outputs[2].error is None
    assert outputs[1].error is not None
    assert outputs[1].error.startswith("InternalServerError") and "500" in outputs[1].error
    assert "always broken" in outputs[1].error
    assert server.calls == 2 + 3  # the broken one: 1 try + 2 retries


def test_client_errors_are_not_retried_and_refusals_stop_the_run() -> None:
    with stub_model(fail_first(1, 400), max_retries=3) as (server, model):
        [output] = model.generate([make_request("hi")])
    assert output.error is not None and output.error.startswith("BadRequestError") and "injected 400" in output.error
    assert server.calls == 1
    for status, name in ((403, "PermissionDeniedError"), (404, "NotFoundError")):
        with stub_model(fail_first(1, status), max_retries=3) as (server, model):
            with pytest.raises(BackendError, match=name):
                model.generate([make_request("hi")])
        assert server.calls == 1


def test_timeouts_are_retried() -> None:
    slow_first = lambda call, body, auth: (200, {}, completion(f"call {call}"), 1.0 if call == 1 else 0.0)
    with stub_model(slow_first, max_retries=1, timeout=0.3) as (server, model):
        [output] = model.generate([make_request("hi")])
    assert output.error is None and output.text == "call 2"
    with stub_model(slow_first, max_retries=0, timeout=0.3) as (server, model):
        [output] = model.generate([make_request("hi")])
    assert output.error is not None and output.error.startswith("APITimeoutError")


def test_retry_after_forms_and_the_backoff_schedule() -> None:
    assert _retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert _retry_after({"retry-after": "3"}) == 3.0
    in_half_a_minute = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (_retry_after({"retry-after": in_half_a_minute}) or 0) <= 30
    assert _retry_after({"retry-after": "soon"}) is None and _retry_after({}) is None
    policy = RetryPolicy(max_retries=5)
    assert policy.delay(0, 0.05) == 0.05
    for retry, ceiling in ((0, 0.5), (1, 1.0), (2, 2.0), (6, 8.0)):
        assert 0.75 * ceiling <= policy.delay(retry, None) <= ceiling  # doubling, capped, up to 25 % jitter
    assert policy.delay(0, 3600.0) <= 0.5  # an hour's Retry-After: the schedule instead


def test_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert _env_proxy("https://api.example.invalid/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert _env_proxy("https://api.example.invalid/v1") == "http://proxy.invalid:3128"
    assert _env_proxy("http://api.example.invalid/v1") is None
    assert _env_proxy("https://127.0.0.1:8000/v1") is None


def test_unreachable_server_fails_requests() -> None:
    model = openai_model(f"http://127.0.0.1:{free_port()}/v1", max_retries=0, timeout=5)
    try:
        [output] = model.generate([make_request("hi")])
    finally:
        model.close()
    assert output.error is not None and output.error.startswith("APIConnectionError")


# --------------------------------------------------------------------------- concurrency and streaming

def test_concurrency_limit_is_never_exceeded() -> None:
    requests = [make_request(f"q{i}") for i in range(12)]
    with stub_model(echo(delay=0.2), concurrency=3) as (server, model):
        started = time.perf_counter()
        outputs = model.generate(requests)
        elapsed = time.perf_counter() - started
    assert [o.text for o in outputs] == [f"echo: q{i}" for i in range(12)]
    assert server.max_in_flight == 3
    assert elapsed >= 4 * 0.2 - 0.05  # 12 requests, 3 at a time
    assert model.generated == 0  # generate() leaves counting to the caller, as in the base class


def test_stream_yields_as_completed_and_pulls_lazily() -> None:
    def reply(call: int, body: dict[str, Any], auth: str) -> Reply:
        index = int(user_text(body)[1:])
        return 200, {}, completion(f"done {index}"), 0.3 if index % 4 == 0 else 0.02  # every 4th is slow

    pulled = 0

    def source() -> Iterator[Request]:
        nonlocal pulled
        for i in range(10):
            pulled += 1
            yield make_request(f"q{i}")

    seen: list[str] = []
    with stub_model(reply, concurrency=2) as (server, model):
        for request, output in model.stream(source()):
            seen.append(request.sample_id)
            assert output.text == "done " + request.sample_id[1:]
            assert pulled - len(seen) <= PREFETCH * 2  # never more than PREFETCH x `concurrency` pulled ahead
        assert model.generated == 10
    assert sorted(seen) == sorted(f"q{i}" for i in range(10))
    assert seen != [f"q{i}" for i in range(10)]  # q0 is slow, so others overtake it
    assert server.max_in_flight <= 2  # however many wait on the event loop, `concurrency` are sent


def test_abandoned_stream_leaves_model_usable() -> None:
    with stub_model(echo(delay=0.05), concurrency=2) as (server, model):
        stream = model.stream(make_request(f"q{i}") for i in range(100))
        next(stream)
        stream.close()
        assert server.calls <= 4
        [output] = model.generate([make_request("again")])
        assert output.text == "echo: again"
        model.close()
        [output] = model.generate([make_request("after close")])  # a closed model starts afresh
        assert output.text == "echo: after close"


# --------------------------------------------------------------------------- request mapping

def test_generation_settings_and_local_stop_cut() -> None:
    # The stub ignores `stop`, as some servers do: the backend cuts at the earliest stop string itself.
    reply = lambda call, body, auth: (200, {}, completion("  alpha STOP beta END gamma"), 0.0)
    stops = ("END", "x1", "x2", "x3", "STOP")
    with stub_model(reply) as (server, model):
        [output] = model.generate([make_request("hi", system="Be brief.", max_new_tokens=7, temperature=0.5,
                                                top_p=0.9, seed=7, stop=stops)])
    body = server.bodies[0]
    assert body["model"] == "stub-model"
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (7, 0.5, 0.9, 7)
    assert body["stop"] == list(stops[:4])  # OpenAI takes at most four
    assert output.raw_text == "  alpha STOP beta END gamma"
    assert output.text == "alpha"
    assert output.parts == (Part.of_text("alpha"),)
    assert (output.usage.input_tokens, output.usage.output_tokens) == (5, 3)
    assert output.latency_s > 0
    assert output.metadata["finish_reason"] == "stop"


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown argument.*batchsize.*accepted: base_url, api_key_env, concurrency"):
        openai_model("http://127.0.0.1:1/v1", batchsize=4)
    with pytest.raises(ValueError, match="concurrency"):
        openai_model("http://127.0.0.1:1/v1", concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        openai_model("http://127.0.0.1:1/v1", timeout="soon")


def test_key_from_env_or_placeholder_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match=KEY_ENV):
        openai_model("https://api.example.invalid/v1", api_key_env=KEY_ENV)
    with stub_model(echo(), api_key_env=KEY_ENV) as (server, model):
        model.generate([make_request("hi")])
    assert server.authorizations == ["Bearer EMPTY"]
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    assert openai_model("https://api.example.invalid/v1", api_key_env=KEY_ENV).describe()["api_key_env"] == KEY_ENV


def test_api_key_never_leaks(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    for name in ("eval_anything", "aiohttp", "asyncio", ""):
        caplog.set_level(logging.DEBUG, logger=name)

    def reply(call: int, body: dict[str, Any], auth: str) -> Reply:
        text = user_text(body)
        if "reject" in text:  # a server that quotes the credential back, as some do
            return 401, {}, {"error": {"message": f"Incorrect API key provided: {auth}"}}, 0.0
        if "crash" in text:
            return 500, {"Retry-After": "0.01"}, {"error": {"message": f"upstream said {auth}"}}, 0.0
        return 200, {}, completion(f"ok ({auth})"), 0.0

    texts: list[str] = []
    with stub_model(reply, api_key_env=KEY_ENV, max_retries=1) as (server, model):
        outputs = model.generate([make_request("fine"), make_request("crash me")])
        texts.append(json.dumps(model.describe()))
        with pytest.raises(BackendError, match="AuthenticationError") as refused:
            model.generate([make_request("reject me")])  # a refused key stops the run: every call would fail
        texts.append(str(refused.value))
    assert server.authorizations[0] == f"Bearer {FAKE_KEY}"  # the key is used...
    assert outputs[0].error is None and outputs[0].text.startswith("ok (Bearer ")
    assert outputs[1].error and outputs[1].error.startswith("InternalServerError")
    texts += [json.dumps(o.to_json()) for o in outputs]

    unreachable = OpenAIModel(ModelSpec("openai", "m", {"base_url": f"http://127.0.0.1:{free_port()}/v1",
                                                        "api_key_env": KEY_ENV, "max_retries": 0}))
    texts += [json.dumps(o.to_json()) for o in unreachable.generate([make_request("hi")])]
    texts += [json.dumps(unreachable.describe()), repr(unreachable.__dict__.get("spec"))]
    unreachable.close()
    for bad_args in ({"api_key": FAKE_KEY}, {"my_secret": FAKE_KEY}):
        with pytest.raises(ValueError) as error:
            OpenAIModel(ModelSpec("openai", "m", {"base_url": "http://127.0.0.1:1/v1", **bad_args}))
        texts.append(str(error.value))
    captured = capsys.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    assert any("retrying" in r.getMessage() for r in caplog.records)  # the backend did log, of the 500
    for text in texts:
        assert FAKE_KEY not in text  # ...and is written nowhere


# --------------------------------------------------------------------------- multimodal messages

@pytest.fixture()
def media_files(tmp_path: Path) -> dict[str, Path]:
    import numpy as np
    import soundfile
    from PIL import Image

    image = tmp_path / "red.png"
    Image.new("RGB", (20, 12), (255, 0, 0)).save(image)
    audio = tmp_path / "tone.wav"
    soundfile.write(audio, (0.3 * np.sin(np.linspace(0, 440 * 2 * np.pi, 8000))).astype("float32"), 8000)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    video = tmp_path / "clip.mp4"
    _write_video(video, frames=12)
    return {"image": image, "audio": audio, "corrupt": corrupt, "video": video}


def _write_video(path: Path, frames: int) -> None:
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            array = np.full((32, 32, 3), i * 20, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _decode_data_uri(url: str) -> Any:
    from PIL import Image

    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))


def test_multimodal_content_parts(media_files: dict[str, Path]) -> None:
    import soundfile

    model = openai_model("http://127.0.0.1:1/v1", video_frames=4)
    request = make_request("What is shown and heard?", Part.of_file(Modality.IMAGE, media_files["image"]),
                           Part.of_file(Modality.AUDIO, media_files["audio"]), system="sys")
    messages, notes = model.build_messages(request)
    assert messages[0] == {"role": "system", "content": "sys"}
    content = messages[1]["content"]
    assert [p["type"] for p in content] == ["image_url", "input_audio", "text"]
    image = _decode_data_uri(content[0]["image_url"]["url"])
    assert image.size == (20, 12) and image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert content[1]["input_audio"]["format"] == "wav"
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(content[1]["input_audio"]["data"])))
    assert rate == 16000 and len(samples) == 16000  # 1 s at 8 kHz, resampled
    assert content[2] == {"type": "text", "text": "What is shown and heard?"}
    assert notes == {}

    messages, notes = model.build_messages(make_request("Describe.", Part.of_file(Modality.VIDEO, media_files["video"])))
    content = messages[-1]["content"]
    assert [p["type"] for p in content] == ["image_url"] * 4 + ["text"]
    assert _decode_data_uri(content[0]["image_url"]["url"]).size == (32, 32)
    assert notes == {"video_as_frames": 4}


def test_media_failures_are_per_request(media_files: dict[str, Path]) -> None:
    requests = [make_request("good", Part.of_file(Modality.IMAGE, media_files["image"])),
                make_request("bad", Part.of_file(Modality.IMAGE, media_files["corrupt"])),
                make_request("missing", Part.of_file(Modality.AUDIO, media_files["image"].with_name("nope.wav"))),
                make_request("video", Part.of_file(Modality.VIDEO, media_files["video"]))]
    with stub_model(echo(), video_frames=3) as (server, model):
        outputs = model.generate(requests)
    assert outputs[0].error is None and outputs[0].text == "echo: good"
    assert outputs[1].error is not None and outputs[1].error.startswith("MediaError")
    assert str(media_files["corrupt"]) in outputs[1].error
    assert outputs[2].error is not None and "nope.wav" in outputs[2].error
    assert outputs[3].error is None and outputs[3].metadata["video_as_frames"] == 3
    assert server.calls == 2  # the broken requests never reached the server
    sent = [p["type"] for p in server.bodies[-1]["messages"][-1]["content"]]
    assert sorted(sent) == ["image_url"] * 3 + ["text"]


# --------------------------------------------------------------------------- real `transformers serve`

needs_serving = pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None,
    reason="`transformers serve` needs transformers[serving] (fastapi, uvicorn)")


@pytest.fixture(scope="module")
def smollm2_server(smollm2_dir: Path) -> Iterator[str]:
    with transformers_serve(smollm2_dir) as server:
        yield server.base_url + "/v1"


@needs_serving
def test_transformers_serve_text(smollm2_server: str, smollm2_dir: Path) -> None:
    model = openai_model(smollm2_server, reference=str(smollm2_dir), concurrency=2)
    questions = ["What is the capital of France?", "What is the capital of Italy?", "Name one color."]
    requests = [make_request(q, max_new_tokens=8) for q in questions]
    requests.append(make_request(questions[0], sample_id="stopped", max_new_tokens=8, stop=("Paris",)))
    try:
        outputs = model.generate(requests)
    finally:
        model.close()
    for request, output in zip(requests, outputs):
        assert output.error is None, output.error
        assert output.text, request.sample_id
        assert output.usage.input_tokens > 0 and 0 < output.usage.output_tokens <= 8
        assert output.latency_s > 0
    # Order preserved. (For Italy's capital the 135M model answers "Il Coriobella, Italy.")
    assert "Paris" in outputs[0].text and "Italy" in outputs[1].text
    assert "Paris" not in outputs[3].text  # cut at the stop string
    assert outputs[3].text == outputs[0].text.split("Paris")[0].strip()


@pytest.fixture(scope="module")
def llava_server(tiny_llava_dir: Path) -> Iterator[str]:
    with transformers_serve(tiny_llava_dir) as server:
        yield server.base_url + "/v1"


@needs_serving
def test_transformers_serve_receives_image(llava_server: str, tiny_llava_dir: Path,
                                           media_files: dict[str, Path]) -> None:
    from tiny_models import LLAVA_IMAGE_TOKENS

    model = openai_model(llava_server, reference=str(tiny_llava_dir))
    image = Part.of_file(Modality.IMAGE, media_files["image"])
    try:
        with_image, text_only = model.generate([make_request("Describe.", image, max_new_tokens=4),
                                                make_request("Describe.", max_new_tokens=4)])
    finally:
        model.close()
    assert with_image.error is None, with_image.error
    assert text_only.error is None, text_only.error
    # The <image> placeholder became LLAVA_IMAGE_TOKENS image tokens in the prompt the model saw.
    assert with_image.usage.input_tokens - text_only.usage.input_tokens == LLAVA_IMAGE_TOKENS


@needs_serving
def test_cli_run_through_an_openai_compatible_server(smollm2_server: str, smollm2_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "eval_anything", "run", "--model", f"openai:{smollm2_dir}",
         "--model-args", f"base_url={smollm2_server},concurrency=2", "--tasks", "arith_mini,tones_count",
         "--limit", "4", "--max-new-tokens", "8", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (run_dir,) = tmp_path.iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    arith = results["tasks"]["arith_mini"]
    assert arith["status"] == "complete" and arith["counts"] == {"samples": 4, "scored": 4, "errored": 0}
    assert arith["usage"]["output_tokens"] > 0
    # the endpoint takes audio, so the audio task ran too; the text-only model behind it still answered
    assert results["tasks"]["tones_count"]["status"] == "complete"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["loaded"]["base_url"] == smollm2_server
