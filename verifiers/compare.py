"""Equality of two parsed answers without sympy: exact rational arithmetic, else evaluation at fixed points.

Rational sub-expressions (integers, fractions, decimals, integer powers) are computed exactly with `Fraction`, so
`\\frac{26}{92}` equals `\\frac{13}{46}` and `10^{20}+1` differs from `10^{20}`. Irrational parts (roots, pi, trig,
logs) are computed in floating point and compared with a 1e-9 relative tolerance. Expressions with variables are
compared at three fixed positive rational points (variables are taken as positive, as lengths and counts are).

Every function returns True, False, or None when it cannot decide safely (overflow, a huge exact value, a value
undefined at the test points); None sends the pair to the sandboxed symbolic graders.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from fractions import Fraction

from verifiers.parse import children, free_vars

Value = Fraction | complex

MAX_BITS = 20_000
MAX_FACTORIAL = 1000
MAX_VARIABLES = 8
MAX_ITEMS = 32
REL_TOL = 1e-9
ABS_TOL = 1e-12
DEFAULT_DECIMALS = 6

# Fixed, "generic" positive test values on both sides of 1; variable j at point k takes _POINTS[(3k + j) % n].
_POINTS = tuple(
    Fraction(n, d) for n, d in ((7, 5), (3, 11), (17, 6), (5, 9), (13, 7), (2, 13), (19, 8), (11, 17), (23, 10))
)
_STRUCTURES = frozenset({"tuple", "set", "list", "union", "matrix"})
MIN_ROUNDED_DECIMALS = 2
_FLIPPED = {">": "<", ">=": "<="}


@dataclass(frozen=True)
class Tolerance:
    """How close two numbers must be: absolute and relative slack, or agreement after rounding to `precision`."""

    abs: float = 0.0
    rel: float = 0.0
    precision: int | None = None


class Undefined(ArithmeticError):
    """The expression has no value at this point (division by zero, log of zero)."""


class Unsure(ArithmeticError):
    """The value cannot be computed safely (overflow, a huge exact number, infinity inside arithmetic)."""


# --- evaluation ----------------------------------------------------------------------------------------------
def _exact(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise Unsure("exact value too large")
    return value


def _checked(value: complex) -> complex:
    if not (math.isfinite(value.real) and math.isfinite(value.imag)):
        raise Unsure("not finite")
    return value


def _inexact(value: Value) -> complex:
    try:
        return _checked(complex(value))
    except OverflowError as exc:
        raise Unsure("overflow") from exc


def _add(a: Value, b: Value) -> Value:
    if type(a) is Fraction and type(b) is Fraction:
        return _exact(a + b)
    return _checked(_inexact(a) + _inexact(b))


def _mul(a: Value, b: Value) -> Value:
    if type(a) is Fraction and type(b) is Fraction:
        return _exact(a * b)
    return _checked(_inexact(a) * _inexact(b))


def _div(a: Value, b: Value) -> Value:
    if b == 0:
        raise Undefined("division by zero")
    if type(a) is Fraction and type(b) is Fraction:
        return _exact(a / b)
    return _checked(_inexact(a) / _inexact(b))


def _exact_root(value: Fraction, n: int) -> Fraction | None:
    """The rational n-th root of a non-negative rational, when there is one."""
    parts = []
    for part in (value.numerator, value.denominator):
        root = round(part ** (1.0 / n)) if part.bit_length() < 1000 else None
        if root is None:
            return None
        for candidate in (root - 1, root, root + 1):
            if candidate >= 0 and candidate**n == part:
                parts.append(candidate)
                break
        else:
            return None
    return Fraction(parts[0], parts[1])


def _pow(base: Value, exponent: Value) -> Value:
    if type(base) is Fraction and type(exponent) is Fraction:
        if exponent.denominator == 1:
            e = exponent.numerator
            if base == 0 and e < 0:
                raise Undefined("zero to a negative power")
            size = max(base.numerator.bit_length(), base.denominator.bit_length(), 1)
            if size * abs(e) <= MAX_BITS:
                return base**e
        elif base >= 0 and exponent.denominator <= 12:
            root = _exact_root(base, exponent.denominator)
            if root is not None:
                return _pow(root, Fraction(exponent.numerator))
    b, e = _inexact(base), _inexact(exponent)
    try:
        if b.imag == 0 and e.imag == 0 and b.real > 0:
            return _checked(complex(math.pow(b.real, e.real)))
        if b == 0:
            if e.real > 0:
                return Fraction(0)
            raise Undefined("zero to a non-positive power")
        return _checked(b**e)
    except OverflowError as exc:
        raise Unsure("overflow") from exc


def _root(value: Value, index: Value) -> Value:
    if type(index) is not Fraction or index.denominator != 1 or index < 1:
        return _pow(value, _div(Fraction(1), index))
    n = index.numerator
    if type(value) is Fraction:
        if value >= 0:
            exact = _exact_root(value, n)
            if exact is not None:
                return exact
            return _checked(complex(float(value) ** (1.0 / n)))
        if n % 2 == 1:
            return _mul(Fraction(-1), _root(-value, index))
    return _pow(value, Fraction(1, n))


_FUNCTIONS = {
    "sin": cmath.sin,
    "cos": cmath.cos,
    "tan": cmath.tan,
    "cot": lambda z: 1 / cmath.tan(z),
    "sec": lambda z: 1 / cmath.cos(z),
    "csc": lambda z: 1 / cmath.sin(z),
    "arcsin": cmath.asin,
    "arccos": cmath.acos,
    "arctan": cmath.atan,
    "sinh": cmath.sinh,
    "cosh": cmath.cosh,
    "tanh": cmath.tanh,
    "exp": cmath.exp,
}
_CONSTANTS = {"pi": complex(math.pi), "e": complex(math.e), "i": 1j}


def evaluate(node: tuple, env: dict[str, Fraction]) -> Value:
    """The value of a scalar tree with variables bound by `env`."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "var":
        return env[node[1]]
    if kind == "add":
        total: Value = Fraction(0)
        for term in node[1]:
            total = _add(total, evaluate(term, env))
        return total
    if kind == "mul":
        product: Value = Fraction(1)
        for factor in node[1]:
            product = _mul(product, evaluate(factor, env))
        return product
    if kind == "neg":
        return _mul(Fraction(-1), evaluate(node[1], env))
    if kind == "div":
        return _div(evaluate(node[1], env), evaluate(node[2], env))
    if kind == "pow":
        return _pow(evaluate(node[1], env), evaluate(node[2], env))
    if kind == "pct":
        return _div(evaluate(node[1], env), Fraction(100))
    if kind == "const":
        if node[1] == "inf":
            raise Unsure("infinity in arithmetic")
        return _CONSTANTS[node[1]]
    if kind == "root":
        return _root(evaluate(node[1], env), evaluate(node[2], env))
    if kind == "abs":
        value = evaluate(node[1], env)
        return abs(value) if type(value) is Fraction else complex(abs(value))
    return _evaluate_special(node, env)


def _evaluate_special(node: tuple, env: dict[str, Fraction]) -> Value:
    kind = node[0]
    try:
        if kind == "fn":
            return _checked(_FUNCTIONS[node[1]](_inexact(evaluate(node[2], env))))
        if kind == "log":
            arg = _inexact(evaluate(node[1], env))
            if arg == 0:
                raise Undefined("log of zero")
            if node[2] is None:
                return _checked(cmath.log(arg))
            return _div(_checked(cmath.log(arg)), _checked(cmath.log(_inexact(evaluate(node[2], env)))))
        if kind in ("fact", "binom"):
            args = [evaluate(child, env) for child in node[1:]]
            if any(type(a) is not Fraction or a.denominator != 1 or a < 0 for a in args):
                raise Unsure("factorial or binomial of a non-natural number")
            if max(args) > MAX_FACTORIAL:
                raise Unsure("factorial too large")
            ints = [a.numerator for a in args]
            return Fraction(math.factorial(ints[0]) if kind == "fact" else math.comb(*ints))
    except (ValueError, ZeroDivisionError) as exc:
        raise Undefined(str(exc)) from exc
    except OverflowError as exc:
        raise Unsure("overflow") from exc
    raise Unsure(f"not a scalar: {kind}")


# --- scalar comparison ---------------------------------------------------------------------------------------
def _close(a: Value, b: Value) -> bool:
    if type(a) is Fraction and type(b) is Fraction:
        return a == b
    a, b = _inexact(a), _inexact(b)
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


def _literal_decimals(node: tuple) -> int | None:
    while node[0] == "neg":
        node = node[1]
    return node[2] if node[0] == "num" else None


def _real(value: Value) -> Fraction | None:
    if type(value) is Fraction:
        return value
    if abs(value.imag) > ABS_TOL * max(1.0, abs(value.real)):
        return None
    return Fraction(value.real)


def _numbers_equal(gold: tuple, gv: Value, pred: tuple, pv: Value, tol: Tolerance | None) -> bool:
    """Exact or float-noise equality, then the explicit tolerance, then agreement at 6 decimals (Math-Verify's
    `float_rounding`) when either side is written as a decimal."""
    if _close(gv, pv):
        return True
    g, p = _real(gv), _real(pv)
    if g is None or p is None:
        return False
    if tol is not None:
        if tol.precision is not None and round(g, tol.precision) == round(p, tol.precision):
            return True
        if abs(g - p) <= tol.abs or abs(g - p) <= tol.rel * abs(g):
            return True
    if (_literal_decimals(gold) or 0) > 0 or (_literal_decimals(pred) or 0) > 0:
        return round(g, DEFAULT_DECIMALS) == round(p, DEFAULT_DECIMALS)
    return False


def _inf_sign(node: tuple) -> int | None:
    sign = 1
    while node[0] == "neg":
        node, sign = node[1], -sign
    return sign if node == ("const", "inf") else None


def _env(names: list[str], point: int) -> dict[str, Fraction]:
    return {name: _POINTS[(3 * point + j) % len(_POINTS)] for j, name in enumerate(names)}


def _scalar_equal(gold: tuple, pred: tuple, tol: Tolerance | None) -> bool | None:
    g_inf, p_inf = _inf_sign(gold), _inf_sign(pred)
    if g_inf is not None or p_inf is not None:
        return g_inf == p_inf
    names = sorted(free_vars(gold) | free_vars(pred))
    if len(names) > MAX_VARIABLES:
        return None
    try:
        if not names:
            return _numbers_equal(gold, evaluate(gold, {}), pred, evaluate(pred, {}), tol)
        agreed = 0
        for point in range(3):
            env = _env(names, point)
            values = []
            for node in (gold, pred):
                try:
                    values.append(evaluate(node, env))
                except Undefined:
                    values.append(None)
            if values[0] is None and values[1] is None:
                continue
            if values[0] is None or values[1] is None:
                return None
            if not _close(values[0], values[1]):
                return False
            agreed += 1
    except (Undefined, Unsure):
        return None
    return True if agreed >= 2 else None


def _percent_variants(node: tuple) -> tuple[tuple, ...]:
    """`50\\%` may be meant as 0.5 or as 50; both readings are tried, as Math-Verify does."""
    return (node, node[1]) if node[0] == "pct" else (node,)


# --- relations -----------------------------------------------------------------------------------------------
def _oriented(rel: tuple) -> tuple[str, tuple]:
    """A two-sided relation as (op, lhs - rhs) with `>` turned into `<`."""
    (lhs, rhs), (op,) = rel[1], rel[2]
    if op in _FLIPPED:
        lhs, rhs, op = rhs, lhs, _FLIPPED[op]
    return op, ("add", (lhs, ("neg", rhs)))


def _relations_equal(gold: tuple, pred: tuple) -> bool | None:
    """Same relation up to a constant factor (positive for inequalities): `2x+2y=2` equals `y = 1 - x`."""
    if len(gold[2]) != 1 or len(pred[2]) != 1 or {"in", "~"} & set(gold[2] + pred[2]):
        return None
    g_op, g_diff = _oriented(gold)
    p_op, p_diff = _oriented(pred)
    if g_op != p_op:
        return False
    names = sorted(free_vars(g_diff) | free_vars(p_diff))
    if not names or len(names) > MAX_VARIABLES:
        return None
    ratio = None
    try:
        for point in range(3):
            env = _env(names, point)
            g, p = evaluate(g_diff, env), evaluate(p_diff, env)
            if g == 0 or p == 0:
                if not (_close(g, 0) and _close(p, 0)):
                    return False
                continue
            r = _div(p, g)
            if ratio is not None and not _close(r, ratio):
                return False
            ratio = r
    except (Undefined, Unsure):
        return None
    if ratio is None:
        return None
    real = _real(ratio)
    return real is not None and (real > 0 if g_op != "=" and g_op != "!=" else real != 0)


def _stated_values(rel: tuple) -> tuple[tuple, tuple | None] | None:
    """The value a relation states, as (exact, approximation or None); None for a genuine equation.

    `x = 3` and `3 = x` state 3; a chain `x = 2 + 1 = 3` states 3 when its value sides agree; `\\frac{\\sqrt3}{3}
    \\approx 0.577` states the exact side, with the decimal as its approximation. `x^2 + y^2 - 4x = 0` states no value:
    a bare `0` is not its answer.
    """
    sides, ops = rel[1], rel[2]
    if any(op not in ("=", "~") for op in ops):
        return None
    values = [side for side in sides if not _is_name(side)]
    if not values or (len(values) == len(sides) and any(free_vars(side) for side in sides)):
        return None
    if len(sides) - len(values) > 1 or (len(values) < len(sides) and values[0] is sides[0] and values[-1] is sides[-1]):
        return None  # `x = y`, or a variable in the middle of a chain
    exact_count = 1 + next((i for i, op in enumerate(ops) if op == "~"), len(ops))
    exact = [side for side in sides[:exact_count] if not _is_name(side)] or values[:1]
    if any(equal(exact[-1], other) is not True for other in exact[:-1]):
        return None  # `5 = 7` states nothing
    approximation = values[-1] if "~" in ops and values[-1] is not exact[-1] else None
    return exact[-1], approximation


def _is_name(side: tuple) -> bool:
    """What an equation may solve for: `x`, or a tuple of names `(p, q, r)`."""
    return side[0] == "var" or (side[0] == "tuple" and all(item[0] == "var" for item in side[3]))


def _value_equal(gold: tuple, pred: tuple, tol: Tolerance | None) -> bool | None:
    """A value against a relation that states one (either side may be the relation): the exact value decides; a
    decimal approximation counts too, when it is the exact value rounded to its own decimals."""
    gold_values = _stated_values(gold) if gold[0] == "rel" else (gold, None)
    pred_values = _stated_values(pred) if pred[0] == "rel" else (pred, None)
    if gold_values is None or pred_values is None:
        return False
    (g_exact, g_approx), (p_exact, p_approx) = gold_values, pred_values
    verdict = equal(g_exact, p_exact, tol)
    if verdict is not False:
        return verdict
    for exact, approx, other in ((p_exact, p_approx, g_exact), (g_exact, g_approx, p_exact)):
        decimals = None if approx is None else _literal_decimals(approx)
        if decimals and equal(approx, exact, Tolerance(precision=decimals)) is True:
            return equal(other, approx, tol)
    return False


def _interval_from_relation(rel: tuple) -> tuple | None:
    """`1 < x \\le 3` -> `(1, 3]`; `x \\ge 2` -> `[2, \\infty)`; None for anything else."""
    sides, ops = rel[1], rel[2]
    inf = ("const", "inf")
    if len(ops) == 2 and sides[1][0] == "var":
        if all(op in ("<", "<=") for op in ops):
            low, high, low_op, high_op = sides[0], sides[2], ops[0], ops[1]
        elif all(op in (">", ">=") for op in ops):
            low, high, low_op, high_op = sides[2], sides[0], ops[1], ops[0]
        else:
            return None
        return ("tuple", "(" if len(low_op) == 1 else "[", ")" if len(high_op) == 1 else "]", (low, high))
    if len(ops) == 1 and ops[0] in ("<", "<=", ">", ">="):
        (lhs, rhs), op = sides, ops[0]
        if rhs[0] == "var" and lhs[0] != "var":
            lhs, rhs, op = rhs, lhs, {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
        if lhs[0] != "var":
            return None
        if op in (">", ">="):
            return ("tuple", "(" if op == ">" else "[", ")", (rhs, inf))
        return ("tuple", "(", ")" if op == "<" else "]", (("neg", inf), rhs))
    return None


def _membership_target(node: tuple) -> tuple:
    """`x \\in [1, 3]` is compared as `[1, 3]`."""
    if node[0] == "rel" and node[2] == ("in",) and node[1][0][0] == "var":
        return node[1][1]
    return node


# --- structures ----------------------------------------------------------------------------------------------
def _entry_equal(gold: tuple, pred: tuple, tol: Tolerance | None) -> bool | None:
    """An entry of an ordered structure (interval end, coordinate, matrix entry): equal, or a decimal of two places or
    more that is the other side's exact value rounded to its places (`(0.6, 2.6667]` for `(\\frac35, \\frac83]`)."""
    verdict = equal(gold, pred, tol)
    if verdict is not False:
        return verdict
    for decimal, exact in ((pred, gold), (gold, pred)):
        places = _literal_decimals(decimal)
        if places is not None and places >= MIN_ROUNDED_DECIMALS and not _literal_decimals(exact):
            return equal(exact, decimal, Tolerance(precision=places))
    return False


def _all_equal(pairs: list[tuple[tuple, tuple]], tol: Tolerance | None) -> bool | None:
    unsure = False
    for g, p in pairs:
        verdict = _entry_equal(g, p, tol)
        if verdict is False:
            return False
        unsure |= verdict is None
    return None if unsure else True


def _unordered_equal(gold_items: tuple, pred_items: tuple, tol: Tolerance | None) -> bool | None:
    if len(gold_items) != len(pred_items):
        return False
    if len(gold_items) > MAX_ITEMS:
        return None
    remaining = list(pred_items)
    unsure = False
    for g in gold_items:
        verdicts = [equal(g, p, tol) for p in remaining]
        if True in verdicts:
            remaining.pop(verdicts.index(True))
        elif None in verdicts:
            unsure = True
        else:
            return False
    return None if unsure else True


def _structures_equal(gold: tuple, pred: tuple, tol: Tolerance | None) -> bool | None:
    gk, pk = gold[0], pred[0]
    if gk == "rel" and pk == "tuple":
        converted = _interval_from_relation(gold)
        return None if converted is None else equal(converted, pred, tol)
    if gk == "tuple" and pk == "rel":
        converted = _interval_from_relation(pred)
        return False if converted is None else equal(gold, converted, tol)
    if gk == "matrix" or pk == "matrix":
        if gk != pk or len(gold[1]) != len(pred[1]) or len(gold[1][0]) != len(pred[1][0]):
            return False
        return _all_equal(list(zip(children(gold), children(pred), strict=True)), tol)
    if gk == "tuple":
        if pk != "tuple" or gold[1:3] != pred[1:3] or len(gold[3]) != len(pred[3]):
            return False
        return _all_equal(list(zip(gold[3], pred[3], strict=True)), tol)
    if gk in ("set", "list"):
        if pk not in ("set", "list"):
            return False
        return _unordered_equal(gold[-1], pred[-1], tol)
    if gk == "union":
        return False if pk != "union" else _unordered_equal(gold[1], pred[1], tol)
    return False


def equal(gold: tuple, pred: tuple, tol: Tolerance | None = None) -> bool | None:
    """Whether `pred` states the same answer as `gold` (gold first: `x = 3` accepts `3`, a list accepts a set)."""
    gold, pred = _membership_target(gold), _membership_target(pred)
    gk, pk = gold[0], pred[0]
    if gk == "rel" and pk == "rel":
        verdict = _relations_equal(gold, pred)
        if verdict is not None:
            return verdict
        if _stated_values(gold) is not None and _stated_values(pred) is not None:
            return _value_equal(gold, pred, tol)
        g_int, p_int = _interval_from_relation(gold), _interval_from_relation(pred)
        return None if g_int is None or p_int is None else equal(g_int, p_int, tol)
    if (gk == "rel") != (pk == "rel"):
        relation = gold if gk == "rel" else pred
        other = pred if gk == "rel" else gold
        if other[0] not in _STRUCTURES or _stated_values(relation) is not None:
            return _value_equal(gold, pred, tol)  # `(p, q, r) = (3, 2, 7)` states a tuple
    if gk in _STRUCTURES or pk in _STRUCTURES:
        return _structures_equal(gold, pred, tol)
    verdicts = [_scalar_equal(g, p, tol) for g in _percent_variants(gold) for p in _percent_variants(pred)]
    if True in verdicts:
        return True
    return None if None in verdicts else False
