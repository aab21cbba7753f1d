"""The verification pipeline: extract, classify, then the cheapest method that decides.

Per answer: exact match, normalised match, option letters / yes-no / free text, then exact-rational and fixed-point
evaluation (`verifiers.compare`), all in-process without sympy. Only pairs those cannot decide go to the symbolic
worker pool (mathruler, then math-verify), one batch at a time so a whole rollout batch shares the workers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from verifiers.answer_types import MATH_TYPES, NUMERIC_TYPES, classify, yes_no
from verifiers.benchmarks import BenchmarkRule, rule_for
from verifiers.choice import letters_in
from verifiers.compare import Tolerance, equal
from verifiers.extract import extract_answer, separate_boxes
from verifiers.guard import refusal
from verifiers.normalize import clean_latex, normalize_text, read_decimal_comma, sanitize, strip_units
from verifiers.parse import MAX_SPAN_CHARS, ParseError, free_vars, parse
from verifiers.pool import WorkerPool, default_pool
from verifiers.result import VerifyResult

# A span offering alternatives ("5 or 6", "(A) or (B)", "yes or no"): wrong unless the gold answer has several values.
_HEDGE_RE = re.compile(r"(?i)\bor\b|或|\\lor(?![a-zA-Z])|\\vee(?![a-zA-Z])")
_RELATION_RE = re.compile(r"=|<|>|\\(?:le|ge|leq|geq|ne|neq|lt|gt|approx|leqslant|geqslant)(?![a-zA-Z])")
_INEQUALITY_RE = re.compile(r"<|>|\\(?:le|ge|leq|geq|ne|neq|lt|gt|leqslant|geqslant)(?![a-zA-Z])")
_NAME = r"[A-Za-z](?:_\{?\w+\}?)?"
_SOLVED_FOR_RE = re.compile(
    rf"^\s*(?:{_NAME}|\(\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\))\s*=(?!=)|(?<![=<>!])=\s*{_NAME}\s*$"
)
# A left side that only names the quantity its right side gives: a segment `AB` or `|AB|`, an indexed letter
# `V_{1}`, a function value `f(x)`, a ratio `V_{1}:V_{2}` or quotient `\\frac{NO}{BO}` of such names.
_QUANTITY = r"(?:[A-Z]{1,4}|[A-Za-z](?:_\{?\w+\}?)?)"
_LABEL_RE = re.compile(
    rf"^\s*(?:\|{_QUANTITY}\||[a-z]\(\s*\w\s*\)|{_QUANTITY}(?:\s*[:/]\s*{_QUANTITY})?"
    rf"|\\frac\{{{_QUANTITY}\}}\{{{_QUANTITY}\}})\s*=(?![=<>])"
)
_RATIO_RE = re.compile(r"\d+(?:\.\d+)?(?:\s*:\s*\d+(?:\.\d+)?)+")


@dataclass(frozen=True)
class Item:
    """One prediction to check. `answer` may list several accepted answers; `choices` are option texts A, B, …"""

    prediction: str | bytes | None
    answer: str | int | float | Sequence[str]
    answer_type: str | None = None
    choices: tuple[str, ...] | None = None
    benchmark: str | None = None
    tolerance: Tolerance | None = None

    @classmethod
    def from_fields(cls, prediction: Any, answer: Any, benchmark: Any = None, fields: Any = None) -> Item:
        """An item from a verl sample or a JSONL row; `fields` (verl's `extra_info`, or the row itself) may hold
        `answer_type`, `choices`, `answers` (every accepted answer, when a parquet string gold cannot hold them all),
        `benchmark`, `tolerance` (absolute, or {"abs", "rel"}) and `precision`."""
        fields = fields if isinstance(fields, Mapping) else {}
        choices = _strings(fields.get("choices"))
        if answer is None:
            answer = ""
        elif isinstance(answer, str) or not isinstance(answer, Iterable):
            answer = str(answer)  # also numpy scalars from parquet
        else:
            answer = [str(a) for a in answer]
        accepted = _strings(fields.get("answers"))
        if accepted:
            answer = list(dict.fromkeys([*([answer] if isinstance(answer, str) else answer), *accepted]))
        return cls(
            prediction=prediction,
            answer=answer,
            answer_type=fields.get("answer_type"),
            choices=choices,
            benchmark=fields.get("benchmark") or (None if benchmark is None else str(benchmark)),
            tolerance=_tolerance(fields.get("tolerance"), fields.get("precision")),
        )


def _strings(value: Any) -> tuple[str, ...] | None:
    """A non-empty list-like field (a list, or the numpy array parquet gives) as strings; a single string is no list."""
    if value is None or isinstance(value, str) or not isinstance(value, Iterable):
        return None
    items = tuple(str(v) for v in value)
    return items or None


def _tolerance(tolerance: Any, precision: Any) -> Tolerance | None:
    """A number is an absolute tolerance; a mapping gives {"abs", "rel"}; `precision` rounds before comparing."""
    if tolerance is None and precision is None:
        return None
    if isinstance(tolerance, Mapping):
        abs_tol, rel_tol = float(tolerance.get("abs", 0.0)), float(tolerance.get("rel", 0.0))
    else:
        abs_tol, rel_tol = float(tolerance or 0.0), 0.0
    return Tolerance(abs=abs_tol, rel=rel_tol, precision=None if precision is None else int(precision))


@dataclass(frozen=True)
class _Symbolic:
    """A pair the in-process methods could not decide, waiting for a worker's reply."""

    extracted: str
    answer_type: str
    gold: str
    pred: str

    def resolve(self, reply: dict) -> VerifyResult:
        return VerifyResult(
            bool(reply.get("correct")),
            self.extracted,
            self.answer_type,
            str(reply.get("method", "symbolic")),
            str(reply.get("reason", "crash")),
        )


@lru_cache(maxsize=8192)
def _math_form(span: str) -> tuple[str, tuple | None]:
    """Cleaned, unit-free text and its parse tree (None outside the grammar); cached across a rollout group."""
    text = strip_units(clean_latex(span))
    try:
        return text, parse(text)
    except ParseError:
        return text, None


def _check_choice(span: str, gold: str, item: Item, rule: BenchmarkRule) -> VerifyResult:
    expected = letters_in(gold, item.choices, rule.multi_letter)
    got = letters_in(span, item.choices, rule.multi_letter)
    if expected is None:
        return VerifyResult(False, span, "choice", "choice", "gold_not_a_choice")
    if got is None:
        return VerifyResult(False, span, "choice", "choice", "no_choice")
    return VerifyResult(expected == got, span, "choice", "choice", "match" if expected == got else "mismatch")


def _check_text(span: str, gold: str, rule: BenchmarkRule) -> VerifyResult:
    want, got = normalize_text(gold), normalize_text(span)
    if want == got:
        return VerifyResult(True, span, "text", "normalized", "match")
    if rule.text_substring and want and want in got:
        return VerifyResult(True, span, "text", "substring", "match")
    return VerifyResult(False, span, "text", "normalized", "mismatch")


def _labelled_value(gold_text: str) -> str | None:
    """What a gold that only names its quantities states: `|AB|=1` -> `1`, `AB=4, CD=5` -> `4, 5`,
    `V_{1}:V_{2}=11:21` -> `11:21`; None unless every right side is a constant (`x^2+y^2=25` is no label)."""
    values = []
    for part in gold_text.split(","):
        m = _LABEL_RE.match(part)
        value = part[m.end() :].strip() if m else ""
        tree = _math_form(value)[1] if value else None
        constant = tree is not None and tree[0] != "rel" and not free_vars(tree)
        if not (constant or _RATIO_RE.fullmatch(value)):
            return None
        values.append(value)
    return ", ".join(values)


def _check_math(span: str, gold: str, answer_type: str, tol: Tolerance | None) -> VerifyResult | _Symbolic:
    gold_text, gold_tree = _math_form(gold)
    pred_text, pred_tree = _math_form(span)
    if "=" in gold_text and not _RELATION_RE.search(pred_text):
        value = _labelled_value(gold_text)
        if value is not None:
            gold_text, gold_tree = _math_form(value)
    gold_decimal, pred_decimal = read_decimal_comma(gold_text, pred_text), read_decimal_comma(pred_text, gold_text)
    if gold_decimal != gold_text:
        gold_text, gold_tree = _math_form(gold_decimal)
    if pred_decimal != pred_text:
        pred_text, pred_tree = _math_form(pred_decimal)
    if gold_text == pred_text or (gold_tree is not None and gold_tree == pred_tree):
        return VerifyResult(True, span, answer_type, "normalized", "match")
    method = "numeric" if answer_type in NUMERIC_TYPES else "evaluation"
    if gold_tree is not None and pred_tree is not None:
        verdict = equal(gold_tree, pred_tree, tol)
        if verdict is not None:
            return VerifyResult(verdict, span, answer_type, method, "equivalent" if verdict else "not_equivalent")
    elif pred_tree is None and answer_type in NUMERIC_TYPES and "\\" not in pred_text:
        return VerifyResult(False, span, answer_type, method, "unparsable")
    elif gold_tree is None and pred_tree is None and gold_text.replace(" ", "") == pred_text.replace(" ", ""):
        return VerifyResult(True, span, answer_type, "normalized", "match")
    refused = refusal(pred_text) or _relation_mismatch(gold_text, pred_text)
    if refused:
        return VerifyResult(False, span, answer_type, "guard", refused)
    return _Symbolic(span, answer_type, gold_text, pred_text)


def _relation_mismatch(gold: str, pred: str) -> str | None:
    """Before any symbolic grader sees the pair: a bare value is not an equation's answer, unless the gold solves for
    one variable (`x = 5`); an inequality is not a value's. (The graders accept `0` for `x^2+y^2-4x=0`, `\\ge 5`
    for `5`.)"""
    if "=" in gold and not _RELATION_RE.search(pred) and not _SOLVED_FOR_RE.search(gold):
        return "equation_vs_value"
    if _INEQUALITY_RE.search(pred) and not _INEQUALITY_RE.search(gold):
        return "relation_vs_value"
    return None


def _check_one(item: Item, rule: BenchmarkRule, gold: str, span: str | None) -> VerifyResult | _Symbolic:
    answer_type = classify(gold, item.choices, item.answer_type, rule.multi_letter)
    if span is None:
        return VerifyResult(False, None, answer_type, "extraction", "no_answer")
    if span == gold:
        return VerifyResult(True, span, answer_type, "exact", "match")
    if len(span) > MAX_SPAN_CHARS:
        return VerifyResult(False, span[:200], answer_type, "guard", "too_long")
    if answer_type != "set" and _HEDGE_RE.search(span) and not _HEDGE_RE.search(gold):
        return VerifyResult(False, span, answer_type, "guard", "hedge")  # a set gold reads "x=2 or x=3" as its list
    if answer_type == "choice":
        return _check_choice(span, gold, item, rule)
    if answer_type == "yesno":
        got = yes_no(span)
        ok = got is not None and got == yes_no(gold)
        return VerifyResult(ok, span, "yesno", "yesno", "match" if ok else "mismatch")
    if answer_type == "text":
        return _check_text(span, gold, rule)
    if answer_type in MATH_TYPES:
        return _check_math(span, gold, answer_type, item.tolerance or rule.tolerance)
    return VerifyResult(False, span, answer_type, "none", "unknown_type")


def _plan(item: Item) -> list[VerifyResult | _Symbolic]:
    """In-process verdicts for each accepted answer, stopping at the first correct one."""
    answers = [item.answer] if isinstance(item.answer, str | int | float) else list(item.answer)
    golds = [text for text in (sanitize(str(a)).strip() for a in answers) if text]
    if not golds:
        return [VerifyResult(False, None, "text", "none", "empty_gold")]
    rule = rule_for(item.benchmark)
    span = extract_answer(item.prediction, rule.json_short_answer, item.choices).span
    plan: list[VerifyResult | _Symbolic] = []
    for gold in golds:
        plan.append(_check_one(item, rule, gold, span))
        if isinstance(plan[-1], VerifyResult) and plan[-1].correct:
            break
        boxes = separate_boxes(item.prediction, _value_count(gold))
        if boxes is not None and boxes != span:
            plan.append(_check_one(item, rule, gold, boxes))
            if isinstance(plan[-1], VerifyResult) and plan[-1].correct:
                break
    return plan


def _value_count(gold: str) -> int:
    """How many values a gold lists (`(3, 3), (1, 1)` has two); 1 for a single value or an unparsable gold."""
    tree = _math_form(gold)[1]
    return len(tree[1]) if tree is not None and tree[0] == "list" else 1


def verify_batch(
    items: Sequence[Item], pool: WorkerPool | None = None, timeout: float | None = None
) -> list[VerifyResult]:
    """Check many predictions; pairs needing symbolic work share the worker pool. Never raises per item."""
    plans = []
    for item in items:
        try:
            plans.append(_plan(item))
        except Exception as exc:  # a bug here must cost one answer, not the batch
            plans.append([VerifyResult(False, None, "text", "none", f"error: {type(exc).__name__}")])
    pairs = list(dict.fromkeys((s.gold, s.pred) for plan in plans for s in plan if isinstance(s, _Symbolic)))
    replies = (pool or default_pool()).run([{"gold": g, "pred": p} for g, p in pairs], timeout) if pairs else []
    decided = dict(zip(pairs, replies, strict=True))
    results = []
    for plan in plans:
        resolved = [s if isinstance(s, VerifyResult) else s.resolve(decided[(s.gold, s.pred)]) for s in plan]
        results.append(next((r for r in resolved if r.correct), resolved[-1]))
    return results


def verify(
    prediction: str | bytes | None,
    answer: str | int | float | Sequence[str],
    *,
    answer_type: str | None = None,
    choices: Sequence[str] | None = None,
    benchmark: str | None = None,
    tolerance: Tolerance | None = None,
) -> VerifyResult:
    """Check one model response against its expected answer(s)."""
    item = Item(prediction, answer, answer_type, tuple(choices) if choices else None, benchmark, tolerance)
    return verify_batch([item])[0]
