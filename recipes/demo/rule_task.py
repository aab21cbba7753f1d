"""A controllable task the tiny model learns with GRPO on 2 CPU cores: a hidden rule that maps code words to colours.

Each prompt names one code word inside a context of filler words; the answer is the colour a secret, seeded map
assigns to the code word. The map is balanced (every colour answers ``num_words / num_colours`` code words), and the
held-out split crosses ``val_contexts`` contexts with every code word, so an answer that ignores the code word, a
constant colour or any function of the context, scores exactly chance (1 / ``num_colours``) there. Held-out
contexts are made of their own filler words (``val_fillers`` of them), which never appear next to a task word in
training or in the warm start: a held-out prompt shares only the template and the code word with training. The
warm start teaches the answer format, and reading a code word on a map of other code words (``warmup_words``, asked
in every context, so any filler reads as noise), so the task's words start near chance and RL learns their colours.
Text only (the VL model gets no image), so steps are fast; the reward is the project's ``verifiers`` (answer inside
``<answer> </answer>``).

    python -m recipes.demo.rule_task DIR [--seed 0]    # DIR/data/{train,val}.parquet and DIR/model
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

DATA_SOURCE = "hidden_rule"
INSTRUCTION = "Give the colour inside <answer> </answer>."
CODE_WORDS = [
    "zor", "kel", "mip", "tav", "rux", "bon", "sef", "lar", "qin", "dov", "hul", "wex",
    "pim", "gad", "yot", "fen", "cra", "jis", "nub", "vok", "tib", "mep", "rad", "sul",
]  # fmt: skip
COLOURS = ["red", "green", "blue", "yellow", "black", "white", "pink", "grey"]
FILLERS = ["the", "a", "note", "says", "today", "word", "card", "shows", "then", "now", "here", "look"]
MAX_FILLERS = 3


@dataclass(frozen=True)
class RuleTask:
    num_words: int = 4
    num_colours: int = 4
    warmup_words: int = 8
    train_size: int = 256
    val_contexts: int = 16
    val_fillers: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_words + self.warmup_words > len(CODE_WORDS) or not 0 < self.num_colours <= len(COLOURS):
            raise ValueError(f"at most {len(CODE_WORDS)} code words and {len(COLOURS)} colours, got {self}")
        for name in ("num_words", "warmup_words"):
            if getattr(self, name) <= 0 or getattr(self, name) % self.num_colours:
                raise ValueError(f"{name} must be a positive multiple of num_colours ({self.num_colours}): {self}")
        if not 0 < self.val_fillers < len(FILLERS) or self.val_contexts > sum(
            self.val_fillers**size for size in range(1, MAX_FILLERS + 1)
        ):
            raise ValueError(f"val_fillers must leave filler words for training and make val_contexts: {self}")

    @property
    def val_size(self) -> int:
        return self.val_contexts * self.num_words

    def rule(self) -> dict[str, str]:
        """The secret map, code word -> colour: a seeded shuffle of each colour repeated equally often."""
        return self._balanced_map(CODE_WORDS[: self.num_words], "rule")

    def warmup_rule(self) -> dict[str, str]:
        """The warm start's own map, on other code words: it teaches the model to read the code word, not the rule."""
        return self._balanced_map(CODE_WORDS[self.num_words : self.num_words + self.warmup_words], "warmup")

    def _balanced_map(self, words: list[str], name: str) -> dict[str, str]:
        colours = COLOURS[: self.num_colours] * (len(words) // self.num_colours)
        random.Random(f"{self.seed}-{name}").shuffle(colours)
        return dict(zip(words, colours, strict=True))

    @cached_property
    def contexts(self) -> dict[str, list[tuple[str, ...]]]:
        """Filler sequences (1 to ``MAX_FILLERS`` words): held-out ones from ``val_fillers`` seeded filler words,
        training ones from the rest, so the two share no word."""
        rng = random.Random(f"{self.seed}-contexts")
        fillers = rng.sample(FILLERS, len(FILLERS))
        held_out, train = fillers[: self.val_fillers], fillers[self.val_fillers :]

        def sequences(words: list[str]) -> list[tuple[str, ...]]:
            return [c for size in range(1, MAX_FILLERS + 1) for c in itertools.product(words, repeat=size)]

        return {"val": rng.sample(sequences(held_out), self.val_contexts), "train": sequences(train)}

    def prompt(self, word: str, context: tuple[str, ...]) -> str:
        # the code word comes last, next to the answer: the tiny model attends over a few tokens, not a sentence
        return f"{' '.join(context)}. {INSTRUCTION} code {word}."

    def pairs(self, split: str) -> list[tuple[str, tuple[str, ...]]]:
        """(code word, context) per row: held-out = every context with every word; train = seeded draws."""
        if split == "val":
            return [(word, context) for context in self.contexts["val"] for word in self.rule()]
        rng = random.Random(f"{self.seed}-train")
        words = list(self.rule())
        return [(rng.choice(words), rng.choice(self.contexts["train"])) for _ in range(self.train_size)]

    def rows(self, split: str) -> list[dict]:
        rule = self.rule()
        offset = 0 if split == "train" else self.train_size
        return [
            {
                "data_source": DATA_SOURCE,
                "prompt": [{"role": "user", "content": self.prompt(word, context)}],
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
            for i, (word, context) in enumerate(self.pairs(split))
        ]


def corpus() -> list[str]:
    """Text the task's tokenizer is trained on: every word and tag it will see."""
    lines = [INSTRUCTION, "code", *FILLERS]
    lines += [f"<answer> {c} </answer>" for c in COLOURS]
    lines += [f"{f} code {w}." for w in CODE_WORDS for f in FILLERS[:3]]
    lines += ["user", "assistant", "system"]
    return lines * 4


def warm_start(model, tokenizer, task: RuleTask, steps: int = 300, batch_size: int = 16) -> None:
    """Teach the answer format and the skill of reading a code word, on the warm-up map; in the last quarter a
    quarter of each batch asks a task word with a random colour, which spreads the task words' answers over the
    colours (the format, not the rule). Mixed from the start, the tiny model settles on answers that ignore the word;
    warm-up words alone leave every task word on one colour, which GRPO can rarely escape."""
    import torch

    from recipes.demo.tiny_model import train_on_answers

    rng = random.Random(f"{task.seed}-warm-start")
    torch.manual_seed(task.seed)
    warmup, words = task.warmup_rule(), list(task.rule())
    colours = COLOURS[: task.num_colours]

    def batches():
        for step in range(steps):
            prompts, targets = [], []
            for i in range(batch_size):
                spread = step >= steps * 3 // 4 and i % 4 == 0
                word = rng.choice(words) if spread else rng.choice(list(warmup))
                contexts = task.contexts["train"] if spread else rng.choice(list(task.contexts.values()))
                messages = [{"role": "user", "content": task.prompt(word, rng.choice(contexts))}]
                prompts.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
                colour = warmup[word] if word in warmup else rng.choice(colours)
                targets.append(f"<answer> {colour} </answer><|im_end|>")
            full = [p + t for p, t in zip(prompts, targets, strict=True)]
            yield tokenizer(full, return_tensors="pt", padding=True), targets

    train_on_answers(model, tokenizer, batches())


def build(out_dir: str | Path, task: RuleTask) -> Path:
    """The task's data and warm-started model under ``out_dir``; an existing build is reused only if it was made for
    the same task (``task.json``)."""
    import pandas as pd

    from recipes.demo.tiny_model import save_demo_model

    out_dir = Path(out_dir)
    data = out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        pd.DataFrame(task.rows(split)).to_parquet(data / f"{split}.parquet", index=False)
    model_dir, stamp = out_dir / "model", out_dir / "task.json"
    fields = json.dumps(asdict(task), sort_keys=True)
    built = (model_dir / "model.safetensors").is_file() and stamp.is_file() and stamp.read_text() == fields
    if not built:
        save_demo_model(
            model_dir, corpus(), task.seed, lambda model, processor: warm_start(model, processor.tokenizer, task)
        )
        stamp.write_text(fields)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-words", type=int, default=RuleTask.num_words)
    parser.add_argument("--num-colours", type=int, default=RuleTask.num_colours)
    parser.add_argument("--warmup-words", type=int, default=RuleTask.warmup_words)
    parser.add_argument("--val-contexts", type=int, default=RuleTask.val_contexts)
    parser.add_argument("--val-fillers", type=int, default=RuleTask.val_fillers)
    args = parser.parse_args()
    task = RuleTask(
        args.num_words, args.num_colours, args.warmup_words, val_contexts=args.val_contexts,
        val_fillers=args.val_fillers, seed=args.seed,
    )  # fmt: skip
    print(build(args.out_dir, task))


if __name__ == "__main__":
    main()
