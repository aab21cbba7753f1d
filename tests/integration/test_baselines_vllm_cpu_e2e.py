"""GRPO and each baseline's demo through verl's real vLLM rollout with two training ranks (two vLLM replicas), as
``bash scripts/run_npo.sh --local --recipe NAME --rollout vllm --gpus-per-node 2`` runs it. NPO's own run with two
ranks through vLLM is the chain in ``test_npo_vllm_cpu_e2e.py``; with the in-worker rollout, the baselines' e2e files
run two ranks too. Each run is short: what two ranks break shows at the first steps (sharded weights, a batch split
over ranks and replicas, the recipes' own extra forwards)."""

import os

import pytest

VLLM_PYTHON = os.environ.get("NPO_VLLM_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON, reason="set NPO_VLLM_PYTHON (scripts/test.sh does, after setup_cpu.sh --vllm)"),
]

RUNS = {
    "grpo": (2, []),
    "luffy": (2, []),
    "exgrpo": (3, []),  # replay starts after the first step that solves anything: the entropy pass needs a step more
    "rlep": (2, ["rlep_collect.min_correct=1"]),  # the collection runs through vLLM too
}


@pytest.fixture(scope="module", params=sorted(RUNS))
def run(request, tmp_path_factory, demo_recipe):
    recipe = request.param
    steps, overrides = RUNS[recipe]
    records, output = demo_recipe(tmp_path_factory.mktemp(recipe), recipe, steps, *overrides, python=VLLM_PYTHON)
    return recipe, steps, records, output


def test_the_recipe_trains_on_two_ranks_through_vllm(run):
    recipe, steps, records, output = run
    assert len(records) == steps
    assert "[npo] training ranks: 0@" in output and " 1@" in output.split("[npo] training ranks:")[1].splitlines()[0]
    assert f"[run_npo] mode=local recipe={recipe} demo=1 rollout=vllm" in output
    assert all(step["response_length/mean"] > 0 for step in records)


def test_the_recipes_guides_reach_the_batch(run):
    recipe, _, records, _ = run
    guide_rows = sum(step.get("npo/inject/guide_rows", 0) for step in records)
    if recipe == "grpo":
        assert guide_rows == 0
    elif recipe == "luffy":
        assert all(step["npo/inject/guide_rows"] == step["npo/inject/groups"] for step in records)
    elif recipe == "exgrpo":  # stored from the replicas' responses, scored by the actor's entropy pass
        assert guide_rows > 0, [step.get("npo/replay/pool_questions") for step in records]
    else:
        assert guide_rows > 0, "the experience file's prompts come up in 8 prompts"
