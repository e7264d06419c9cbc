"""The one out-of-memory policy of the hf backend's batching engines: with batch_size auto, requests
that ran out of memory together are retried half as many at a time, the cached memory handed back."""
from __future__ import annotations


def is_out_of_memory(exc: Exception) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or says_out_of_memory(str(exc))


def says_out_of_memory(message: str) -> bool:
    message = message.lower()
    return "out of memory" in message or "can't allocate memory" in message  # the CPU allocator's wording


def worth_retrying(auto_batch: bool, batch_size: int, in_flight: int) -> bool:
    """Retry smaller only with batch_size auto and when more than one request ran together: a request
    that runs out of memory alone would run out again."""
    return auto_batch and min(batch_size, in_flight) > 1


def halved_batch_size(batch_size: int, in_flight: int) -> int:
    """The batch size to retry with after `in_flight` requests ran out of memory together: half of
    what failed, not of a start size larger than that. Cached device memory is released for the retry."""
    release_cached_memory()
    return max(1, min(batch_size, in_flight) // 2)


def release_cached_memory() -> None:
    import torch

    if torch.cuda.is_initialized():  # never start CUDA just to empty its cache
        torch.cuda.empty_cache()
