"""align: the LLF stages show the models what the authors' lang_feedback scripts show them, and
sample as those scripts do unless the smoke preset is asked for."""
import pytest

from eval_anything.align.config import ConfigError, CritiqueConfig, LLFConfig, RefineConfig, SampleConfig
from eval_anything.align.generate import stage_request
from eval_anything.align.prompts import critique_conversation, refine_conversation, sample_conversation
from eval_anything.align.records import LLFRecord, Media
from eval_anything.datamodel import GenerationConfig
from media_files import write_png


def lang_feedback_strip(text):
    """critique_gen.py / refine_gen.py: every '<image>' becomes ' image '."""
    return text.replace("<image>", " image ")


def test_critique_and_refine_conversations_follow_lang_feedback(tiny_llava_dir, tiny_llama_dir, tmp_path):
    from transformers import AutoProcessor, AutoTokenizer

    from eval_anything.models.inputs import InputProcessor

    prompt, response, critique = "What is in <image>? Count them.", "Two cats <image>", "There are three cats."
    record = LLFRecord("r1", prompt, (Media("image", str(write_png(tmp_path / "a.png"))),), response, critique)
    generation = GenerationConfig()
    llava = InputProcessor(AutoProcessor.from_pretrained(tiny_llava_dir))

    def messages(conversation):
        request = stage_request("s", record, conversation, generation)
        return llava.messages(llava.prepare(request.parts), request.prompt_text, request.system, request.history)

    # critique_gen: one USER turn holding '##Prompt: {prompt} ##Response: {response}', then the ask
    (turn,) = messages(critique_conversation(prompt, response))
    assert turn["role"] == "user" and [c["type"] for c in turn["content"]] == ["image", "text"]
    text = turn["content"][1]["text"]
    assert "<image>" not in text
    assert text.index(f"##Prompt: {lang_feedback_strip(prompt)}") < text.index(f"##Response: {lang_feedback_strip(response)}")
    # refine_gen: USER prompt / ASSISTANT response / USER critique + the ask; the image opens the conversation
    refine = messages(refine_conversation(prompt, response, critique))
    assert [m["role"] for m in refine] == ["user", "assistant", "user"]
    assert refine[0]["content"] == [{"type": "image"}, {"type": "text", "text": lang_feedback_strip(prompt)}]
    assert refine[1]["content"] == [{"type": "text", "text": lang_feedback_strip(response)}]
    (last,) = refine[2]["content"]
    assert last["text"].startswith(critique) and "rewrite" in last["text"]
    rendered = llava.render(llava.prepare(record.parts("x")), "x", None, stage_request(
        "s", record, refine_conversation(prompt, response, critique), generation).history)
    assert rendered.count("<image>") == 1  # one slot, for the one image: the written placeholders are gone
    # a text-only chat template gets the same three turns, in order
    text_only = InputProcessor(AutoTokenizer.from_pretrained(tiny_llama_dir))
    plain = LLFRecord("r2", "Add 2 and 2.", (), "5", "Wrong: 2+2 is 4.")
    request = stage_request("refine", plain, refine_conversation(plain.prompt, plain.response, plain.critique), generation)
    rendered = text_only.render(text_only.prepare(request.parts), request.prompt_text, None, request.history)
    assert rendered.index("Add 2 and 2.") < rendered.index("5") < rendered.index("Wrong: 2+2 is 4.")
    assert rendered.count("<|im_start|>user") == 2 and rendered.count("<|im_start|>assistant") == 2
    # an API model gets the same conversation, the image in the first user turn
    from eval_anything.models import ModelSpec
    from eval_anything.models.openai_api import OpenAIModel

    api = OpenAIModel(ModelSpec("openai", "m", {"base_url": "http://127.0.0.1:1/v1"}))
    api_messages, _ = api.build_messages(stage_request("s", record, refine_conversation(prompt, response, critique),
                                                       generation))
    assert [m["role"] for m in api_messages] == ["user", "assistant", "user"]
    assert [c["type"] for c in api_messages[0]["content"]] == ["image_url", "text"]
    assert [c["type"] for c in api_messages[2]["content"]] == ["text"]
    # the policy samples from the prompt alone, placeholders stripped as base_gen does
    assert sample_conversation("Describe <video> and <audio>.").request == "Describe  video  and  audio ."


def test_stages_sample_as_the_authors_unless_the_smoke_preset_is_asked_for(tiny_llama_dir, tmp_path, monkeypatch):
    # base_gen / critique_gen: temperature 1.0, repetition penalty 1.1, 2048 tokens; refine_gen: 4096
    for cls, length in ((SampleConfig, 2048), (CritiqueConfig, 2048), (RefineConfig, 4096)):
        config = cls.from_dict({"output_dir": "o"})
        assert (config.temperature, config.repetition_penalty, config.max_new_tokens) == (1.0, 1.1, length)
    llf = LLFConfig.from_dict({"data": "d.jsonl", "preset": "smoke", "refine": {"max_new_tokens": 9}})
    assert llf.section("sample") == {"max_new_tokens": 64, "temperature": 0.0, "repetition_penalty": 1.0}
    assert llf.section("refine")["max_new_tokens"] == 9  # the config's own keys win over the preset's
    with pytest.raises(ConfigError, match="did you mean 'smoke'"):
        LLFConfig.from_dict({"data": "d.jsonl", "preset": "smok"})
    # the hf backend hands the penalty to transformers' generate
    from eval_anything.datamodel import Request, Part
    from eval_anything.models import load_model, resolve_spec

    model = load_model(resolve_spec(str(tiny_llama_dir)))
    seen = []
    real = model.model.generate

    def recording(**kwargs):
        seen.append(kwargs.get("repetition_penalty"))
        return real(**kwargs)

    monkeypatch.setattr(model.model, "generate", recording)
    for penalty in (1.1, 1.0):
        model.generate([Request("t", "a", 0, (Part.of_text("Hi"),),
                                GenerationConfig(max_new_tokens=2, temperature=1.0, repetition_penalty=penalty))])
    model.close()
    assert seen == [1.1, None]
    # and vLLM's sampling parameters carry it (the engine itself needs a GPU)
    from eval_anything.models.vllm_backend import VLLMModel

    class FakeVLLM:
        SamplingParams = dict

    engine = VLLMModel.__new__(VLLMModel)
    engine._vllm = FakeVLLM
    sampled = Request("t", "a", 0, (Part.of_text("Hi"),), GenerationConfig(temperature=1.0, repetition_penalty=1.1))
    assert engine.sampling_params(sampled)["repetition_penalty"] == 1.1
