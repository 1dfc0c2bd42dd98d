"""The update equations of descend's docstrings, as MathML.

The docstrings write each update rule as plain text, one assignment a line, the way the lecture
notes do (``m <- beta1 * m + (1 - beta1) * g``), often followed by a remark after a run of
spaces (``(b <- g on the first step)``). :func:`block` turns such a block into one MathML table:
the assignments typeset (Greek letters, subscripts, fractions, roots, powers), the remarks as
text beside them. Browsers draw MathML themselves, so the pages need no script and no network.

A piece this grammar does not cover is kept as text, never dropped: the rendering may be
plainer than it could be, but it always says what the docstring says.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

GREEK = {
    "alpha": "\u03b1",
    "beta": "\u03b2",
    "gamma": "\u03b3",
    "delta": "\u03b4",
    "eps": "\u03b5",
    "epsilon": "\u03b5",
    "eta": "\u03b7",
    "theta": "\u03b8",
    "kappa": "\u03ba",
    "lambda": "\u03bb",
    "mu": "\u03bc",
    "nu": "\u03bd",
    "rho": "\u03c1",
    "sigma": "\u03c3",
    "tau": "\u03c4",
    "phi": "\u03c6",
    "psi": "\u03c8",
    "omega": "\u03c9",
}
#: Subscripts written as words that read better as symbols.
SUBSCRIPT_SYMBOLS = {"inf": "\u221e"}
#: Functions drawn as operators (``sqrt`` has its own radical sign).
FUNCTIONS = {"sign", "exp", "log", "max", "min", "maximum", "minimum", "abs", "ratio"}
RELATIONS = ("<-", "=", "<", ">", "<=", ">=")
OPERATORS = {"<-": "\u2190", "<=": "\u2264", ">=": "\u2265", "*": "\u00b7", "-": "\u2212"}

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>\d+(?:\.\d+)?(?:e-?\d+)?)
      | (?P<name>[A-Za-z][A-Za-z0-9]*(?:_(?:\{[^{}]*\}|[A-Za-z0-9]+))?(?:[~']|\^(?![\w(]))?)
      | (?P<op><-|<=|>=|[-+*/^()=<>,])""",
    re.VERBOSE,
)


class Unparsed(ValueError):
    """The text is not an equation this grammar reads."""


@dataclass
class Token:
    kind: str
    text: str
    spaced: bool  # whitespace before it: ``g (x)`` multiplies, ``g(x)`` calls


def tokens(text: str) -> list[Token]:
    """Split an equation into numbers, names and operators."""
    found, position, spaced = [], 0, False
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise Unparsed(text)
        kind = match.lastgroup or ""
        if kind == "space":
            spaced = True
        else:
            found.append(Token(kind, match.group(), spaced))
            spaced = False
        position = match.end()
    return found


def _mo(text: str) -> str:
    return f"<mo>{html.escape(OPERATORS.get(text, text))}</mo>"


def name(text: str) -> str:
    """One name as MathML: ``beta1`` is beta with subscript 1, ``alpha_t`` alpha with
    subscript t, ``mu_{t+1}`` a subscript expression, ``x~`` x tilde, ``m^`` m hat."""
    accent = ""
    if text[-1] in "~^'":
        text, accent = text[:-1], text[-1]
    base, _, subscript = text.partition("_")
    digits = re.fullmatch(r"([A-Za-z]+?)(\d+)", base)
    if digits and subscript and not subscript.startswith("{"):
        # beta3_t: beta with subscript "3, t" (the rule's beta3 at step t).
        base, number = digits.groups()
        core = f"<mi>{html.escape(GREEK.get(base, base))}</mi>"
        index = f"<mi>{html.escape(GREEK.get(subscript, subscript))}</mi>"
        core = f"<msub>{core}<mrow><mn>{number}</mn><mo>,</mo>{index}</mrow></msub>"
        return _accented(core, accent)
    if digits and not subscript:
        base, subscript = digits.groups()
    core = f"<mi>{html.escape(GREEK.get(base, base))}</mi>"
    if subscript:
        if subscript.startswith("{"):
            sub = expression(subscript[1:-1])
        elif subscript in SUBSCRIPT_SYMBOLS:
            sub = f"<mi>{SUBSCRIPT_SYMBOLS[subscript]}</mi>"
        elif subscript.isdigit():
            sub = f"<mn>{subscript}</mn>"
        else:
            sub = f"<mi>{html.escape(GREEK.get(subscript, subscript))}</mi>"
        core = f"<msub>{core}{sub}</msub>"
    return _accented(core, accent)


def _accented(core: str, accent: str) -> str:
    """A typeset name with its accent: a prime, a tilde or a hat (none for ``""``)."""
    if accent == "'":
        return f"<msup>{core}<mo>\u2032</mo></msup>"
    if accent:
        mark = "~" if accent == "~" else "^"
        return f'<mover accent="true">{core}<mo>{mark}</mo></mover>'
    return core


class _Parser:
    """Precedence climbing over the tokens: comparison, then sums, then products (written with
    ``*``, ``/`` or side by side), then signs, then powers, then calls and atoms."""

    def __init__(self, text: str) -> None:
        self.tokens = tokens(text)
        self.at = 0

    def peek(self) -> Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, text: str | None = None) -> Token:
        token = self.peek()
        if token is None or (text is not None and token.text != text):
            raise Unparsed(f"expected {text!r}")
        self.at += 1
        return token

    def parse(self) -> str:
        result = self.comparison()
        if self.peek() is not None:
            raise Unparsed(f"left over: {self.peek()}")
        return result

    def comparison(self) -> str:
        parts = [self.sum()]
        while (token := self.peek()) is not None and token.text in RELATIONS:
            self.take()
            parts += [_mo(token.text), self.sum()]
        return "".join(parts)

    def sum(self) -> str:
        parts = [self.product()]
        while (token := self.peek()) is not None and token.text in "+-" and token.kind == "op":
            self.take()
            parts += [_mo(token.text), self.product()]
        return "<mrow>" + "".join(parts) + "</mrow>"

    def product(self) -> str:
        result, grouped = self.signed()
        while (token := self.peek()) is not None:
            if token.text == "/":
                self.take()
                denominator, below_grouped = self.signed()
                result = _fraction(_strip(result, grouped), _strip(denominator, below_grouped))
                grouped = False
            elif token.text == "*":
                self.take()
                right, grouped = self.signed()
                result = f"<mrow>{result}{_mo('*')}{right}</mrow>"
                grouped = False
            elif token.kind in ("name", "number") or token.text == "(":
                right, grouped = self.signed()
                result = f"<mrow>{result}<mo>\u2062</mo>{right}</mrow>"  # invisible times
                grouped = False
            else:
                break
        return result

    def signed(self) -> tuple[str, bool]:
        token = self.peek()
        if token is not None and token.text == "-":
            self.take()
            operand, _ = self.power()
            return f"<mrow>{_mo('-')}{operand}</mrow>", False
        return self.power()

    def power(self) -> tuple[str, bool]:
        base, grouped = self.atom()
        if (token := self.peek()) is not None and token.text == "^":
            self.take()
            exponent, exponent_grouped = self.signed()
            return f"<msup>{base}{_strip(exponent, exponent_grouped)}</msup>", False
        return base, grouped

    def atom(self) -> tuple[str, bool]:
        token = self.take()
        if token.kind == "number":
            return f"<mn>{token.text}</mn>", False
        if token.text == "(":
            inner = self.comparison()
            self.take(")")
            return f"<mrow><mo>(</mo>{inner}<mo>)</mo></mrow>", True
        if token.kind != "name":
            raise Unparsed(f"unexpected {token.text!r}")
        following = self.peek()
        if token.text.startswith("prod_"):
            limits = token.text[len("prod_") :].strip("{}")
            operand, _ = self.power()
            product = f"<munder><mo>\u220f</mo>{expression(limits)}</munder>"
            return f"<mrow>{product}{operand}</mrow>", False
        if following is not None and following.text == "(" and not following.spaced:
            self.take("(")
            arguments = [self.comparison()]
            while (separator := self.peek()) is not None and separator.text == ",":
                self.take(",")
                arguments.append(self.comparison())
            self.take(")")
            inner = "<mo>,</mo>".join(arguments)
            if token.text == "sqrt":
                return f"<msqrt>{inner}</msqrt>", False
            if token.text == "abs":
                return f"<mrow><mo>|</mo>{inner}<mo>|</mo></mrow>", False
            head = name(token.text)
            if token.text in FUNCTIONS:
                head = f"<mi>{html.escape(token.text)}</mi>"
            return f"<mrow>{head}<mo>\u2061</mo><mo>(</mo>{inner}<mo>)</mo></mrow>", False
        return name(token.text), False


def _fraction(numerator: str, denominator: str) -> str:
    """A fraction whose parts keep the size of the text (displaystyle), as in a displayed
    formula, so a fraction inside a fraction stays legible."""
    return (
        f'<mfrac><mrow displaystyle="true">{numerator}</mrow>'
        f'<mrow displaystyle="true">{denominator}</mrow></mfrac>'
    )


def _strip(markup: str, grouped: bool) -> str:
    """Drop the parentheses of a group that a fraction bar or an exponent already groups."""
    if grouped:
        return "<mrow>" + markup[len("<mrow><mo>(</mo>") : -len("<mo>)</mo></mrow>")] + "</mrow>"
    return markup


def expression(text: str) -> str:
    """One expression or assignment as MathML content (no ``<math>`` element)."""
    return _Parser(text).parse()


_EQUATION = re.compile(r"^\s*\S.*?\s(?:<-|=)\s")
#: Words that make a piece a remark in prose, not an equation (``if nesterov else g <- b``).
_PROSE = re.compile(r"\b(?:if|else|otherwise|the|on|of|in|as|for|with|without|when)\b")


def _row(line: str) -> str:
    """One line of a block: its equations typeset, its remarks as text."""
    cells = []
    line = re.sub(r"\s+(<-|=)\s+", r" \1 ", line.strip())  # alignment is not a separator
    for piece in re.split(r"\s{3,}", line):
        piece = piece.strip().rstrip(",")
        if not piece:
            continue
        try:
            if not _EQUATION.match(piece + " ") or _PROSE.search(piece):
                raise Unparsed(piece)
            cells.append(expression(piece))
        except (Unparsed, IndexError):
            # A remark's ``code`` marks read as plain words inside an equation block.
            cells.append(f"<mtext>{html.escape(piece.replace('``', ''))}</mtext>")
    separator = "<mspace width='2em'></mspace>"
    return f'<mtr><mtd displaystyle="true">{separator.join(cells)}</mtd></mtr>'


def is_equations(text: str) -> bool:
    """Whether a code block of a docstring is update equations (it assigns with ``<-``)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return bool(lines) and any("<-" in line for line in lines)


def block(text: str) -> str:
    """A block of equations as one display ``<math>`` element, the plain text as its
    ``alttext`` (what a screen reader or a copy reads)."""
    rows = "".join(_row(line) for line in text.splitlines() if line.strip())
    alt = html.escape(" ; ".join(line.strip() for line in text.splitlines() if line.strip()))
    return (
        f'<div class="equations"><math display="block" alttext="{alt}">'
        f'<mtable columnalign="left">{rows}</mtable></math></div>'
    )
