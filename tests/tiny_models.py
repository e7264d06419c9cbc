"""Tiny random multimodal models built offline, for tests.

Each builder makes a seeded random model from a config, with a real processor (the SmolLM2
tokenizer of the embedded model plus the model's special tokens, and a real image processor or
feature extractor), and saves both into a folder that `hf:FOLDER` loads through AutoProcessor and
the Auto model classes. Nothing is fetched from the hub.
"""
from __future__ import annotations

from pathlib import Path

# Renders list content: {"type": "image"} -> <image>, text parts -> their text; string content as is.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAVA_IMAGE_SIZE = 32
LLAVA_PATCH_SIZE = 8
LLAVA_IMAGE_TOKENS = (LLAVA_IMAGE_SIZE // LLAVA_PATCH_SIZE) ** 2  # CLS dropped ("default" strategy)
AUDIO_SAMPLING_RATE = 16000


def _base_tokenizer(tokenizer_dir: str | Path | None):
    from transformers import AutoTokenizer

    if tokenizer_dir is None:
        from eval_anything.models.embedded import embedded_model_dir

        tokenizer_dir = embedded_model_dir()
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def _text_config(config_class, vocab_size: int, tokenizer):
    return config_class(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _finish(model, processor, tokenizer, target: Path) -> Path:
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


def make_tiny_llava(target_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """A random LLaVA (CLIP 32 px, patch 8 -> 16 image tokens; 2-layer Llama) with LlavaProcessor."""
    import torch
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    target = Path(target_dir)
    tokenizer = _base_tokenizer(tokenizer_dir)
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=LLAVA_IMAGE_SIZE, patch_size=LLAVA_PATCH_SIZE, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=_text_config(LlamaConfig, len(tokenizer), tokenizer),
                         image_token_index=image_token, image_seq_length=LLAVA_IMAGE_TOKENS,
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": LLAVA_IMAGE_SIZE},
                                            crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=LLAVA_PATCH_SIZE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_CHAT_TEMPLATE)
    return _finish(model, processor, tokenizer, target)


def make_tiny_qwen2_audio(target_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """A random Qwen2-Audio (2-layer Whisper-style encoder, 2-layer Qwen2) with Qwen2AudioProcessor."""
    import torch
    from transformers import (Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2AudioForConditionalGeneration,
                              Qwen2AudioProcessor, Qwen2Config, WhisperFeatureExtractor)

    target = Path(target_dir)
    tokenizer = _base_tokenizer(tokenizer_dir)
    tokenizer.add_tokens(["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"], special_tokens=True)
    audio_token = tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    # The feature extractor pads every clip to 30 s = 3000 mel frames, and the encoder insists on
    # max_source_positions * 2 == 3000, so max_source_positions must stay 1500.
    audio = Qwen2AudioEncoderConfig(num_mel_bins=80, d_model=32, encoder_layers=2, encoder_attention_heads=2,
                                    encoder_ffn_dim=64, max_source_positions=1500)
    config = Qwen2AudioConfig(audio_config=audio, text_config=_text_config(Qwen2Config, len(tokenizer), tokenizer),
                              audio_token_index=audio_token)
    torch.manual_seed(0)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=AUDIO_SAMPLING_RATE)
    processor = Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=tokenizer)
    return _finish(model, processor, tokenizer, target)


def make_tiny_llama(target_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """A random 2-layer Llama (hidden 64) with the SmolLM2 tokenizer and chat template: fast to train."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    target = Path(target_dir)
    tokenizer = _base_tokenizer(tokenizer_dir)
    config = _text_config(LlamaConfig, len(tokenizer), tokenizer)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    return _finish(model, tokenizer, tokenizer, target)
