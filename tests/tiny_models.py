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


def _base_tokenizer(tokenizer_dir: str | Path | None, **options):
    from transformers import AutoTokenizer

    if tokenizer_dir is None:
        from eval_anything.models.embedded import embedded_model_dir

        tokenizer_dir = embedded_model_dir()
    return AutoTokenizer.from_pretrained(tokenizer_dir, **options)


def _tokenizer_with_named_tokens(tokenizer_dir: str | Path | None, tokens: dict[str, str]):
    """The base tokenizer with `tokens` added as named special tokens (processors read e.g.
    tokenizer.image_token), and their ids by name."""
    tokenizer = _base_tokenizer(tokenizer_dir, extra_special_tokens=tokens)
    tokenizer.add_tokens(list(tokens.values()), special_tokens=True)
    return tokenizer, {name: tokenizer.convert_tokens_to_ids(token) for name, token in tokens.items()}


def _text_config(config_class, vocab_size: int, tokenizer, **overrides):
    settings = dict(
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
    return config_class(**{**settings, **overrides})


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
    # 2 heads of 32: vLLM's CPU attention takes no head size under 32 (its tests run this model)
    text = _text_config(LlamaConfig, len(tokenizer), tokenizer, num_attention_heads=2, num_key_value_heads=1)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=image_token, image_seq_length=LLAVA_IMAGE_TOKENS,
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": LLAVA_IMAGE_SIZE},
                                            crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=LLAVA_PATCH_SIZE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_CHAT_TEMPLATE)
    return _published_llava_layout(_finish(model, processor, tokenizer, target))


def _published_llava_layout(target: Path) -> Path:
    """Rewrites the weights to the layout of the published LLaVA checkpoints (llava-hf/*), whose CLIP
    tower sits under `vision_tower.vision_model.`. transformers 5 saves it without `vision_model.` and
    reads both; vLLM reads only the published one."""
    from safetensors.torch import load_file, save_file

    weights = target / "model.safetensors"
    tower = "vision_tower."
    state = {(tower + "vision_model." + key[len(tower):] if key.startswith(tower) and ".vision_model." not in key
              else key): value for key, value in load_file(weights).items()}
    save_file(state, weights, metadata={"format": "pt"})
    return target


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


# Qwen2.5-Omni's own template (from the hub) is not available offline; this one places the
# modality markers the processor expands: one <|IMAGE|>/<|VIDEO|>/<|AUDIO|> per part.
OMNI_CHAT_TEMPLATE = LLAVA_CHAT_TEMPLATE.replace(
    "{% if part['type'] == 'image' %}{{ '<image>' }}",
    "{% if part['type'] == 'image' %}{{ '<|vision_bos|><|IMAGE|><|vision_eos|>' }}"
    "{% elif part['type'] == 'video' %}{{ '<|vision_bos|><|VIDEO|><|vision_eos|>' }}"
    "{% elif part['type'] == 'audio' %}{{ '<|audio_bos|><|AUDIO|><|audio_eos|>' }}")
OMNI_SPECIAL_TOKENS = {
    "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "audio_token": "<|AUDIO|>",
    "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
}
OMNI_IMAGE_PIXELS = 56 * 56  # Qwen-VL patches of 14 merged 2x2: at most 4 image tokens per image


def make_tiny_qwen2_5_omni(target_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """A random Qwen2.5-Omni thinker (2-layer vision and audio encoders, 2-layer text model) taking
    images, audio and (as frames) video in one prompt, saved with a Qwen2_5OmniProcessor config.

    Only the thinker: the talker and token2wav speak, and evaluation reads text. The processor's
    video processor needs torchvision, so the processor is built and saved without one, as `hf:`
    loads it (video then goes in as frames).
    """
    import torch
    from transformers import (Qwen2_5OmniProcessor, Qwen2_5OmniThinkerConfig,
                              Qwen2_5OmniThinkerForConditionalGeneration, Qwen2VLImageProcessorPil,
                              WhisperFeatureExtractor)

    from eval_anything.models.inputs import accepting_no_video

    target = Path(target_dir)
    tokenizer, ids = _tokenizer_with_named_tokens(tokenizer_dir, OMNI_SPECIAL_TOKENS)
    config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(num_mel_bins=128, d_model=32, encoder_layers=2, encoder_attention_heads=2,
                          encoder_ffn_dim=64, output_dim=64),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           fullatt_block_indexes=[1], window_size=56),
        # mrope_section splits head_dim / 2 = 8 rotary pairs over time, height and width
        text_config={**_text_config(dict, len(tokenizer), tokenizer),
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}},
        audio_token_index=ids["audio_token"], image_token_index=ids["image_token"],
        video_token_index=ids["video_token"], audio_start_token_id=ids["audio_bos_token"],
        audio_end_token_id=ids["audio_eos_token"], vision_start_token_id=ids["vision_bos_token"],
        vision_end_token_id=ids["vision_eos_token"], user_token_id=tokenizer.convert_tokens_to_ids("user"))
    torch.manual_seed(0)
    model = Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=OMNI_IMAGE_PIXELS)
    extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=AUDIO_SAMPLING_RATE)
    processor = accepting_no_video(Qwen2_5OmniProcessor)(
        image_processor=image_processor, video_processor=None, feature_extractor=extractor, tokenizer=tokenizer,
        chat_template=OMNI_CHAT_TEMPLATE)
    return _finish(model, processor, tokenizer, target)


# ------------------------------------------------------------------ reward models

GEMMA3_SPECIAL_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                         "image_token": "<image_soft_token>"}
GEMMA3_IMAGE_TOKENS = 4  # SigLIP 32 px, patch 8: 4x4 patches pooled to 2x2


def make_tiny_gemma3_reward(target_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """A random Gemma3ForSequenceClassification (one label) taking images: a multimodal reward model
    of the sequence-classification layout, with a Gemma3Processor whose template writes
    <start_of_image> per image (the processor expands it to 4 image tokens between begin/end)."""
    import torch
    from transformers import (Gemma3Config, Gemma3ForSequenceClassification,
                              Gemma3ImageProcessorPil, Gemma3Processor, SiglipVisionConfig)

    target = Path(target_dir)
    tokenizer, ids = _tokenizer_with_named_tokens(tokenizer_dir, GEMMA3_SPECIAL_TOKENS)
    text = {**_text_config(dict, len(tokenizer), tokenizer), "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 64,
            "layer_types": ["sliding_attention", "full_attention"]}
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=LLAVA_IMAGE_SIZE, patch_size=LLAVA_PATCH_SIZE)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=GEMMA3_IMAGE_TOKENS,
                          boi_token_index=ids["boi_token"], eoi_token_index=ids["eoi_token"],
                          image_token_index=ids["image_token"], num_labels=1, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Gemma3ForSequenceClassification(config).eval()
    with torch.no_grad():  # initialised to zeros, which would hide the image from the text model
        torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.2)
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessorPil(size={"height": LLAVA_IMAGE_SIZE,
                                                                              "width": LLAVA_IMAGE_SIZE}),
                                tokenizer=tokenizer, image_seq_length=GEMMA3_IMAGE_TOKENS,
                                chat_template=LLAVA_CHAT_TEMPLATE.replace("'<image>'", "'<start_of_image>'"))
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


def make_tiny_llama_reward(target_dir: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """A random one-layer LlamaForSequenceClassification (one label): a text-only reward model."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    target = Path(target_dir)
    tokenizer = _base_tokenizer(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
