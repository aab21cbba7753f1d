"""LUFFY's start-up count of the training prompts whose teacher trace fits the response budget, as injection judges
it (the trace plus one EOS), and the refusal below ``guidance.teacher_min_fit_share``."""

from types import SimpleNamespace

import datasets
import pytest
from omegaconf import OmegaConf

from npo_ext.config import GuidanceConfig, NPOConfigError
from recipes.luffy.plugin import TeacherGuidance
from recipes.luffy.trace_budget import TraceFit, count_fitting_traces

EOS = 0
BUDGET = 4


class CharTokenizer:
    """One token per character; ``$`` is the EOS."""

    def encode(self, text, add_special_tokens=False):
        return [EOS if c == "$" else ord(c) for c in text]

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [self.encode(t) for t in texts]}


def count(traces):
    tokenizer = CharTokenizer()
    return count_fitting_traces(traces, lambda texts: tokenizer(texts)["input_ids"], [EOS], BUDGET)


def test_a_trace_fits_when_its_tokens_and_the_eos_do():
    # "abc" + EOS = 4 fits; "abcd" + EOS = 5 does not; "abc$" already ends with the EOS: 4 fits
    assert count(["abc", "abcd", "abc$", None, "  ", "ab"]) == TraceFit(prompts=6, missing=2, too_long=1)


def test_counting_goes_over_batches(monkeypatch):
    monkeypatch.setattr("recipes.luffy.trace_budget.BATCH_ROWS", 2)
    fit = count(["a", "abcdef", "b", "abcdefg", "c"])
    assert (fit.fits, fit.too_long, fit.share) == (3, 2, 0.6)


def trainer(traces, **guidance):
    rows = datasets.Dataset.from_dict({"extra_info": [{"teacher_response": t} for t in traces], "images": [b""] * 4})
    return SimpleNamespace(
        tokenizer=CharTokenizer(),
        guidance=GuidanceConfig(source="teacher", gated=False, **guidance),
        config=OmegaConf.create({"data": {"max_response_length": BUDGET}}),
        train_dataset=SimpleNamespace(dataframe=rows),
        eos_token_ids=(EOS,),
    )


def test_the_recipe_says_how_many_prompts_get_a_trace(capsys):
    TeacherGuidance(trainer(["ab", "abc", "a", None], teacher_min_fit_share=0.75))
    out = capsys.readouterr().out
    assert "3 of 4 training prompts (75.0%) have one that fits 4 response tokens; 1 have none" in out


def test_too_few_fitting_traces_stop_the_run_or_warn_by_option(capsys):
    traces = ["ab", "abcdef", "abcdefg", None]
    with pytest.raises(NPOConfigError, match="only 25.0% of the training prompts have a teacher trace that fits"):
        TeacherGuidance(trainer(traces))
    TeacherGuidance(trainer(traces, teacher_fit_check="warn"))
    assert "[npo] warning: only 25.0%" in capsys.readouterr().out


def test_the_options_are_checked():
    with pytest.raises(NPOConfigError, match="teacher_fit_check must be error or warn"):
        GuidanceConfig(source="teacher", gated=False, teacher_fit_check="ignore")
