"""A causal LM of a real model's shape with random weights, and the embedded model's tokenizer: what the GPU
benchmarks load on a machine that reaches no Hub and receives at most 64 MiB (no real weights fit). Speed and
memory depend on the shape, not on the weights; every side of a benchmark loads the same folder, so their
greedy answers are the same work (random answers: scores are not comparable to a trained model's).

    python benchmarks/random_model.py --shape qwen2.5-0.5b --out DIR [--tokenizer DIR] [--dtype bfloat16]
        [--init-std 0.1] [--seed 0]

--tokenizer: a folder with tokenizer.json and tokenizer_config.json (default: the embedded model's, converted
on first use). The vocabulary is the tokenizer's (49152 for SmolLM2's), so a Qwen shape has fewer embedding
parameters than the real model; the printed count is what was built.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

SHAPES = {
    # the tests' tiny Llama (2 layers of 64): for smoke runs of the GPU benchmarks on a CPU
    "tiny": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                 tie_word_embeddings=True),
    # the embedded model's own shape (LlamaForCausalLM)
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                         rope_theta=100000.0, tie_word_embeddings=True),
    # Qwen2.5-0.5B-Instruct's and Qwen2.5-1.5B-Instruct's trunks (Qwen2ForCausalLM)
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1000000.0, tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1000000.0, tie_word_embeddings=True),
}
INIT_STD = 0.1
"""The weights' standard deviation (the config's initializer_range). Transformers' 0.02 makes a degenerate model:
on 16 arithmetic questions (smollm2-135m shape, greedy, 32 tokens) it gave 2 distinct answers, each one token
repeated. 0.05 and 0.1 gave 16 distinct answers, all running to the token limit (what a throughput benchmark
wants); 0.2 stopped one early at a newline."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def embedded_tokenizer_dir() -> Path:
    from eval_anything.models.embedded import embedded_model_dir

    return embedded_model_dir()


def copy_tokenizer(source: Path, target: Path) -> None:
    """The tokenizer files alone (a few MiB), e.g. into a folder that travels to the GPU machine."""
    if not (source / "tokenizer.json").exists():
        raise SystemExit(f"{source} has no tokenizer.json: give --tokenizer a folder holding a saved tokenizer")
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)


def build(shape: str, out: Path, tokenizer_dir: Path, dtype: str = "bfloat16", seed: int = 0,
          init_std: float = INIT_STD) -> int:
    """Writes a loadable model folder (config, weights, tokenizer, generation config); returns its parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if shape not in SHAPES:
        raise SystemExit(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    copy_tokenizer(tokenizer_dir, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    fields = dict(SHAPES[shape])
    config = AutoConfig.for_model(fields.pop("model_type"), vocab_size=len(tokenizer),
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id, initializer_range=init_std, **fields)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    return sum(parameter.numel() for parameter in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, help="a saved tokenizer's folder (default: the embedded model's)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-std", type=float, default=INIT_STD,
                        help=f"the weights' standard deviation, the config's initializer_range (default {INIT_STD})")
    args = parser.parse_args()
    parameters = build(args.shape, args.out, args.tokenizer or embedded_tokenizer_dir(), args.dtype, args.seed,
                       args.init_std)
    print(f"{args.out}: {args.shape} shape, random weights, {parameters / 1e6:.1f} M parameters, {args.dtype}")


if __name__ == "__main__":
    main()
