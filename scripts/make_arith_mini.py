"""Write eval_anything/tasks/builtin/data/arith_mini.jsonl: 40 short arithmetic questions.

Deterministic (fixed seed); rerun it only when changing the task, and bump the task's version.
"""
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "eval_anything" / "tasks" / "builtin" / "data" / "arith_mini.jsonl"
OPERATIONS = [("+", lambda a, b: a + b), ("-", lambda a, b: a - b), ("*", lambda a, b: a * b)]


def main() -> None:
    rng = random.Random(20261125)
    rows = []
    for index in range(40):
        symbol, apply = OPERATIONS[index % len(OPERATIONS)]
        a, b = (rng.randint(2, 12), rng.randint(2, 12)) if symbol == "*" else (rng.randint(1, 50), rng.randint(1, 50))
        if symbol == "-" and b > a:
            a, b = b, a
        rows.append({"id": f"arith-{index:03d}", "question": f"What is {a} {symbol} {b}?", "answer": str(apply(a, b))})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
