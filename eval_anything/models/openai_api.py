"""`openai:MODEL` — any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, `transformers serve`...).

Arguments (all optional):
  base_url     the API root, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL, else OpenAI's)
  api_key_env  the environment variable holding the key (default OPENAI_API_KEY). The key itself is
               never an argument, so it never reaches a manifest. A loopback base_url without the
               variable set gets the placeholder key "EMPTY".
  concurrency  requests in flight at once (default 8)
  max_retries  retries of 408/409/429/5xx/connection errors/timeouts, with exponential backoff and
               jitter, or after the server's Retry-After (default 5); a 429 lowers the concurrency
               and paces sends instead, and counts only once the server has admitted nothing for
               a minute (models/rate_limit.py)
  timeout      seconds per HTTP attempt (default 120)
  video_frames frames sampled from a video and sent as images (default 8)
  modalities   what the served model takes, joined by + (default text+image+audio+video); a judge
               declared text+image is refused audio before its first call where the protocol is strict

Requests run on an asyncio event loop in a background thread; `stream` pulls requests lazily and
keeps up to `concurrency` of them in flight, fewer while the server answers 429 (AIMD: halved on a
429, every request held back for its Retry-After, grown back by one per round of successes). A request whose media cannot be decoded, or whose
API call still fails after the retries, becomes a failed output; the run goes on. A refused key,
a forbidden or unknown model (401/403/404) stops the run: every request would fail alike.

The HTTP client is aiohttp, not the openai SDK: at 32 requests in flight the SDK's (and httpx's)
CPU per request kept a 2-core machine from keeping the server busy (benchmarks/judge_throughput.py).
Proxies come from HTTP(S)_PROXY / NO_PROXY, as with the SDK. Error class names follow the SDK's.
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import email.utils
import ipaddress
import json
import logging
import os
import queue
import random
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import urlsplit, urlunsplit

from eval_anything.datamodel import GenerationConfig, Modality, ModelOutput, Part, Request, Usage
from eval_anything.errors import UsageError
from eval_anything.media import image_data_uri, load_audio, load_image, load_video_frames, to_wav_bytes
from eval_anything.models.base import BackendError, Model, ModelSpec, cut_at_stop
from eval_anything.models.rate_limit import AdaptiveLimiter
from eval_anything.redaction import REDACTED

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "EMPTY"
MAX_API_STOPS = 4
AUDIO_RATE = 16000
MAX_REASON_CHARS = 2000
_MIN_SCRUBBED_KEY = 8  # shorter "keys" (placeholders such as "x") are not worth rewriting outputs for

DEFAULTS: dict[str, Any] = {
    "base_url": None,
    "api_key_env": "OPENAI_API_KEY",
    "concurrency": 8,
    "max_retries": 5,
    "timeout": 120.0,
    "video_frames": 8,
    "modalities": "text+image+audio+video",
}

K = TypeVar("K")
PREFETCH = 2
"""Requests handed to the event loop per slot of `concurrency` (see `_completions`)."""
_log = logging.getLogger(__name__)


# ------------------------------------------------------------------ errors, named as the openai SDK names them

class APIError(Exception):
    retryable = False
    retry_after: float | None = None


class APIConnectionError(APIError):
    retryable = True


class APITimeoutError(APIConnectionError):
    pass


class APIStatusError(APIError):
    def __init__(self, status: int, body: Any, retry_after: float | None) -> None:
        super().__init__(f"Error code: {status} - {body}")
        self.status = status
        self.retryable = status in (408, 409, 429) or status >= 500
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class UnprocessableEntityError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class QuotaExceededError(RateLimitError):
    """A 429 that no wait cures: the account's quota or credit is used up (OpenAI's
    `insufficient_quota`)."""

    def __init__(self, status: int, body: Any, retry_after: float | None) -> None:
        super().__init__(status, body, retry_after)
        self.retryable = False


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 422: UnprocessableEntityError, 429: RateLimitError}
_FATAL_ERRORS = (AuthenticationError, PermissionDeniedError, NotFoundError, QuotaExceededError)


def _status_error(status: int, headers: Mapping[str, str], data: bytes) -> APIStatusError:
    try:
        body: Any = json.loads(data)
    except ValueError:
        body = data.decode(errors="replace")
    kind = _STATUS_ERRORS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    if status == 429 and _error_code(body) == "insufficient_quota":
        kind = QuotaExceededError
    return kind(status, body, _retry_after(headers))


def _error_code(body: Any) -> Any:
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: retry-after-ms, or Retry-After in seconds or as an HTTP date."""
    try:
        return float(headers["retry-after-ms"]) / 1000
    except (KeyError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """The openai SDK's schedule: 0.5 s doubling up to 8 s, up to 25 % jitter; a Retry-After of at
    most a minute replaces it."""
    max_retries: int
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None and 0 <= retry_after <= self.max_retry_after:
            return retry_after
        return min(self.initial_delay * 2 ** retry, self.max_delay) * (1 - 0.25 * random.random())


class OpenAIModel(Model):
    input_modalities = frozenset({Modality.TEXT, Modality.IMAGE, Modality.AUDIO, Modality.VIDEO})

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        args = _check_args(spec.args)
        if not spec.reference:
            raise UsageError("the openai backend needs a model name: openai:MODEL")
        self.model_name = spec.reference
        self.base_url = str(args["base_url"] or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL)
        self.api_key_env = str(args["api_key_env"])
        self.concurrency = _positive_int(args, "concurrency", minimum=1)
        self.max_retries = _positive_int(args, "max_retries", minimum=0)
        self.timeout = _positive_float(args, "timeout")
        self.video_frames = _positive_int(args, "video_frames", minimum=1)
        self.input_modalities = _modalities(args["modalities"])
        key = os.environ.get(self.api_key_env) or None
        if key is None:
            if not _is_loopback(self.base_url):
                raise UsageError(
                    f"the openai backend needs an API key for {_safe_url(self.base_url)}: set the environment "
                    f"variable {self.api_key_env} (or name another one with api_key_env=NAME)")
            key = PLACEHOLDER_KEY
        self._key = key
        self._retry = RetryPolicy(self.max_retries)
        self._url = self.base_url.rstrip("/") + "/chat/completions"
        self._proxy = _env_proxy(self.base_url)
        self._runner: _LoopThread | None = None
        self._session: Any = None
        self._semaphore: asyncio.Semaphore | None = None
        self._limiter: AdaptiveLimiter | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- interface

    @property
    def batch_size(self) -> int:
        return self.concurrency

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        args = dict(described.get("args", {}))
        if "base_url" in args:
            args["base_url"] = _safe_url(str(args["base_url"]))
        described["args"] = args
        return {**described, "base_url": _safe_url(self.base_url), "api_key_env": self.api_key_env,
                "concurrency": self.concurrency, "max_retries": self.max_retries, "timeout": self.timeout,
                "video_frames": self.video_frames}

    def generate(self, requests: Sequence[Request]) -> list[ModelOutput]:
        if not requests:
            return []
        outputs: list[ModelOutput | None] = [None] * len(requests)
        for index, _, output in self._completions(enumerate(requests)):
            outputs[index] = output
        return [o for o in outputs if o is not None]

    def stream(self, requests: Iterable[Request]) -> Iterator[tuple[Request, ModelOutput]]:
        for _, request, output in self._completions((None, r) for r in requests):
            self.generated += 1
            yield request, output

    def close(self) -> None:
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            try:
                runner.call(self._shutdown()).result(timeout=30)
            except Exception:
                pass  # closing is best effort; the loop is stopped below regardless
            runner.stop()
        self._session = None
        self._semaphore = None
        self._limiter = None

    # ----------------------------------------------------------------- scheduling

    def _completions(self, items: Iterable[tuple[K, Request]]) -> Iterator[tuple[K, Request, ModelOutput]]:
        """Outputs in completion order. `PREFETCH` x `concurrency` requests are handed to the event
        loop ahead of the consumer and wait there for one of `concurrency` slots, so a finished
        request's slot is taken at once, without waiting for this thread to pull the next one."""
        runner = self._started()
        done: queue.Queue = queue.Queue()
        pending: set[concurrent.futures.Future] = set()
        source = iter(items)
        exhausted = False

        def refill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < PREFETCH * self.concurrency:
                try:
                    key, request = next(source)
                except StopIteration:
                    exhausted = True
                    return
                future = runner.call(self._complete(request))
                pending.add(future)
                future.add_done_callback(lambda f, key=key, request=request: done.put((f, key, request)))
                time.sleep(0)  # drops the GIL: the loop's thread sends this now, not after a switch interval (5 ms)

        try:
            refill()
            while pending:
                future, key, request = done.get()
                pending.discard(future)
                output = future.result()
                refill()  # keep the server busy while the consumer handles this output
                yield key, request, output
        finally:
            for future in pending:
                future.cancel()

    def _started(self) -> "_LoopThread":
        with self._lock:
            if self._runner is None:
                runner = _LoopThread()
                try:
                    runner.call(self._start()).result()
                except BaseException:
                    runner.stop()
                    raise
                self._runner = runner
            return self._runner

    async def _start(self) -> None:
        import aiohttp

        # trust_env stays off: with it aiohttp reads ~/.netrc on a worker thread for every request
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self._key}"}, connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._semaphore = asyncio.Semaphore(self.concurrency)
        self._limiter = AdaptiveLimiter(self.concurrency)

    async def _shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()

    # ----------------------------------------------------------------- one request

    async def _complete(self, request: Request) -> ModelOutput:
        assert self._semaphore is not None
        async with self._semaphore:
            started = time.perf_counter()
            try:
                if request.modalities == {Modality.TEXT}:
                    messages, notes = self.build_messages(request)  # cheap: no hop to a worker thread
                else:  # decoding media off the loop
                    messages, notes = await asyncio.to_thread(self.build_messages, request)
            except Exception as exc:  # MediaError, mostly; decoding runs off the loop
                return ModelOutput.failed(self._reason(exc))
            body = {"model": self.model_name, "messages": messages, **_settings(request.generation)}
            try:
                response = await self._post(body)
            except _FATAL_ERRORS as exc:  # wrong key, no access, no such model: every request would fail
                raise BackendError(f"{_safe_url(self.base_url)} refused {self.model_name!r}: {self._reason(exc)}") from None
            except Exception as exc:  # what survived the retries, or an unreadable reply
                return ModelOutput.failed(self._reason(exc), **notes)
            return self._output(response, request.generation, time.perf_counter() - started, notes)

    async def _post(self, body: dict[str, Any]) -> Any:
        """The decoded JSON reply, after up to `max_retries` retries of what may pass; a 429 is not
        counted while the server admits others (the limiter halves the concurrency and holds every
        request for the Retry-After instead), only once it has admitted nothing for a minute."""
        assert self._limiter is not None
        retry, retrying = 0, False
        while True:
            ticket = await self._limiter.acquire(retrying)
            try:
                reply = await self._attempt(body)
            except APIError as exc:
                crowded = isinstance(exc, RateLimitError) and not isinstance(exc, QuotaExceededError)
                if crowded:
                    await self._limiter.rate_limited(ticket, exc.retry_after)
                else:
                    await self._limiter.failed()
                counted = not crowded or self._limiter.starved()
                if not exc.retryable or (counted and retry >= self.max_retries):
                    raise
                # the limiter holds every request for a Retry-After; without one, back off as the SDK does
                delay = 0.0 if crowded and exc.retry_after is not None else self._retry.delay(retry, exc.retry_after)
                _log.info("retrying %s in %.2f s after %s", _safe_url(self._url), delay, type(exc).__name__)
                await asyncio.sleep(delay)
                retry += counted
                retrying = True
            except BaseException:
                await self._limiter.failed()
                raise
            else:
                await self._limiter.succeeded(ticket)
                return reply

    async def _attempt(self, body: dict[str, Any]) -> Any:
        import aiohttp

        try:
            async with self._session.post(self._url, json=body, proxy=self._proxy) as response:
                data = await response.read()
                status, headers = response.status, response.headers
        except asyncio.TimeoutError:  # first: aiohttp's timeouts are also ClientErrors (and, on 3.11+, OSErrors)
            raise APITimeoutError(f"Request timed out after {self.timeout:g} s.") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise APIConnectionError(f"Connection error: {type(exc).__name__}: {exc}") from None
        if status >= 400:
            raise _status_error(status, headers, data)
        try:
            return json.loads(data)
        except ValueError:
            raise APIError(f"the reply (HTTP {status}) is not JSON: {data[:200]!r}") from None

    def build_messages(self, request: Request) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Chat messages for a request (system, then one user turn of ordered parts) and backend notes."""
        content: list[dict[str, Any]] = []
        notes: dict[str, Any] = {}
        for part in request.parts:
            content.extend(self._content(part, notes))
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        if request.history:  # the media open the conversation, as in InputProcessor.messages
            media = [item for item in content if item["type"] != "text"]
            content = [item for item in content if item["type"] == "text"]
            for index, turn in enumerate(request.history):
                messages.append({"role": turn.role, "content": (media if index == 0 else [])
                                 + [{"type": "text", "text": turn.text}]})
        messages.append({"role": "user", "content": content})
        return messages, notes

    def _content(self, part: Part, notes: dict[str, Any]) -> list[dict[str, Any]]:
        if part.modality is Modality.TEXT:
            return [{"type": "text", "text": part.text}]
        if part.modality is Modality.IMAGE:
            return [_image_part(load_image(part))]
        if part.modality is Modality.AUDIO:
            samples, rate = load_audio(part, AUDIO_RATE)
            data = base64.b64encode(to_wav_bytes(samples, rate)).decode()
            return [{"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]
        if part.modality is Modality.VIDEO:
            frames = load_video_frames(part, self.video_frames)
            notes["video_as_frames"] = notes.get("video_as_frames", 0) + len(frames)
            return [_image_part(frame) for frame in frames]
        raise UsageError(f"the openai backend cannot send {part.modality.value} input")

    def _output(self, response: dict[str, Any], generation: GenerationConfig, latency: float,
                notes: dict[str, Any]) -> ModelOutput:
        choices = response.get("choices") if isinstance(response, dict) else None
        if not choices or not isinstance(choices[0], dict):
            return ModelOutput.failed("the response has no choices", **notes)
        choice = choices[0]
        raw = self._scrub((choice.get("message") or {}).get("content") or "")
        text = cut_at_stop(raw, generation.stop).strip()
        usage = response.get("usage") or {}
        metadata = dict(notes)
        if choice.get("finish_reason"):
            metadata["finish_reason"] = choice["finish_reason"]
        return ModelOutput(
            text=text, raw_text=raw, parts=(Part.of_text(text),),
            usage=Usage(input_tokens=int(usage.get("prompt_tokens") or 0),
                        output_tokens=int(usage.get("completion_tokens") or 0)),
            latency_s=latency, metadata=metadata)

    def _reason(self, exc: BaseException) -> str:
        reason = f"{type(exc).__name__}: {exc}"
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[:MAX_REASON_CHARS] + "..."
        return self._scrub(reason)

    def _scrub(self, text: str) -> str:
        """Hide the API key should a server echo it back."""
        if len(self._key) >= _MIN_SCRUBBED_KEY and self._key != PLACEHOLDER_KEY:
            return text.replace(self._key, REDACTED)
        return text


def _image_part(image: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": image_data_uri(image)}}


def _settings(generation: GenerationConfig) -> dict[str, Any]:
    settings: dict[str, Any] = {"max_tokens": generation.max_new_tokens, "temperature": generation.temperature,
                                "top_p": generation.top_p, "seed": generation.seed}
    if generation.stop:
        settings["stop"] = list(generation.stop[:MAX_API_STOPS])  # all of them are cut locally too
    if generation.repetition_penalty != 1.0:  # not OpenAI's own; vLLM's, TGI's and SGLang's servers take it
        settings["repetition_penalty"] = generation.repetition_penalty
    return settings


def _check_args(given: Any) -> dict[str, Any]:
    secret = [name for name in given if name.lower() in ("api_key", "key", "openai_api_key", "token")]
    if secret:
        raise UsageError(
            f"do not pass the API key as a model argument ({', '.join(sorted(secret))}): put it in an environment "
            f"variable and name that with api_key_env=NAME (default OPENAI_API_KEY)")
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"unknown argument(s) for the openai backend: {', '.join(unknown)} "
                         f"(accepted: {', '.join(DEFAULTS)})")
    return {**DEFAULTS, **{k: v for k, v in given.items() if v is not None}}


def _modalities(value: Any) -> frozenset[Modality]:
    """`modalities=text+image`: what the served model takes (a judge that cannot hear is then refused
    audio before its first call, where the protocol asks for that, instead of being sent it)."""
    names = [n.strip() for n in str(value).replace(",", "+").split("+") if n.strip()]
    try:
        modalities = frozenset(Modality(n) for n in names) | {Modality.TEXT}
    except ValueError:
        raise UsageError(f"openai backend argument modalities takes text, image, audio and video joined by +, "
                         f"not {value!r}") from None
    return modalities


def _positive_int(args: dict[str, Any], name: str, minimum: int) -> int:
    value = args[name]
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"openai backend argument {name} must be an integer, got {value!r}") from None
    if number < minimum or number != float(value):
        raise UsageError(f"openai backend argument {name} must be an integer >= {minimum}, got {value!r}")
    return number


def _positive_float(args: dict[str, Any], name: str) -> float:
    value = args[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"openai backend argument {name} must be a number, got {value!r}") from None
    if not number > 0:
        raise UsageError(f"openai backend argument {name} must be positive, got {value!r}")
    return number


def _env_proxy(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY and NO_PROXY give for `url`, looked up once rather than per request."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _safe_url(url: str) -> str:
    """The URL without user:password or a query string, either of which may carry a credential."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _LoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="eval-anything-openai", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Any) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        async def finish() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_default_executor()

        if self.loop.is_running():
            try:
                self.call(finish()).result(timeout=30)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        if not self.thread.is_alive():
            self.loop.close()
