"""A small multi-model workload whose difficulty shows in the prompt: "What is a + b?" with small or large
numbers. `cheap` is right on small sums only, `mid` on most, `strong` on all: a router that reads the prompt can
send the small sums to `cheap`."""

from __future__ import annotations

import random
from pathlib import Path

from tests.factories import feedback, interaction, write_lines

_VOCABULARY = ("apple river stone cloud market violin garden pencil rocket candle forest harbor ladder mirror "
               "orange planet saddle ticket velvet window yellow zebra anchor bridge castle desert engine "
               "falcon glacier hammer island jacket kettle lemon meadow needle oyster parrot quartz ribbon "
               "silver tunnel umbrella valley walnut galaxy harvest lantern marble nectar orchard pepper "
               "quiver raven spider timber")
WORDS = tuple(_VOCABULARY.split())
MODELS = {"cheap": "gpt-4.1-nano", "mid": "gpt-4o-mini", "strong": "gpt-4o"}  # priced in schemas/prices.yaml


def ask(rng: random.Random, a: int, b: int) -> str:
    story = " ".join(rng.sample(WORDS, 12))  # unrelated words keep the prompts from being near-duplicates
    return f"{story.capitalize()}. What is {a} + {b}?"


def arithmetic_traffic(path: Path, prompts: int = 400, seed: int = 3, graded: bool = True) -> Path:
    rng = random.Random(seed)
    lines = []
    for p in range(prompts):
        hard = p % 2 == 1
        a, b = (rng.randint(1000, 99999), rng.randint(1000, 99999)) if hard else (rng.randint(1, 9), rng.randint(1, 9))
        question = ask(rng, a, b)
        for role, model in MODELS.items():
            right = {"cheap": not hard, "mid": not hard or rng.random() < 0.6, "strong": True}[role]
            answer = str(a + b if right else a + b + 1)
            request_id = f"q{p:04d}-{role}"
            lines.append(interaction(request_id, app_id="calculator", model=model,
                                     messages=[{"role": "user", "content": question}],
                                     response={"role": "assistant", "content": f'{{"answer": "{answer}"}}'},
                                     timestamp=f"2026-11-0{1 + p % 3}T10:{p % 60:02d}:00Z"))
            if graded:
                lines.append(feedback(request_id, feedback_type="task_success", source="grader", success=right,
                                      timestamp=f"2026-11-0{1 + p % 3}T11:00:00Z"))
    return write_lines(path, lines)


def published_home(root: Path, prompts: int, graded: bool = True):
    """A home with the workload ingested and published through the Dagster publish job."""
    from flywheel import warehouse
    from flywheel.ingest import ingest_file
    from flywheel.settings import Home
    from pipelines.launch import publish

    home = Home(root).ensure()
    with warehouse.session(home) as con:
        ingest_file(con, arithmetic_traffic(home.root / "calculator.jsonl", prompts=prompts, graded=graded))
    assert publish(home).success
    return home
