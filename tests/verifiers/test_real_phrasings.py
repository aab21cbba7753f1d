"""Right answers as real models write them: prose, option phrasings, MATH-style numbers, lists of boxes.

Each row is a phrasing seen in third-party model outputs (see verifiers/README.md, "Measured on real material")
that was scored wrong before; none of them may be bought with a gaming pattern (tests/verifiers/test_reward_gaming.py).
"""

from __future__ import annotations

import pytest

from verifiers import verify
from verifiers.extract import extract_answer

OPTIONS = ("50", "51", "52", "53")
REASONING = "The figure shows two triangles.\nComparing the options one by one, only one fits.\n\n"


@pytest.mark.parametrize(
    ("response", "gold", "choices"),
    [
        # prose final answers with no box and no "answer is"
        pytest.param(r"Therefore $x \geq 5$ is the solution.", r"x \geq 5", None, id="math-span-is-the-solution"),
        pytest.param("Final Answer: The largest $n$ is 34.", "34", None, id="final-answer-sentence"),
        pytest.param("So the share of votes is around 31%.", "31", None, id="is-around-percent"),
        pytest.param("Adding both parts, the total length is 17.5 cm.\n", "17.5", None, id="is-value-with-unit-line"),
        # option phrasings
        pytest.param("Looking at the graph, the correct option is D", "D", OPTIONS, id="correct-option-is"),
        pytest.param("Thus, the answer is C (52).", "C", OPTIONS, id="letter-then-text-in-parentheses"),
        pytest.param(REASONING + "Option B) No", "B", ("Yes", "No"), id="option-letter-parenthesis"),
        pytest.param("答案：B", "B", OPTIONS, id="cjk-answer-colon"),
        pytest.param("所以答案是C。", "C", OPTIONS, id="cjk-answer-is"),
        pytest.param("综上，故选D", "D", OPTIONS, id="cjk-therefore-choose"),
        pytest.param(REASONING + r"\textbf{(C)}", "C", OPTIONS, id="bold-letter"),
        pytest.param(REASONING + r"(C) $\frac15$", "C", ("1", "5", "1/5", "5/1"), id="letter-with-latex-option-text"),
        pytest.param("A: The correct option letter is D", "D", OPTIONS, id="answer-label-then-letter"),
        # MATH-style numbers
        pytest.param(r"\boxed{11,\! 111,\! 111,\! 100}", "11111111100", None, id="digit-groups-thin-space"),
        pytest.param(r"\boxed{\$16386.17}", "16386.17", None, id="dollar-sign"),
        pytest.param(r"\boxed{10000}", r"10,\!000", None, id="gold-with-digit-groups"),
        pytest.param("The answer is 28 percent", r"28\%", None, id="percent-word"),
        pytest.param(r"\boxed{\frac{\sqrt3}{3} \approx 0.577}", r"\frac{\sqrt3}{3}", None, id="exact-then-approx"),
        pytest.param(r"\boxed{\frac{\sqrt3}{3} \approx 0.577}", "0.577", None, id="approx-against-a-decimal"),
        # several boxes that together make one list answer
        pytest.param(r"\boxed{1},\boxed{2},\boxed{3}", r"\{1,2,3\}", None, id="boxes-as-a-set"),
        pytest.param(r"The roots are $\boxed{-2}$ and $\boxed{5}$.", "-2, 5", None, id="boxes-joined-by-and"),
        pytest.param(
            r"$$\boxed{k = 45} \quad \text{and} \quad \boxed{n = 2}$$", "k = 45, n = 2", None, id="boxes-with-quad-and"
        ),
        # answers named in prose, with the options known (MathVista-style)
        pytest.param(
            "The organism whose population would decrease is the lizard.",
            "lizard",
            ("plant", "human", "lizard", "snake"),
            id="prose-names-one-option",
        ),
        pytest.param("No, there are fewer gray cars than minivans.", "No", ("Yes", "No"), id="leading-no"),
        pytest.param("Therefore, the answer to the question is (A) Yes.</s>", "Yes", ("Yes", "No"), id="stop-text"),
        pytest.param(
            "The correct option letter is D, Dark Seafoam.",
            "Dark Seafoam",
            ("Red", "Blue", "Green", "Dark Seafoam"),
            id="letter-comma-option-text",
        ),  # fmt: skip
        pytest.param("The nail is about 2 inches long.", "2", None, id="value-unit-adjective"),
        pytest.param("9 dots / 3 groups = 3 dots\n\nThere are 3 dots in each group.", "3", None, id="there-are-n"),
        pytest.param("There are three people in the image who were born later.", "3", None, id="number-word"),
        pytest.param("So the range is 9 - (-3) = **4**.\n\nI hope this helps!", "4", None, id="pleasantry"),
        pytest.param("The mode of the numbers is '53'.", "53", None, id="quoted-value"),
        pytest.param("所以，∠BCH的大小为30°，选项为C。", "30°", ("60°", "45°", "30°", "25°"), id="cjk-option-is"),
        pytest.param(
            "The answer to your question is (A) Yes. There are fewer SUVs.</s>",
            "Yes",
            ("Yes", "No"),
            id="answer-to-your-question",
        ),  # fmt: skip
        # other real forms from the grader suites
        pytest.param("$(3,2,7)$", "$(p,q,r)=(3,2,7)$", None, id="tuple-for-solved-tuple"),
        pytest.param("1 000", "1000", None, id="space-digit-groups"),
        pytest.param("Answer $ 9 $", "9", None, id="answer-then-math"),
        pytest.param(r"$\boxed{28 pct}", r"28\%", None, id="pct"),
        # matrices
        pytest.param(
            r"\boxed{\begin{bmatrix}1&2\\3&4\end{bmatrix}}",
            r"\begin{pmatrix}1&2\\3&4\end{pmatrix}",
            None,
            id="bmatrix-vs-pmatrix",
        ),
    ],
)
def test_right_answer_in_a_real_phrasing(response, gold, choices):
    result = verify(response, gold, choices=choices)
    assert result.correct, result


def test_an_answer_stated_after_an_intermediate_box_wins():
    """The rule: the last explicitly stated answer wins. An answer marker after the last box overrides it; prose
    after the box does not (it may be commentary); a box after the marker is the answer."""
    response = r"The width is $\boxed{3}$. So the area is $3 \cdot 4$. The final answer is 12."
    assert extract_answer(response).span == "12" and verify(response, "12").correct
    assert not verify(response, "3").correct
    commentary = r"The area is $\boxed{12}$. Note that the width is 3."
    assert extract_answer(commentary).span == "12"
    boxed_last = r"The answer is 12, as $\boxed{12}$ shows."
    assert extract_answer(boxed_last).source == "boxed"


@pytest.mark.parametrize(
    "response",
    [
        pytest.param("The answer is not clear from the figure.", id="no-value"),
        pytest.param("It is 5 or 6.", id="hedged-prose"),
        pytest.param("We know that x is positive.", id="no-number"),
        pytest.param("There are 3 cases to check, so we look at each one", id="number-not-at-the-end"),
    ],
)
def test_prose_extraction_stays_conservative(response):
    assert not verify(response, "5").correct
    extraction = extract_answer(response)
    assert extraction.source != "prose" or extraction.span is None
