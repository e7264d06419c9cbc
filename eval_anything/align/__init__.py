"""Learning from language feedback (LLF): critic SFT -> sample -> critique -> refine -> pairs ->
DPO (or reward model + PPO), with typed resumable artefacts and checkpoints that carry lineage
into evaluation runs.

Modules, one concept each: config (a dataclass per stage), records (the records between stages),
artifacts (JSONL + manifest, resume), data (align-anything loaders), prompts (what each generation
stage is shown: the authors' lang_feedback conversations), generate (sample, critique, refine, pairs
— through the evaluation backends), train (TRL SFT/DPO/reward), ppo (PPO on accelerate), rl (TRL
RLOO/GRPO), evaluation (the runner on a checkpoint), pipeline (llf), compare and compare_stats (LLF
against binary feedback), callback (in-loop evaluation in any trainer), command (the CLI).
Importing this package does not import torch.
"""
