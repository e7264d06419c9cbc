"""Shared test fixtures. Tests never reach the Hugging Face hub: every model is local."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Before anything imports transformers / huggingface_hub, which read these once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread unless told otherwise: on a small shared machine two OpenMP threads that
# spin-wait for each other's busy core made SmolLM2 generation 10-20x slower (15 s vs 0.7 s a call).
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:  # imported already (by a plugin): the variable came too late
        sys.modules["torch"].set_num_threads(1)

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:  # for `import tiny_models`, whatever pytest's import mode
    sys.path.insert(0, _TESTS)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a cached fp32 transformers folder (with tokenizer)."""
    from eval_anything.models.embedded import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """A tiny random Llama (2 layers, hidden 64) with SmolLM2's tokenizer and chat template."""
    from tiny_models import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), smollm2_dir)


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """A tiny random LLaVA with a real LlavaProcessor (16 image tokens per image)."""
    from tiny_models import make_tiny_llava

    return make_tiny_llava(tmp_path_factory.mktemp("tiny-llava"), smollm2_dir)


@pytest.fixture(scope="session")
def tiny_qwen2_audio_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """A tiny random Qwen2-Audio with a real Qwen2AudioProcessor (25 audio tokens per second)."""
    from tiny_models import make_tiny_qwen2_audio

    return make_tiny_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio"), smollm2_dir)


@pytest.fixture(scope="session")
def tiny_qwen2_5_omni_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """A tiny random Qwen2.5-Omni thinker: image, audio and video (as frames) in one prompt."""
    from tiny_models import make_tiny_qwen2_5_omni

    return make_tiny_qwen2_5_omni(tmp_path_factory.mktemp("tiny-qwen2.5-omni"), smollm2_dir)


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    """HF_HOME with `acme/tiny-llama` cached at two commits (tests/hub_cache.py)."""
    from hub_cache import lay_out

    return lay_out(tmp_path_factory.mktemp("hf_home"), tiny_llama_dir)


@pytest.fixture
def offline_cache(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's huggingface_hub pointed at the cache (it read HF_HOME when imported)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub_cache / "hub"
