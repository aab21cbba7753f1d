"""The verl reward API: shape of the result, weights, kwargs, and calls from threads and asyncio loops."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from verifiers import verify
from verifiers.reward import compute_score, compute_score_batch

RIGHT = "<think>13/46 doubled is 26/92</think><answer>\\dfrac{26}{92}</answer>"
WRONG_FORMATTED = "<think>guess</think><answer>1/2</answer>"
RIGHT_UNFORMATTED = "the answer is 13/46"


def test_result_keys_and_default_weights() -> None:
    assert compute_score("any", RIGHT, "\\frac{13}{46}") == {"score": 1.0, "acc": 1.0, "format": 1.0}
    assert compute_score("any", WRONG_FORMATTED, "\\frac{13}{46}") == pytest.approx(
        {"score": 0.1, "acc": 0.0, "format": 1.0}
    )
    assert compute_score("any", RIGHT_UNFORMATTED, "\\frac{13}{46}") == pytest.approx(
        {"score": 0.9, "acc": 1.0, "format": 0.0}
    )


def test_all_values_are_floats() -> None:
    assert all(type(v) is float for v in compute_score("any", RIGHT, "\\frac{13}{46}").values())


def test_format_template_and_weight_are_configurable() -> None:
    result = compute_score("any", RIGHT, "\\frac{13}{46}", format_template="thought_answer", format_weight=0.5)
    assert result == {"score": 0.5, "acc": 1.0, "format": 0.0}
    assert compute_score("any", RIGHT, "\\frac{13}{46}", format_weight=0.0)["score"] == 1.0


def test_untagged_instruct_style_earns_the_format_reward() -> None:
    assert compute_score("any", "2 + 2 = 4, so the answer is \\boxed{4}.", "4")["format"] == 1.0


def test_unknown_verl_kwargs_are_ignored() -> None:
    result = compute_score("any", RIGHT, "\\frac{13}{46}", reward_router_address=None, reward_model_tokenizer=None)
    assert result["acc"] == 1.0


def test_extra_info_fields_as_verl_passes_them() -> None:
    extra = {"choices": np.array(["10", "12", "14"], dtype=object), "answer_type": "multi_choice", "index": 3}
    assert compute_score("MathVista", "<answer>B</answer>", "12", extra)["acc"] == 1.0
    extra = {"tolerance": 1e-3, "precision": None}
    assert compute_score("x", "\\boxed{3.1416}", "3.1415", extra)["acc"] == 1.0


def test_data_source_selects_the_benchmark_rule() -> None:
    assert compute_score("LogicVista", "<answer>AC</answer>", "A, C")["acc"] == 1.0


@pytest.mark.parametrize(
    ("solution", "ground_truth"),
    [
        pytest.param(None, "5", id="none-solution"),
        pytest.param(b"\xff\xfe\\boxed{5}", "5", id="bytes-solution"),
        pytest.param("\\boxed{5}", None, id="none-gold"),
        pytest.param("\\boxed{5}", "", id="empty-gold"),
        pytest.param("\\boxed{5}", {"weird": "gold"}, id="mapping-gold"),
        pytest.param(12345, 12345, id="int-solution-and-gold"),
        pytest.param("\\boxed{5}", ["4", "5"], id="list-gold"),
    ],
)
def test_never_raises(solution, ground_truth) -> None:
    result = compute_score("any", solution, ground_truth, extra_info="not a mapping")
    assert set(result) == {"score", "acc", "format"}


def test_list_gold_accepts_any() -> None:
    assert compute_score("any", "\\boxed{5}", ["4", "5"])["acc"] == 1.0


def test_extra_info_answers_add_accepted_golds_to_a_string_ground_truth() -> None:
    """A parquet `ground_truth` is one string; `extra_info.answers` (a numpy array after verl's loading) holds the
    other accepted forms of the same answer."""
    extra = {"answers": np.array(["3.429", "24/7"], dtype=object)}
    scores = [compute_score("MMMU", f"\\boxed{{{a}}}", "3.429", extra)["acc"] for a in ("24/7", "3.429", "3.5")]
    assert scores == [1.0, 1.0, 0.0]
    assert compute_score("MMMU", "\\boxed{24/7}", "3.429", {"answers": None})["acc"] == 0.0


def test_batch_matches_single_calls() -> None:
    solutions = [RIGHT, WRONG_FORMATTED, RIGHT_UNFORMATTED, "\\boxed{x^2+2x+1}", "nothing"]
    golds = ["\\frac{13}{46}", "\\frac{13}{46}", "\\frac{13}{46}", "(x+1)^2", "3"]
    sources = ["a"] * len(solutions)
    batch = compute_score_batch(sources, solutions, golds, [{}] * len(solutions))
    assert batch == [compute_score(s, sol, g) for s, sol, g in zip(sources, solutions, golds, strict=True)]


def test_called_from_threads() -> None:
    results: list[dict] = []

    def work() -> None:
        results.append(compute_score("any", RIGHT, "\\frac{13}{46}"))
        results.append(compute_score("any", "\\boxed{\\lfloor 3.5 \\rfloor}", "4"))  # reaches a worker

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["acc"] for r in results) == [0.0] * 4 + [1.0] * 4


def test_no_signals_in_the_calling_process(monkeypatch) -> None:
    import signal

    def forbidden(*_args):
        raise AssertionError("signals must not be used in the reward path")

    monkeypatch.setattr(signal, "alarm", forbidden)
    monkeypatch.setattr(signal, "setitimer", forbidden)
    monkeypatch.setattr(signal, "signal", forbidden)
    symbolic = verify("\\boxed{\\lfloor 3.5 \\rfloor}", "4")
    assert (symbolic.method, symbolic.reason) in {("mathruler", "not_equivalent"), ("math_verify", "not_equivalent")}
    assert compute_score("any", RIGHT, "\\frac{13}{46}")["acc"] == 1.0


def test_called_from_an_asyncio_loop() -> None:
    async def main() -> list[dict]:
        loop = asyncio.get_running_loop()
        direct = compute_score("any", RIGHT, "\\frac{13}{46}")  # a synchronous call inside a coroutine
        # verl's reward loop pattern: the sync reward function runs in the loop's default executor (a thread).
        offloaded = await asyncio.gather(
            *(
                loop.run_in_executor(None, compute_score, "any", "\\boxed{\\lfloor 3.5 \\rfloor}", "3")
                for _ in range(3)
            ),
            loop.run_in_executor(None, compute_score, "any", RIGHT, "\\frac{13}{46}"),
        )
        return [direct, *offloaded]

    results = asyncio.run(main())
    assert results[0]["acc"] == 1.0 and results[-1]["acc"] == 1.0
    assert all(set(r) == {"score", "acc", "format"} for r in results)


def test_one_bad_extra_info_costs_only_its_own_sample() -> None:
    scores = compute_score_batch(
        ["a", "a", "a"],
        ["\\boxed{5}", "\\boxed{5}", "\\boxed{B}"],
        ["5", np.int64(5), "12"],
        [{"precision": float("nan")}, {}, {"choices": "A. 10 B. 12"}],
    )
    assert [s["acc"] for s in scores] == [0.0, 1.0, 0.0]
