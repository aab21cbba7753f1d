"""A controllable task the tiny model learns with GRPO on 2 CPU cores: a hidden rule that maps code words to colours.

Each prompt names one code word among distractor words; the answer is the colour a secret, seeded map assigns to
the code word. The warm start teaches the answer format and the colours of ``known`` code words only, so the policy
starts at about chance on the rest (1 / number of colours) and learning a code word's colour lifts every prompt
that names it. Difficulty is set by the number of code words, colours and known words. The held-out split asks about
the same code words with other distractors. Text only (the VL model gets no image), so steps are fast; the reward is
the project's ``verifiers`` (answer inside ``<answer> </answer>``).

    python -m recipes.demo.rule_task DIR [--seed 0]    # DIR/data/{train,val}.parquet and DIR/model
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

DATA_SOURCE = "hidden_rule"
INSTRUCTION = "Give the colour inside <answer> </answer>."
CODE_WORDS = [
    "zor", "kel", "mip", "tav", "rux", "bon", "sef", "lar", "qin", "dov", "hul", "wex",
    "pim", "gad", "yot", "fen", "cra", "jis", "nub", "vok", "tib", "mep", "rad", "sul",
]  # fmt: skip
COLOURS = ["red", "green", "blue", "yellow", "black", "white", "pink", "grey"]
FILLERS = ["the", "a", "note", "says", "today", "word", "card", "shows", "then", "now", "here", "look"]


@dataclass(frozen=True)
class RuleTask:
    num_words: int = 8
    num_colours: int = 6
    known: int = 1
    train_size: int = 256
    val_size: int = 64
    seed: int = 0

    def rule(self) -> dict[str, str]:
        """The secret map, code word -> colour (seeded)."""
        rng = random.Random(self.seed)
        colours = COLOURS[: self.num_colours]
        return {word: rng.choice(colours) for word in CODE_WORDS[: self.num_words]}

    def known_words(self) -> list[str]:
        return CODE_WORDS[: self.known]

    def prompt(self, word: str, rng: random.Random) -> str:
        before = " ".join(rng.choice(FILLERS) for _ in range(rng.randint(1, 3)))
        return f"{before} code {word}. {INSTRUCTION}"

    def rows(self, split: str) -> list[dict]:
        rng = random.Random(f"{self.seed}-{split}")
        rule = self.rule()
        words = list(rule)
        size, offset = (self.train_size, 0) if split == "train" else (self.val_size, self.train_size)
        rows = []
        for i in range(size):
            word = words[i % len(words)] if split == "val" else rng.choice(words)
            rows.append(
                {
                    "data_source": DATA_SOURCE,
                    "prompt": [{"role": "user", "content": self.prompt(word, rng)}],
                    "ability": "rule",
                    "reward_model": {"style": "rule", "ground_truth": rule[word]},
                    # the rule's answer as a "teacher trace", for the LUFFY baseline (a perfect teacher)
                    "extra_info": {
                        "index": offset + i,
                        "split": split,
                        "word": word,
                        "teacher_response": f"<answer> {rule[word]} </answer>",
                    },
                }
            )
        return rows


def corpus() -> list[str]:
    """Text the task's tokenizer is trained on: every word and tag it will see."""
    lines = [INSTRUCTION, "code", *FILLERS]
    lines += [f"<answer> {c} </answer>" for c in COLOURS]
    lines += [f"{f} code {w}." for w in CODE_WORDS for f in FILLERS[:3]]
    lines += ["user", "assistant", "system"]
    return lines * 4


def warm_start(model, tokenizer, task: RuleTask, steps: int = 60, batch_size: int = 16) -> None:
    """Teach the format on every code word, and the colour of the known ones; unknown ones get a random colour."""
    import torch

    from recipes.demo.tiny_model import train_on_answers

    rng = random.Random(task.seed)
    torch.manual_seed(task.seed)
    rule, known = task.rule(), set(task.known_words())
    colours = COLOURS[: task.num_colours]

    def batches():
        for _ in range(steps):
            prompts, targets = [], []
            for _ in range(batch_size):
                word = rng.choice(list(rule))
                messages = [{"role": "user", "content": task.prompt(word, rng)}]
                prompts.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
                colour = rule[word] if word in known else rng.choice(colours)
                targets.append(f"<answer> {colour} </answer><|im_end|>")
            full = [p + t for p, t in zip(prompts, targets, strict=True)]
            yield tokenizer(full, return_tensors="pt", padding=True), targets

    train_on_answers(model, tokenizer, batches())


def build(out_dir: str | Path, task: RuleTask) -> Path:
    """The task's data and warm-started model under ``out_dir`` (idempotent)."""
    import pandas as pd

    from recipes.demo.tiny_model import build_model, build_processor, build_tokenizer

    out_dir = Path(out_dir)
    data = out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        pd.DataFrame(task.rows(split)).to_parquet(data / f"{split}.parquet", index=False)
    model_dir = out_dir / "model"
    if not (model_dir / "model.safetensors").is_file():
        tokenizer = build_tokenizer(corpus())
        processor = build_processor(tokenizer)
        model = build_model(tokenizer, seed=task.seed)
        warm_start(model, tokenizer, task)
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-words", type=int, default=RuleTask.num_words)
    parser.add_argument("--num-colours", type=int, default=RuleTask.num_colours)
    parser.add_argument("--known", type=int, default=RuleTask.known)
    args = parser.parse_args()
    task = RuleTask(args.num_words, args.num_colours, args.known, seed=args.seed)
    print(build(args.out_dir, task))


if __name__ == "__main__":
    main()
