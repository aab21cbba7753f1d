"""Prompt keys join several fields, so datasets that each number from 0 don't collide; collisions are errors."""

import numpy as np
import pytest

from npo_ext.config import NPOConfig, NPOConfigError
from npo_ext.guide_pool import GuidePool, PromptGuides
from npo_ext.prompt_keys import DuplicatePromptKeyError, check_one_prompt_per_key, prompt_keys

FIELDS = ("data_source", "index")


def test_keys_join_the_fields_so_two_datasets_numbered_from_zero_stay_apart():
    batch = {"data_source": np.array(["mathvista", "wemath"], dtype=object), "index": np.array([0, 0])}
    assert prompt_keys(batch, FIELDS) == ["mathvista/0", "wemath/0"]
    assert prompt_keys(batch, ("index",)) == ["0", "0"]


def test_a_missing_field_names_the_option_and_the_fields_present():
    with pytest.raises(NPOConfigError, match=r"npo\.prompt_key=\['data_source', 'index'\].*\['index'\].*have \['data"):
        prompt_keys({"data_source": np.array(["a"])}, FIELDS)


def test_rows_of_one_prompt_share_a_key_and_different_prompts_may_not():
    keys, uids = ["a/0", "a/0", "a/1", "a/1"], ["u", "u", "v", "v"]
    check_one_prompt_per_key(keys, uids, FIELDS)
    with pytest.raises(DuplicatePromptKeyError, match=r"rows 0 and 2 .* same key 'a/0'.*extra_info\.index"):
        check_one_prompt_per_key(["a/0", "a/0", "a/0", "a/0"], uids, FIELDS)


def test_the_guide_pool_refuses_a_key_twice():
    pool = GuidePool()
    pool.add("a/0", PromptGuides(8, 0, []))
    with pytest.raises(DuplicatePromptKeyError, match="'a/0' appears in more than one prompt"):
        pool.add("a/0", PromptGuides(8, 1, []))


def test_the_option_takes_one_field_or_several():
    assert NPOConfig().prompt_key == FIELDS
    assert NPOConfig.from_dict({"prompt_key": "index"}).prompt_key == ("index",)
    assert NPOConfig.from_dict({"prompt_key": ["data_source", "index"]}).prompt_key == FIELDS
    with pytest.raises(NPOConfigError, match="npo.prompt_key must name"):
        NPOConfig.from_dict({"prompt_key": []})
