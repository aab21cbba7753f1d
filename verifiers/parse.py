"""A small parser for answer spans (LaTeX or plain math) into immutable tuple trees.

Why not sympy or latex2sympy: parsing is on the hot path of every reward call, and both are slow to import, slow to
run and can hang on hostile input. This grammar covers what short final answers contain (numbers, fractions, roots,
powers, elementary functions, relations, tuples, intervals, sets); anything else raises `ParseError`, and the caller
falls back to the sandboxed symbolic graders.

Node shapes (all tuples, hashable):
    ("num", Fraction, decimals)   decimals: digits after the point of a plain literal, None for 1e5-style literals
    ("var", name) | ("const", "pi" | "e" | "i" | "inf")
    ("add", terms) | ("mul", factors) | ("neg", x) | ("div", a, b) | ("pow", a, b) | ("pct", x)
    ("root", x, index) | ("fn", name, x) | ("log", x, base_or_None) | ("fact", x) | ("abs", x) | ("binom", n, k)
    ("rel", sides, ops)           ops drawn from = < > <= >= != in ~ (approximately)
    ("tuple", open, close, items) | ("set", items) | ("list", items) | ("union", parts)
    ("matrix", rows)              rows: tuples of entries, all of one length (`pmatrix`, `bmatrix`, `array`, ...)
A span with one `\\pm` is the set of its two readings: `1 \\pm \\sqrt{19}` is {1 + √19, 1 - √19}.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

MAX_SPAN_CHARS = 1000
MAX_NESTING = 50
MAX_SCI_EXPONENT = 400  # 1e10000000 would make Fraction build a ten-million-digit integer


class ParseError(ValueError):
    """The span is not in the supported grammar (free text, unsupported LaTeX, or too deep to parse safely)."""


_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+(?![.\d]))?)"
    r"|(?P<env>\\(?:begin|end)\s*\{[a-zA-Z]+\*?\})"
    r"|(?P<row>\\\\)"
    r"|(?P<cmd>\\[a-zA-Z]+)"
    r"|(?P<esc>\\[{}%|])"
    r"|(?P<word>[a-zA-Z]+)"
    r"|(?P<rel><=|>=|!=|==|=|<|>)"
    r"|(?P<pow>\*\*)"
    r"|(?P<op>[-+*/^_!(),;\[\]{}|%&])"
)
# Environments read as a matrix; `vmatrix` (a determinant) and the rest are outside the grammar.
MATRIX_ENVIRONMENTS = frozenset("matrix pmatrix bmatrix Bmatrix smallmatrix array".split())
_ARRAY_COLUMNS_RE = re.compile(r"\s*\{[lcr|\s]*\}")  # `\\begin{array}{cc}`
_PM_RE = re.compile(r"\\pm(?![a-zA-Z])")

# "7 3/4" written in plain text is a mixed number (as mathruler reads it), not 7 * 3/4.
_PLAIN_MIXED_RE = re.compile(r"(?P<sign>-?)(?P<whole>\d+)\s+(?P<num>\d+)/(?P<den>\d+)")

FUNCTIONS = frozenset("sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh ln log lg exp".split())
_GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho sigma tau "
    "upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega".split()
)
_CMD_ALIASES = {
    "cdot": ("op", "*"),
    "times": ("op", "*"),
    "ast": ("op", "*"),
    "div": ("op", "/"),
    "le": ("rel", "<="),
    "leq": ("rel", "<="),
    "leqslant": ("rel", "<="),
    "ge": ("rel", ">="),
    "geq": ("rel", ">="),
    "geqslant": ("rel", ">="),
    "lt": ("rel", "<"),
    "gt": ("rel", ">"),
    "ne": ("rel", "!="),
    "neq": ("rel", "!="),
    "approx": ("rel", "~"),
    "in": ("rel", "in"),
    "lvert": ("op", "|"),
    "rvert": ("op", "|"),
    "vert": ("op", "|"),
    "mid": ("op", "|"),
    "infty": ("const", "inf"),
    "infin": ("const", "inf"),
    "pi": ("const", "pi"),
    "emptyset": ("empty", ""),
    "varnothing": ("empty", ""),
    "cup": ("cup", ""),
    "lbrace": ("esc", "{"),
    "rbrace": ("esc", "}"),
}
_WORD_ALIASES = {
    "pi": ("const", "pi"),
    "inf": ("const", "inf"),
    "infty": ("const", "inf"),
    "infinity": ("const", "inf"),
    "sqrt": ("cmd", "sqrt"),
    "and": ("op", ","),
    "or": ("op", ","),
    "e": ("const", "e"),
    "i": ("const", "i"),
}
_KNOWN_CMDS = frozenset({"frac", "sqrt", "binom"}) | FUNCTIONS | _GREEK


def _tokenize(span: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos, end = 0, len(span)
    while pos < end:
        m = _TOKEN_RE.match(span, pos)
        if m is None:
            raise ParseError(f"unexpected character {span[pos]!r}")
        pos = m.end()
        kind, text = m.lastgroup, m.group()
        if kind == "ws":
            continue
        if kind == "env":
            env = text[text.index("{") + 1 : -1]
            if env not in MATRIX_ENVIRONMENTS:
                raise ParseError(f"unsupported environment {env}")
            tokens.append((text[1:].split("{")[0].strip(), env))
            columns = _ARRAY_COLUMNS_RE.match(span, pos) if tokens[-1] == ("begin", "array") else None
            pos = columns.end() if columns else pos
            continue
        if kind == "cmd":
            name = text[1:]
            if name in _CMD_ALIASES:
                tokens.append(_CMD_ALIASES[name])
            elif name in _KNOWN_CMDS:
                tokens.append(("cmd", name))
            else:
                raise ParseError(f"unsupported command \\{name}")
        elif kind == "word":
            tokens.extend(_word_tokens(text))
        elif kind == "pow":
            tokens.append(("op", "^"))
        elif kind == "rel":
            tokens.append(("rel", "=" if text == "==" else text))
        elif kind == "esc":
            tokens.append(("esc", text[1:]))
        else:
            tokens.append((kind, text))
    return tokens


def _word_tokens(word: str) -> list[tuple[str, str]]:
    if word in _WORD_ALIASES:
        return [_WORD_ALIASES[word]]
    if word in FUNCTIONS:
        return [("cmd", word)]
    if len(word) > 2:
        raise ParseError(f"free text {word!r}")
    return [_WORD_ALIASES.get(ch, ("var", ch)) for ch in word]


def nesting_depth(span: str) -> int:
    """Deepest bracket nesting, counted without parsing (a guard against recursion bombs)."""
    depth = deepest = 0
    for ch in span:
        if ch in "({[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")}]":
            depth -= 1
    return deepest


def _number(text: str) -> tuple:
    mantissa, _, exponent = text.lower().partition("e")
    if exponent and abs(int(exponent)) > MAX_SCI_EXPONENT:
        raise ParseError("exponent too large")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return ("num", Fraction(text), None if "e" in text.lower() else decimals)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.abs_depth = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else ("eof", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.pos += 1
        return tok

    def expect(self, kind: str, text: str) -> None:
        tok = self.take()
        if tok != (kind, text):
            raise ParseError(f"expected {text!r}, got {tok[1]!r}")

    def at(self, kind: str, *texts: str) -> bool:
        tok = self.peek()
        return tok[0] == kind and (not texts or tok[1] in texts)

    # --- top level -------------------------------------------------------------------------------------------
    def parse_top(self) -> tuple:
        items = [self.parse_union()]
        while self.at("op", ",", ";"):
            self.take()
            if self.at("eof"):
                break
            items.append(self.parse_union())
        if not self.at("eof"):
            raise ParseError(f"unexpected {self.peek()[1]!r}")
        return items[0] if len(items) == 1 else ("list", tuple(items))

    def parse_union(self) -> tuple:
        parts = [self.parse_relation()]
        while self.at("cup"):
            self.take()
            parts.append(self.parse_relation())
        return parts[0] if len(parts) == 1 else ("union", tuple(parts))

    def parse_relation(self) -> tuple:
        sides, ops = [self.parse_expr()], []
        while self.at("rel"):
            ops.append(self.take()[1])
            sides.append(self.parse_expr())
        return sides[0] if not ops else ("rel", tuple(sides), tuple(ops))

    # --- arithmetic ------------------------------------------------------------------------------------------
    def parse_expr(self) -> tuple:
        terms = [self.parse_term()]
        while self.at("op", "+", "-"):
            op = self.take()[1]
            term = self.parse_term()
            terms.append(term if op == "+" else ("neg", term))
        return terms[0] if len(terms) == 1 else ("add", tuple(terms))

    def parse_term(self) -> tuple:
        factors = [self.parse_unary()]
        while True:
            if self.at("op", "*"):
                self.take()
                factors.append(self.parse_unary())
            elif self.at("op", "/"):
                self.take()
                divisor = self.parse_unary()
                left = factors[0] if len(factors) == 1 else ("mul", tuple(factors))
                factors = [("div", left, divisor)]
            elif self.starts_primary():
                factors.append(self.parse_power())
            else:
                break
        return factors[0] if len(factors) == 1 else ("mul", tuple(factors))

    def parse_unary(self) -> tuple:
        if self.at("op", "-"):
            self.take()
            return ("neg", self.parse_unary())
        if self.at("op", "+"):
            self.take()
            return self.parse_unary()
        return self.parse_power()

    def parse_power(self) -> tuple:
        base = self.parse_postfix()
        if self.at("op", "^"):
            self.take()
            return ("pow", base, self.parse_unary())
        return base

    def parse_postfix(self) -> tuple:
        node = self.parse_primary()
        while self.at("op", "!", "%") or self.at("esc", "%"):
            node = ("fact", node) if self.take()[1] == "!" else ("pct", node)
        return node

    def starts_primary(self) -> bool:
        kind, text = self.peek()
        if kind in ("num", "var", "const"):
            return True
        if kind == "cmd":
            return True
        if kind == "op":
            return text in "({" or (text == "|" and self.abs_depth == 0)
        return False

    # --- atoms -----------------------------------------------------------------------------------------------
    def parse_primary(self) -> tuple:
        kind, text = self.take()
        if kind == "num":
            return self.mixed_number(text) or _number(text)
        if kind == "var":
            return ("var", text + self.subscript())
        if kind == "const":
            return ("const", text)
        if kind == "cmd":
            return self.parse_command(text)
        if kind == "esc" and text == "{":
            return self.parse_set()
        if kind == "empty":
            return ("set", ())
        if kind == "begin":
            return self.parse_matrix(text)
        if kind == "op":
            if text in "([":
                return self.parse_bracket(text)
            if text == "{":
                inner = self.parse_relation()
                self.expect("op", "}")
                return inner
            if text == "|":
                self.abs_depth += 1
                inner = self.parse_expr()
                self.expect("op", "|")
                self.abs_depth -= 1
                return ("abs", inner)
        raise ParseError(f"unexpected {text!r}")

    def mixed_number(self, whole: str) -> tuple | None:
        """`2\\frac{1}{2}` is two and a half, as in school answers, not 2 * 1/2."""
        toks = self.tokens[self.pos : self.pos + 7]
        if not whole.isdigit() or len(toks) < 7 or toks[0] != ("cmd", "frac"):
            return None
        shape = [t[0] if t[0] == "num" else t for t in toks[1:]]
        if shape != [("op", "{"), "num", ("op", "}"), ("op", "{"), "num", ("op", "}")]:
            return None
        num, den = toks[2][1], toks[5][1]
        if not (num.isdigit() and den.isdigit()) or int(den) == 0 or int(num) >= int(den):
            return None
        self.pos += 7
        return ("num", int(whole) + Fraction(int(num), int(den)), None)

    def subscript(self) -> str:
        if not self.at("op", "_"):
            return ""
        self.take()
        if self.at("op", "{"):
            start = self.pos
            depth = 0
            while True:
                kind, text = self.take()
                if kind == "eof":
                    raise ParseError("unbalanced subscript")
                depth += (kind, text) == ("op", "{")
                depth -= (kind, text) == ("op", "}")
                if depth == 0:
                    return "_" + "".join(t[1] for t in self.tokens[start + 1 : self.pos - 1])
        kind, text = self.take()
        if kind in ("num", "var", "cmd", "const"):
            return "_" + text
        raise ParseError("bad subscript")

    def parse_arg(self) -> tuple:
        """A command argument: `{...}` or a single token (`\\frac12`, `\\sqrt x`)."""
        if self.at("op", "{"):
            self.take()
            inner = self.parse_expr()
            self.expect("op", "}")
            return inner
        kind, text = self.peek()
        if kind == "num" and text.isdigit() and len(text) > 1:
            self.tokens[self.pos] = ("num", text[1:])
            return _number(text[0])
        return self.parse_primary()

    def parse_command(self, name: str) -> tuple:
        if name == "frac":
            return ("div", self.parse_arg(), self.parse_arg())
        if name == "binom":
            return ("binom", self.parse_arg(), self.parse_arg())
        if name == "sqrt":
            index = ("num", Fraction(2), 0)
            if self.at("op", "["):
                self.take()
                index = self.parse_expr()
                self.expect("op", "]")
            if self.at("op", "("):
                self.take()
                inner = self.parse_expr()
                self.expect("op", ")")
                return ("root", inner, index)
            return ("root", self.parse_arg(), index)
        if name in _GREEK:
            return ("var", name + self.subscript())
        return self.parse_function(name)

    def parse_function(self, name: str) -> tuple:
        base = None
        if name == "log" and self.at("op", "_"):
            self.take()
            base = self.parse_arg()
        power = None
        if self.at("op", "^"):
            self.take()
            power = self.parse_arg()
        if self.at("op", "(", "{"):
            close = ")" if self.take()[1] == "(" else "}"
            arg = self.parse_expr()
            self.expect("op", close)
        else:
            factors = [self.parse_power()]
            while self.starts_primary() and self.peek()[0] != "cmd":
                factors.append(self.parse_power())
            arg = factors[0] if len(factors) == 1 else ("mul", tuple(factors))
        if name in ("log", "ln", "lg"):
            ten = ("num", Fraction(10), 0)
            node = ("log", arg, ten if name == "lg" else base)
        else:
            node = ("fn", name, arg)
        return node if power is None else ("pow", node, power)

    def parse_bracket(self, opener: str) -> tuple:
        items = [self.parse_relation()]
        while self.at("op", ","):
            self.take()
            items.append(self.parse_relation())
        kind, closer = self.take()
        if kind != "op" or closer not in ")]":
            raise ParseError("unclosed bracket")
        if len(items) == 1:
            if (opener, closer) not in (("(", ")"), ("[", "]")):
                raise ParseError("mismatched bracket")
            return items[0]
        return ("tuple", opener, closer, tuple(items))

    def parse_matrix(self, env: str) -> tuple:
        """Rows split by `\\\\`, entries by `&`, up to the matching `\\end`; a trailing `\\\\` is allowed."""
        rows, row = [], [self.parse_expr()]
        while not self.at("end"):
            kind, text = self.take()
            if (kind, text) == ("op", "&"):
                row.append(self.parse_expr())
            elif kind == "row":
                rows.append(tuple(row))
                row = [] if self.at("end") else [self.parse_expr()]
            else:
                raise ParseError(f"unexpected {text!r} in a matrix")
        self.expect("end", env)
        rows += [tuple(row)] if row else []
        if len({len(r) for r in rows}) != 1:
            raise ParseError("rows of different lengths")
        return ("matrix", tuple(rows))

    def parse_set(self) -> tuple:
        items: list[tuple] = []
        if not self.at("esc", "}"):
            items.append(self.parse_relation())
            while self.at("op", ","):
                self.take()
                items.append(self.parse_relation())
        self.expect("esc", "}")
        return ("set", tuple(items))


@lru_cache(maxsize=16384)
def parse(span: str) -> tuple:
    """Parse a cleaned answer span; raises `ParseError` outside the grammar. Cached: rollouts repeat answers."""
    if len(span) > MAX_SPAN_CHARS:
        raise ParseError("span too long")
    if nesting_depth(span) > MAX_NESTING:
        raise ParseError("nesting too deep")
    if not span.strip():
        raise ParseError("empty span")
    mixed = _PLAIN_MIXED_RE.fullmatch(span.strip())
    if mixed and int(mixed["num"]) < int(mixed["den"]):
        value = int(mixed["whole"]) + Fraction(int(mixed["num"]), int(mixed["den"]))
        return ("num", -value if mixed["sign"] else value, None)
    if len(_PM_RE.findall(span)) == 1 and "\\mp" not in span:
        readings = tuple(parse(_PM_RE.sub(sign, span)) for sign in ("+", "-"))
        if any(reading[0] in ("list", "set", "tuple", "union", "matrix") for reading in readings):
            raise ParseError("a plus-minus inside a structure")
        return ("set", readings)
    try:
        return _Parser(_tokenize(span)).parse_top()
    except RecursionError as exc:
        raise ParseError("nesting too deep") from exc


def children(node: tuple) -> tuple:
    """The sub-trees of a node (a matrix's entries row by row)."""
    kind = node[0]
    if kind in ("num", "var", "const"):
        return ()
    if kind in ("add", "mul", "set", "list", "union", "rel"):
        return node[1]
    if kind == "tuple":
        return node[3]
    if kind == "matrix":
        return tuple(entry for row in node[1] for entry in row)
    if kind == "fn":
        return (node[2],)
    if kind == "log":
        return node[1:2] if node[2] is None else node[1:3]
    return node[1:]


def free_vars(node: tuple) -> frozenset[str]:
    """Variable names in a tree."""
    if node[0] == "var":
        return frozenset((node[1],))
    return frozenset().union(*(free_vars(child) for child in children(node)))
