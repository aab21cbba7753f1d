"""A small generated multimodal dataset with verifiable answers: coloured shapes, "how many?" or "what colour?".

Rows follow verl's RL parquet schema (``prompt`` with one ``<image>`` per image, ``images`` as PNG bytes,
``reward_model.ground_truth``, ``extra_info.index``), so verl's own ``RLHFDataset`` loads them unchanged.
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 220), "yellow": (230, 210, 40)}
COUNT_WORDS = ["1", "2", "3", "4"]
INSTRUCTION = "Think briefly, then give the final answer inside <answer> </answer>."
DATA_SOURCE = "npo_demo/shapes"
IMAGE_SIDE = 64


def _draw(num_shapes: int, colour: str, rng: random.Random) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (IMAGE_SIDE, IMAGE_SIDE), "white")
    draw = ImageDraw.Draw(image)
    cells = rng.sample(range(4), num_shapes)
    for cell in cells:
        x0, y0 = (cell % 2) * 32 + 4, (cell // 2) * 32 + 4
        box = (x0, y0, x0 + 22, y0 + 22)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=COLOURS[colour])
        else:
            draw.rectangle(box, fill=COLOURS[colour])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_row(index: int, split: str, rng: random.Random) -> dict:
    """One verl RL row: a count question or a colour question about a generated image."""
    colour = rng.choice(sorted(COLOURS))
    if rng.random() < 0.5:
        num_shapes = rng.randint(1, 4)
        question, answer = "How many shapes are in the image?", str(num_shapes)
    else:
        num_shapes = 1
        question, answer = "What colour is the shape?", colour
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": f"<image>{question} {INSTRUCTION}"}],
        "images": [{"bytes": _draw(num_shapes, colour, rng), "path": None}],
        "ability": "visual_reasoning",
        "reward_model": {"style": "rule", "ground_truth": answer},
        # a correct worked answer, the demo's stand-in for a teacher model's trace (the LUFFY recipe's guidance)
        "extra_info": {
            "index": index,
            "split": split,
            "question": question,
            "teacher_response": f"I see it, so the answer is <answer> {answer} </answer>",
        },
    }


def answer_choices(question: str) -> list[str]:
    """Every answer a question of this kind can have."""
    return COUNT_WORDS if question.startswith("How many") else sorted(COLOURS)


def row_messages(row: dict) -> tuple[list[dict], object]:
    """Chat messages and the PIL image of a row, as verl's dataset would build them."""
    from PIL import Image

    image = Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
    text = row["prompt"][0]["content"].replace("<image>", "")
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}], image


def corpus() -> list[str]:
    """Text the demo tokenizer is trained on: the prompts, answers and answer tags it will see."""
    lines = [INSTRUCTION, "How many shapes are in the image?", "What colour is the shape?"]
    lines += [f"<answer> {a} </answer>" for a in [*COUNT_WORDS, *COLOURS]]
    lines += [f"I see {n} {c} shapes, so the answer is {n}." for n in COUNT_WORDS for c in COLOURS]
    lines += ["user", "assistant", "system", "Let me think step by step.", "The shape is", "There are"]
    return lines * 4


def write_shapes_parquet(out_dir: str | Path, train_size: int = 64, val_size: int = 16, seed: int = 0) -> Path:
    """Write ``train.parquet`` and ``val.parquet`` into ``out_dir`` (deterministic for a given seed)."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, size, offset in (("train", train_size, 0), ("val", val_size, train_size)):
        rows = [make_row(offset + i, split, rng) for i in range(size)]
        pd.DataFrame(rows).to_parquet(out_dir / f"{split}.parquet", index=False)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--train-size", type=int, default=64)
    parser.add_argument("--val-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_shapes_parquet(args.out_dir, args.train_size, args.val_size, args.seed))


if __name__ == "__main__":
    main()
