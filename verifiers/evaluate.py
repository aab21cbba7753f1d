"""`python -m verifiers.evaluate`: generate answers for a benchmark parquet, score them, print the accuracy table.

    python -m verifiers.evaluate --model PATH --data FILE.parquet [--output OUT.jsonl] [--backend auto]
        [--max-new-tokens 4096] [--temperature 0] [--top-p 1] [--batch-size 8] [--limit N] [--benchmark NAME]
        [--csv PATH] [vLLM engine options: --gpu-memory-utilization --kv-cache-gib --tensor-parallel-size
        --data-parallel-size --max-model-len --max-num-seqs --dtype --enforce-eager]

The parquet is in verl's RL schema: `prompt` (chat messages whose content holds one `<image>` per image), `images`
(list of {bytes, path}), `reward_model.ground_truth`, `data_source`, and `extra_info` (may carry `id`/`index`,
`choices`, `answer_type`, `tolerance`, `precision`, `group`/`qid`). Rows without images are plain text prompts.

Generation uses vLLM when a GPU and vLLM are present and transformers otherwise (`--backend` forces one); both are
imported only when used. vLLM runs one engine per tensor-parallel group of the visible GPUs (`verifiers.vllm_engine`).
Each batch is scored and appended to the output JSONL at once, so a killed run resumes where it stopped: ids already
in the output are skipped. The decoding settings are written next to the output (`OUT.protocol.json`), because
rule-based scores are only comparable under the same protocol.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from verifiers.chat import pil_image, structured_messages
from verifiers.check import Item, verify_batch
from verifiers.cli import report
from verifiers.jsonl import dumps, read_rows
from verifiers.vllm_engine import VLLMOptions, add_vllm_arguments, options_from_args

_FIELDS = ("choices", "answer_type", "tolerance", "precision", "group", "qid")


@dataclass
class Sample:
    """One prompt to answer: chat messages (string content with `<image>` tags), image bytes, and row fields."""

    id: str
    messages: list[dict]
    images: list[bytes]
    fields: dict


@dataclass(frozen=True)
class Protocol:
    """Everything that changes a generated answer, recorded with the results."""

    model: str
    data: str
    backend: str
    max_new_tokens: int
    temperature: float
    top_p: float

    def sampling(self) -> dict[str, Any]:
        """vLLM's SamplingParams for this protocol."""
        return {"max_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p}


def _image_bytes(image: Any) -> bytes:
    if isinstance(image, dict):
        if image.get("bytes"):
            return bytes(image["bytes"])
        return Path(image["path"]).read_bytes()
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    return Path(str(image)).read_bytes()


def load_samples(path: str | Path, benchmark: str | None = None, limit: int | None = None) -> list[Sample]:
    """Rows of a verl RL parquet as samples; `benchmark` overrides `data_source` as the report key."""
    import pyarrow.parquet as pq

    samples: list[Sample] = []
    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        for row in parquet.read_row_group(group).to_pylist():
            extra = row.get("extra_info") or {}
            index = len(samples)
            prompt = row["prompt"]
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            fields = {key: extra[key] for key in _FIELDS if extra.get(key) is not None}
            fields["answer"] = (row.get("reward_model") or {}).get("ground_truth")
            fields["benchmark"] = benchmark or row.get("data_source")
            sample_id = str(extra.get("id", extra.get("index", index)))
            samples.append(Sample(sample_id, messages, [_image_bytes(i) for i in row.get("images") or []], fields))
            if limit is not None and len(samples) >= limit:
                return samples
    return samples


def _structured(sample: Sample) -> list[dict]:
    return structured_messages(sample.messages, len(sample.images))


class TransformersGenerator:
    """CPU (or single-GPU) generation with transformers; a processor when the model has a vision tower."""

    def __init__(self, model_path: str, protocol: Protocol) -> None:
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        self.torch = torch
        self.protocol = protocol
        self.multimodal = hasattr(AutoConfig.from_pretrained(model_path), "vision_config")
        if self.multimodal:
            self.processor = AutoProcessor.from_pretrained(model_path)
            self.tokenizer = self.processor.tokenizer
            self.model = AutoModelForImageTextToText.from_pretrained(model_path)
        else:
            self.tokenizer = self.processor = AutoTokenizer.from_pretrained(model_path)
            self.model = AutoModelForCausalLM.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        self.model.eval()

    def generate(self, samples: Sequence[Sample]) -> list[str]:
        if self.multimodal:
            texts = [
                self.processor.apply_chat_template(_structured(s), add_generation_prompt=True, tokenize=False)
                for s in samples
            ]
            images = [pil_image(data) for s in samples for data in s.images]
            inputs = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        else:
            texts = [
                self.tokenizer.apply_chat_template(s.messages, add_generation_prompt=True, tokenize=False)
                for s in samples
            ]
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True)
        sampling = (
            {"do_sample": True, "temperature": self.protocol.temperature, "top_p": self.protocol.top_p}
            if self.protocol.temperature > 0
            else {"do_sample": False}
        )
        with self.torch.no_grad():
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.protocol.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        return self.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def make_generator(protocol: Protocol, vllm_options: VLLMOptions | None = None) -> Any:
    """The protocol's backend: transformers in this process, or vLLM engines (``verifiers.vllm_engine``)."""
    if protocol.backend == "vllm":
        from verifiers.vllm_engine import make_vllm_generator

        return make_vllm_generator(protocol.model, protocol.sampling(), vllm_options or VLLMOptions())
    return TransformersGenerator(protocol.model, protocol)


def resolve_backend(backend: str) -> str:
    """`auto` picks vLLM when a GPU and vLLM are both available, transformers otherwise."""
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "transformers"


def done_ids(output: Path) -> set[str]:
    """Ids already scored in an earlier (possibly killed) run."""
    if not output.exists():
        return set()
    return {str(row["id"]) for _, row, _ in read_rows(output) if row is not None and "id" in row}


def _batches(samples: Sequence[Sample], size: int) -> Iterator[Sequence[Sample]]:
    for start in range(0, len(samples), size):
        yield samples[start : start + size]


def _append_handle(output: Path):
    """Open for appending; a line cut short by a killed run is closed first so the next row stays valid."""
    needs_newline = output.exists() and output.stat().st_size > 0 and output.read_bytes()[-1:] != b"\n"
    handle = open(output, "a", encoding="utf-8")
    if needs_newline:
        handle.write("\n")
    return handle


def _generate_safely(generator: Any, batch: Sequence[Sample]) -> list[str | None]:
    """Predictions for a batch; a row that cannot be prepared (tag/image mismatch) gets None, the rest still run."""
    usable = []
    for sample in batch:
        try:
            _structured(sample)
            usable.append(True)
        except ValueError as exc:
            usable.append(False)
            print(f"verifiers.evaluate: row {sample.id} skipped: {exc}", file=sys.stderr)
    ready = [sample for sample, ok in zip(batch, usable, strict=True) if ok]
    generated = iter(generator.generate(ready) if ready else [])
    return [next(generated) if ok else None for ok in usable]


def run(
    protocol: Protocol,
    output: Path,
    batch_size: int = 8,
    benchmark: str | None = None,
    limit: int | None = None,
    vllm_options: VLLMOptions | None = None,
    generator: Any | None = None,
) -> int:
    """Generate and score every sample not yet in `output`; returns how many were added. A ``generator`` passed in
    (one engine for several benchmarks) is used and left open; otherwise one is built for this call and closed."""
    samples = load_samples(protocol.data, benchmark, limit)
    finished = done_ids(output)
    todo = [s for s in samples if s.id not in finished]
    output.parent.mkdir(parents=True, exist_ok=True)
    recorded = asdict(protocol)
    if protocol.backend == "vllm":  # the dtype changes answers; the rest is recorded for the reader
        recorded["vllm"] = asdict(vllm_options or VLLMOptions())
    output.with_name(output.name + ".protocol.json").write_text(json.dumps(recorded, indent=2) + "\n")
    if not todo:
        return 0
    if generator is not None:
        _answer_and_score(generator, todo, output, batch_size)
        return len(todo)
    generator = make_generator(protocol, vllm_options)
    try:
        _answer_and_score(generator, todo, output, batch_size)
    finally:
        if hasattr(generator, "close"):
            generator.close()
    return len(todo)


def _answer_and_score(generator: Any, todo: Sequence[Sample], output: Path, batch_size: int) -> None:
    from tqdm import tqdm

    with _append_handle(output) as out, tqdm(total=len(todo), desc="evaluate", unit="sample") as bar:
        for batch in _batches(todo, batch_size):
            predictions = _generate_safely(generator, batch)
            pairs = list(zip(batch, predictions, strict=True))
            items = [Item.from_fields(pred, sample.fields["answer"], None, sample.fields) for sample, pred in pairs]
            for sample, prediction, verdict in zip(batch, predictions, verify_batch(items), strict=True):
                row = {"id": sample.id, **sample.fields, "prediction": prediction, **verdict.to_dict()}
                if prediction is None:
                    row["reason"] = "bad_row"
                out.write(dumps(row))
            out.flush()
            bar.update(len(batch))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifiers.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="local Hugging Face model folder")
    parser.add_argument("--data", required=True, help="benchmark parquet in verl's RL schema")
    parser.add_argument("--output", default=None, help="results JSONL (default outputs/eval/<model>/<data>.jsonl)")
    parser.add_argument("--backend", choices=("auto", "transformers", "vllm"), default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=4096)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows")
    parser.add_argument("--benchmark", default=None, help="report key and matching rule (default: data_source)")
    parser.add_argument("--csv", default=None, help="also write the accuracy table as CSV")
    add_vllm_arguments(parser)
    args = parser.parse_args(argv)
    output = Path(args.output or Path("outputs/eval") / Path(args.model).name / (Path(args.data).stem + ".jsonl"))
    protocol = Protocol(
        args.model, args.data, resolve_backend(args.backend), args.max_new_tokens, args.temperature, args.top_p
    )
    added = run(protocol, output, args.batch_size, args.benchmark, args.limit, options_from_args(args))
    print(f"verifiers.evaluate: {added} new answer(s) in {output} ({json.dumps(asdict(protocol))})", file=sys.stderr)
    print(report(str(output), args.csv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
