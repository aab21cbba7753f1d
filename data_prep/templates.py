"""Instruction templates appended to each question; the names match `verifiers.formats` templates.

The format reward checks the response against a template, so training data and `reward_kwargs.format_template`
should name the same one. `thought_answer` is the NPO authors' (ReMind) instruction and the default.
"""

from __future__ import annotations

TEMPLATES = {
    "thought_answer": (
        "You FIRST think about the reasoning process as an internal monologue enclosed within <thought> </thought> "
        "tags. The final answer MUST be enclosed within <answer> </answer> tags."
    ),
    "think_answer": (
        "First think through the problem inside <think> </think> tags, then give only the final answer inside "
        "<answer> </answer> tags."
    ),
    "think_boxed": (
        "First think through the problem inside <think> </think> tags, then give the final answer in \\boxed{}."
    ),
    "answer_tag": "Give the final answer inside <answer> </answer> tags.",
    "boxed": "Give the final answer in \\boxed{}.",
    "none": "",
}
DEFAULT_TEMPLATE = "thought_answer"


def build_prompt(question: str, template: str) -> str:
    """The user message: the question (with its `<image>` tags), a blank line, then the instruction."""
    instruction = TEMPLATES[template]
    return f"{question.rstrip()}\n\n{instruction}" if instruction else question
