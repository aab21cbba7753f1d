"""Per-row checks: each bad row gets one quarantine reason; the one fixable defect (missing `<image>` tags) is fixed.

Cheap checks run first, so an image is decoded only for rows that are otherwise usable. Duplicate ids need state
across rows and are decided by the converter, after these checks, so the first *valid* copy of an id is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from data_prep.budget import PromptBudget
from data_prep.images import ImageError, image_size
from data_prep.record import Record, Rejected
from data_prep.templates import build_prompt
from verifiers.answer_types import classify
from verifiers.chat import IMAGE_TAG

REASONS = {
    "missing_id": "the id is null or empty",
    "empty_question": "the question is null or empty",
    "empty_answer": "the gold answer is null or empty",
    "hidden_answer": "the gold answer is a placeholder ('?'): the split withholds its labels (MMMU test)",
    "missing_image": "an image has no bytes (null, empty, or a path that does not exist)",
    "image_tag_mismatch": "more <image> tags than images (fewer tags are fixed, see image_tag_added)",
    "stray_media_tag": "<video> or <audio> in the text, which verl would take for a placeholder",
    "corrupt_image": "image bytes that do not decode, or an aspect ratio Qwen-VL refuses",
    "prompt_too_long": "prompt plus visual tokens over --max-prompt-length",
    "duplicate_id": "an id already written (the first valid copy is kept)",
}
IMAGE_TAG_ADDED = "image_tag_added"
HIDDEN_ANSWERS = frozenset({"?"})
_STRAY_TAGS = ("<video>", "<audio>")


@dataclass
class Checked:
    """What a valid row becomes: the final user prompt, the stripped answer and its answer type."""

    prompt: str
    answer: str
    answer_type: str


def _reject(record: Record, reason: str, detail: str = "") -> Rejected:
    return Rejected(record.index, record.origin, record.id, reason, detail)


def align_image_tags(question: str, num_images: int) -> tuple[str, int]:
    """The question with missing `<image>` tags prepended, and how many were added (negative: too many tags)."""
    missing = num_images - question.count(IMAGE_TAG)
    return (IMAGE_TAG * missing + question, missing) if missing > 0 else (question, missing)


def check(record: Record, template: str, budget: PromptBudget, answer_type: str | None = None) -> Checked | Rejected:
    """The row's prompt, answer and answer type (`answer_type` when the caller already classified it), or the reason
    it is quarantined."""
    if not (record.id or "").strip():
        return _reject(record, "missing_id")
    if not (record.question or "").strip():
        return _reject(record, "empty_question")
    answer = (record.answer or "").strip()
    if not answer:
        return _reject(record, "empty_answer")
    if answer in HIDDEN_ANSWERS:
        return _reject(record, "hidden_answer", answer)
    missing = [i for i, data in enumerate(record.images) if not data]
    if missing:
        return _reject(record, "missing_image", f"image {missing[0]} of {len(record.images)}")
    stray = [tag for tag in _STRAY_TAGS if tag in record.question]
    if stray:
        return _reject(record, "stray_media_tag", stray[0])
    question, added = align_image_tags(record.question, len(record.images))
    if added < 0:
        detail = f"{record.question.count(IMAGE_TAG)} tags, {len(record.images)} images"
        return _reject(record, "image_tag_mismatch", detail)
    try:
        sizes = [image_size(data) for data in record.images]
    except ImageError as exc:
        return _reject(record, "corrupt_image", str(exc)[:200])
    prompt = build_prompt(question, template)
    if budget.enabled:
        tokens = budget.tokens(prompt, sizes)
        if tokens > budget.max_tokens:
            return _reject(record, "prompt_too_long", f"{tokens} > {budget.max_tokens} tokens")
    if added:
        record.fixes.append(IMAGE_TAG_ADDED)
    if answer_type is None:
        answer_type = classify(answer, record.choices, record.answer_type, record.multi_letter)
    return Checked(prompt, answer, answer_type)
