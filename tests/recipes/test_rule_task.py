"""The hidden-rule task measures learning the rule: nothing that ignores the code word beats chance on the held-out
split, and no held-out prompt is seen in training."""

from collections import Counter

import pytest

from recipes.demo.rule_task import FILLERS, INSTRUCTION, RuleTask

SEEDS = range(16)


def answers(task: RuleTask, split: str) -> list[tuple[str, str]]:
    """(prompt text, right colour) per row."""
    return [(r["prompt"][0]["content"], r["reward_model"]["ground_truth"]) for r in task.rows(split)]


@pytest.mark.parametrize("seed", SEEDS)
def test_no_constant_answer_beats_chance_on_the_held_out_split(seed):
    task = RuleTask(seed=seed)
    truth = Counter(colour for _, colour in answers(task, "val"))
    assert set(truth) == set(task.rule().values())
    assert max(truth.values()) / task.val_size == pytest.approx(1 / task.num_colours)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_best_answer_from_the_context_alone_scores_chance(seed):
    # the strongest answer that ignores the code word: per held-out context, the colour most often right there
    # (fitted on the held-out split itself); it is still right on exactly 1 / num_colours of the prompts
    task = RuleTask(seed=seed)
    rows = task.pairs("val")
    by_context: dict = {}
    for word, context in rows:
        by_context.setdefault(context, Counter())[task.rule()[word]] += 1
    best = sum(max(counts.values()) for counts in by_context.values())
    assert best / len(rows) == pytest.approx(1 / task.num_colours)


def context_words(text: str) -> set[str]:
    """The filler words of a prompt: everything before the instruction."""
    context, _, rest = text.partition(". ")
    assert rest.startswith(INSTRUCTION), text
    return set(context.split())


@pytest.mark.parametrize("seed", SEEDS)
def test_held_out_prompts_share_no_text_with_training_but_the_template_and_the_code_word(seed):
    task = RuleTask(seed=seed)
    train = [text for text, _ in answers(task, "train")]
    val = [text for text, _ in answers(task, "val")]
    train_words = set().union(*map(context_words, train))
    val_words = set().union(*map(context_words, val))
    assert len(val_words) == task.val_fillers and len(train_words) == len(FILLERS) - task.val_fillers
    assert not train_words & val_words
    # the warm start asks task words only in training contexts
    assert not {w for context in task.contexts["train"] for w in context} & val_words


def test_every_code_word_is_asked_in_both_splits():
    task = RuleTask(seed=0)
    assert {w for w, _ in task.pairs("train")} == {w for w, _ in task.pairs("val")} == set(task.rule())


def test_the_warm_start_reads_other_code_words_than_the_task_asks():
    task = RuleTask(seed=0)
    assert not set(task.warmup_rule()) & set(task.rule())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"num_words": 6, "num_colours": 4}, "num_words must be a positive multiple"),
        ({"warmup_words": 6, "num_colours": 4}, "warmup_words must be a positive multiple"),
        ({"num_words": 16, "warmup_words": 16}, "at most 24 code words"),
        ({"val_fillers": 12}, "val_fillers must leave filler words"),
        ({"val_fillers": 2, "val_contexts": 15}, "val_fillers must leave filler words"),
    ],
)
def test_a_task_that_could_not_be_balanced_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        RuleTask(**fields)
