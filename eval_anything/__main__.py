from eval_anything.cli import entry

# Guarded: processes started with "spawn" (vLLM's engine, DataLoader workers) import this module again.
if __name__ == "__main__":
    entry()
