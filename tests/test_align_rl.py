"""align: reward model (TRL) + our PPO — the mean reward on the training prompts goes up; PPO resume."""
import json

import pytest
import torch

from eval_anything.align.config import PPOConfig, RMConfig
from eval_anything.align.records import write_jsonl

PROMPTS = ["Is the sky blue?", "Is water wet?", "Do fish swim?", "Is fire hot?"]


@pytest.fixture(scope="module")
def yes_no_setup(tmp_path_factory, tiny_llama_dir):
    """A tiny policy that answers 'yes yes yes' or 'no no no' about equally often, prompts, and
    preference pairs that prefer 'yes': the reward model learns it, PPO must shift the policy."""
    from eval_anything.align.train import load_for_training, render_prompt
    from eval_anything.align.records import LLFRecord

    root = tmp_path_factory.mktemp("ppo")
    write_jsonl(root / "prompts.jsonl", [{"id": f"p{i}", "prompt": p} for i, p in enumerate(PROMPTS)])
    write_jsonl(root / "prefs.jsonl", [{"id": f"x{i}", "prompt": f"Question {i}?", "chosen": "yes yes yes",
                                        "rejected": "no no no"} for i in range(8)])
    model, tokenizer, inputs = load_for_training(str(tiny_llama_dir))
    rendered = [render_prompt(inputs, LLFRecord("x", p).parts())[0] for p in PROMPTS]
    texts = [p + answer + tokenizer.eos_token for p in rendered for answer in ("yes yes yes", "no no no")]
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for row in range(len(texts)):  # learn the answers only
        labels[row, : len(tokenizer(rendered[row // 2], add_special_tokens=False)["input_ids"])] = -100
    model.model.embed_tokens.weight.requires_grad_(False)
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=5e-3)
    torch.manual_seed(0)
    for _ in range(30):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.model.embed_tokens.weight.requires_grad_(True)
    model.save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    return root, rendered


@pytest.fixture(scope="module")
def reward_model(yes_no_setup, tiny_llama_dir):
    from eval_anything.align.train import train_reward_model

    root, _ = yes_no_setup
    result = train_reward_model(RMConfig.from_dict({
        "model": str(tiny_llama_dir), "pairs": str(root / "prefs.jsonl"), "output_dir": str(root / "rm"),
        "max_steps": 20, "learning_rate": 1e-3, "batch_size": 4, "max_length": 64}))
    assert result.losses[-1] < result.losses[0] and result.manifest["final_metrics"]
    return result.model_dir


def ppo_config(root, reward_model, **changes):
    return PPOConfig.from_dict({"model": str(root / "policy"), "reward_model": str(reward_model),
                                "prompts": str(root / "prompts.jsonl"), "output_dir": str(root / "ppo"),
                                "max_steps": 8, "learning_rate": 1e-3, "batch_size": 4, "response_length": 8,
                                **changes})


def test_ppo_raises_the_reward_models_score_on_the_training_prompts(yes_no_setup, reward_model):
    from eval_anything.align.ppo import mean_reward, train_ppo

    root, rendered = yes_no_setup
    before = mean_reward(str(root / "policy"), str(reward_model), rendered, samples=4, max_new_tokens=8)
    result = train_ppo(ppo_config(root, reward_model))
    after = mean_reward(str(result.model_dir), str(reward_model), rendered, samples=4, max_new_tokens=8)
    assert after > before + 0.5, (before, after)
    history = result.history
    assert len(history) == 8 and all(h["vf_loss"] >= 0 for h in history)
    # KL to the reference stays bounded: measured up to 2.4 nats over the 8 response tokens
    assert max(h["kl"] for h in history) < 5.0, [h["kl"] for h in history]
    lineage = json.loads((result.model_dir / "eval_anything_lineage.json").read_text())
    assert lineage["method"] == "ppo" and lineage["inputs"][1]["path"] == str(reward_model.resolve())


def test_ppo_resumes_from_its_last_state_as_if_never_stopped(yes_no_setup, reward_model, tmp_path):
    """Crash after iteration 2, rerun: the same history and final weights as a run that never stopped
    (optimizer, schedule, RNG and running reward moments restored); metrics.jsonl holds each step once.
    Also exercised here: reward normalisation, the missing-EOS penalty (2 tokens: every answer is cut
    off, mostly) and the PTX loss."""
    from safetensors.torch import load_file

    from eval_anything.align.metrics import read_metrics
    from eval_anything.align.ppo import train_ppo

    root, _ = yes_no_setup
    write_jsonl(tmp_path / "sft.jsonl", [{"id": "s", "prompt": "Say yes.", "response": "yes yes yes"}])
    changes = dict(max_steps=3, save_steps=2, response_length=2, normalize_reward=True, missing_eos_penalty=1.0,
                   reward_clip=0.5, ptx_data=str(tmp_path / "sft.jsonl"), ptx_coef=0.5, ptx_batch_size=1,
                   lr_scheduler_type="linear")
    config = ppo_config(root, reward_model, output_dir=str(tmp_path / "ppo"), **changes)
    partial = train_ppo(config, stop_after=2)  # stands in for a crash after iteration 2
    assert len(partial.history) == 2 and (tmp_path / "ppo" / "checkpoints" / "iteration-2").is_dir()
    resumed = train_ppo(config)
    assert resumed.resumed_from.endswith("iteration-2")
    assert [h["iteration"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == partial.history
    straight = train_ppo(ppo_config(root, reward_model, output_dir=str(tmp_path / "straight"), **changes))
    assert [h["score"] for h in straight.history] == pytest.approx([h["score"] for h in resumed.history])
    a, b = load_file(straight.model_dir / "model.safetensors"), load_file(resumed.model_dir / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    rows = read_metrics(tmp_path / "ppo" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:
        # normalised, clipped to +-0.5, then 1 less for every answer with no EOS
        assert -0.5 - row["truncated"] - 1e-6 <= row["reward"] <= 0.5 - row["truncated"] + 1e-6
        assert row["ptx_loss"] > 0 and row["entropy"] > 0 and "clipfrac" in row and "vf_loss" in row
    assert any(r["truncated"] > 0.5 for r in rows)
    assert [r["learning_rate"] for r in rows] == sorted((r["learning_rate"] for r in rows), reverse=True)
    assert resumed.manifest["precision"] == {"requested": "auto", "dtype": "fp32", "gradient_checkpointing": False,
                                             "quantization": "none", "master_weights": "fp32", "deepspeed": False}


def test_ppo_with_lora_on_policy_and_critic_and_with_a_shared_trunk(yes_no_setup, reward_model, tmp_path):
    """LoRA on policy and critic with activation checkpointing (reference = the base with the adapter off):
    only the adapted projections change in the merged checkpoint. Shared trunk: one step trains the policy."""
    from safetensors.torch import load_file

    from eval_anything.align.ppo import train_ppo

    root, _ = yes_no_setup
    before = load_file(root / "policy" / "model.safetensors")
    lora = train_ppo(ppo_config(root, reward_model, output_dir=str(tmp_path / "lora"), max_steps=1, lora=True,
                                critic_lora=True, learning_rate=1e-2, gradient_checkpointing=True))
    after = load_file(lora.model_dir / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    assert lora.manifest["precision"]["gradient_checkpointing"] is True
    shared = train_ppo(ppo_config(root, reward_model, output_dir=str(tmp_path / "shared"), max_steps=1,
                                  shared_trunk=True, gradient_checkpointing=True))
    after = load_file(shared.model_dir / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_ppo_by_hub_id_records_the_commit_and_evaluates_its_live_policy_in_the_loop(reward_model, offline_cache,
                                                                                     yes_no_setup, tmp_path):
    """`align ppo --model hf:ORG/NAME --eval-every 1`: the stage's inputs and lineage carry the Hub commit;
    each iteration's in-loop run directory names base, method ppo and step."""
    from hub_cache import MAIN_SHA, REPO, TAGGED_SHA

    from eval_anything.align.artifacts import fingerprint
    from eval_anything.cli import main

    root, _ = yes_no_setup
    assert fingerprint(f"{REPO}@v2")["commit"] == TAGGED_SHA  # a bare Hub id, at a tag
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fingerprint(str(tmp_path / "missing.jsonl"))
    out, runs = tmp_path / "ppo", tmp_path / "runs"
    assert main(["align", "ppo", "--model", f"hf:{REPO}", "--reward-model", str(reward_model), "--prompts",
                 str(root / "prompts.jsonl"), "--output-dir", str(out), "--max-steps", "2", "--batch-size", "2",
                 "--response-length", "4", "--ppo-epochs", "1", "--eval-every", "1", "--eval-tasks", "arith_mini",
                 "--eval-limit", "2", "--eval-max-new-tokens", "4", "--eval-output-dir", str(runs)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    base = manifest["inputs"][-1]
    assert (base["path"], base["repo_id"], base["commit"]) == (f"hf:{REPO}", REPO, MAIN_SHA) and base["sha256"]
    lineage = json.loads((out / "model" / "eval_anything_lineage.json").read_text())
    assert (lineage["base_model"], lineage["base_model_commit"]) == (f"hf:{REPO}", MAIN_SHA)
    in_loop = [json.loads((d / "manifest.json").read_text())["lineage"] for d in sorted(runs.iterdir())]
    assert sorted((r["base_model"], r["method"], r["step"]) for r in in_loop) == [(f"hf:{REPO}", "ppo", 1),
                                                                                 (f"hf:{REPO}", "ppo", 2)]
    assert all(r["trainer_output_dir"] == str((out / "checkpoints").resolve()) for r in in_loop)


def test_running_reward_moments_match_the_whole_sample():
    from eval_anything.align.advantages import RunningMoments

    values = [0.5, -1.0, 3.0, 2.0, 7.0, -4.0, 0.0]
    moments = RunningMoments()
    for chunk in (values[:2], values[2:5], values[5:]):
        moments.update(chunk)
    t = torch.tensor(values)
    assert moments.count == 7 and moments.mean == pytest.approx(float(t.mean()))
    assert moments.std == pytest.approx(float(t.std(unbiased=False)))


@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_trl_rloo_and_grpo_stages_use_the_trained_reward_model(algorithm, yes_no_setup, reward_model, tmp_path,
                                                               capsys):
    from safetensors.torch import load_file

    from eval_anything.align.config import GRPOConfig, RLOOConfig
    from eval_anything.align.rl import train_rl

    root, _ = yes_no_setup
    config = {"rloo": RLOOConfig, "grpo": GRPOConfig}[algorithm].from_dict({
        "model": str(root / "policy"), "reward_model": str(reward_model), "prompts": str(root / "prompts.jsonl"),
        "output_dir": str(tmp_path / algorithm), "max_steps": 1, "learning_rate": 1e-3, "batch_size": 4,
        "num_generations": 4, "max_completion_length": 6})
    result = train_rl(config, algorithm)
    assert result.manifest["global_step"] == 1
    assert "'loss'" not in capsys.readouterr().out  # the step's log dict is in metrics.jsonl, not on stdout
    assert "loss" in (tmp_path / algorithm / "metrics.jsonl").read_text()
    before, after = load_file(root / "policy" / "model.safetensors"), load_file(result.model_dir / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert json.loads((result.model_dir / "eval_anything_lineage.json").read_text())["method"] == algorithm


def test_gae_and_masks_match_the_definitions():
    from eval_anything.align.advantages import gae, masked_whiten, response_mask

    rewards = torch.tensor([[0.0, 0.5, 1.0, 9.0]])
    values = torch.tensor([[0.2, 0.4, 0.6, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last token is after EOS: ignored
    gamma, lam = 0.9, 0.8
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    deltas = [0.0 + gamma * 0.4 - 0.2, 0.5 + gamma * 0.6 - 0.4, 1.0 + gamma * 0.0 - 0.6]
    expected = [deltas[0] + gamma * lam * (deltas[1] + gamma * lam * deltas[2]), deltas[1] + gamma * lam * deltas[2],
                deltas[2], 0.0]
    assert torch.allclose(advantages, torch.tensor([expected]), atol=1e-6)
    assert torch.allclose(returns[0, :3], advantages[0, :3] + values[0, :3])
    eos = 2
    assert response_mask(torch.tensor([[5, eos, 7, eos], [5, 6, 7, 8]]), {eos}).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    whitened = masked_whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), mask)
    assert abs(float(whitened[0, :3].mean())) < 1e-6 and whitened[0, 3] == 0

    from eval_anything.align.advantages import group_advantages

    scores = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])  # two prompts, three responses each
    assert group_advantages(scores, 3, "rloo").tolist() == [1 - 4, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0]
    grpo = group_advantages(scores, 3, "grpo")
    assert torch.allclose(grpo[:3], (scores[:3] - 3) / (scores[:3].std() + 1e-4))
