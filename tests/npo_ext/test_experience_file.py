"""RLEP's experience file: written in lines, resumed, validated with file and line, drawn from reproducibly."""

import json

import pytest

from npo_ext.experience_file import (
    ExperienceFileError,
    ExperienceFileSource,
    ExperienceHeader,
    append_prompts,
    read_experience,
    start_file,
)

HEADER = ExperienceHeader(min_correct=2, samples_per_prompt=8, source_step=40)


def written(tmp_path, entries=None):
    path = tmp_path / "experience.jsonl"
    start_file(path, HEADER)
    append_prompts(path, entries or {"a/0": (8, [[1, 2], [3, 2], [4, 2]]), "b/1": (8, [[5, 2], [6, 2]])})
    return path


def test_the_file_round_trips(tmp_path):
    header, entries = read_experience(written(tmp_path))
    assert header == HEADER
    assert entries == {"a/0": [(1, 2), (3, 2), (4, 2)], "b/1": [(5, 2), (6, 2)]}


def test_a_resumed_collection_knows_what_it_has_and_drops_a_half_written_line(tmp_path):
    path = written(tmp_path)
    with open(path, "a") as f:
        f.write('{"key": "c/2", "num_sa')  # killed mid-write
    assert start_file(path, HEADER) == {"a/0", "b/1"}
    append_prompts(path, {"c/2": (8, [[7, 2], [8, 2]])})
    assert sorted(read_experience(path)[1]) == ["a/0", "b/1", "c/2"]


def test_resuming_with_other_settings_is_refused(tmp_path):
    path = written(tmp_path)
    with pytest.raises(ExperienceFileError, match="use a new file"):
        start_file(path, ExperienceHeader(min_correct=2, samples_per_prompt=16, source_step=40))


@pytest.mark.parametrize(
    "line, message",
    [
        ({"key": "c/2", "num_samples": 8, "responses": [[7, 2]]}, "line 3, field responses: 1 response"),
        ({"key": "a/0", "num_samples": 8, "responses": [[7, 2], [8, 2]]}, "line 3: prompt key 'a/0' appears twice"),
        ({"num_samples": 8}, "line 3: not a prompt entry"),
    ],
)
def test_a_bad_line_is_named(tmp_path, line, message):
    path = tmp_path / "experience.jsonl"
    start_file(path, HEADER)
    append_prompts(path, {"a/0": (8, [[1, 2], [3, 2]])})
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
    with pytest.raises(ExperienceFileError, match=message):
        read_experience(path)


def test_a_file_without_the_header_is_refused(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text('{"key": "a"}\n')
    with pytest.raises(ExperienceFileError, match="line 1: expected a header"):
        read_experience(path)
    with pytest.raises(ExperienceFileError, match="not found"):
        read_experience(tmp_path / "missing.jsonl")


def test_the_source_draws_distinct_replays_and_resumes_its_draws(tmp_path):
    path = written(tmp_path)
    source = ExperienceFileSource(path, per_group=2, seed=3)
    first = source.guides("a/0")
    assert len(first) == 2 and len(set(first)) == 2
    assert all(g.provenance == "earlier_run" and g.source_step == 40 for g in first)
    assert source.guides("missing/9") == []
    state = source.state_dict()
    expected = [source.guides("a/0") for _ in range(5)]
    resumed = ExperienceFileSource(path, per_group=2, seed=3)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # JSON-able, as saved with checkpoints
    assert [resumed.guides("a/0") for _ in range(5)] == expected
    draws = {tuple(g.response_ids for g in source.guides("a/0")) for _ in range(30)}
    assert len(draws) == 3, "all three pairs of the prompt's successes are drawn"
