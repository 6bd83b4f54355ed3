r"""Parse check for mapping templates (VTL), shared by the compiler and the proxy.

The compiler may not import the proxy (see .importlinter), yet both must agree on what a
valid template is: the compiler turns a parse error into a diagnostic naming the field, and the
proxy parses each template once per plan. Both call ``template_error`` here so the rule lives
in one place. The engine is airspeed, a maintained Velocity implementation for Python; we do
not write a template language of our own.

A template that parses is still refused when it uses a directive that runs text other than
the template itself (``REFUSED_DIRECTIVES``): ``#evaluate`` renders a string as a template at
run time, so ``#evaluate($input.body)`` would let a client's request body run as template code,
out of reach of everything the proxy checks when it compiles the template (its sandbox, its
loop bound); ``#include`` and ``#parse`` read other templates by name, and the gateway has none
to read. DESIGN.md section 2.5 lists the directives a template has (``#set``,
``#if/#elseif/#else``, ``#foreach``); these three are not among them.

String literals are read as Velocity 1.7 (Amazon API Gateway's engine) reads them, not as
airspeed does: no backslash escapes (``'\n'`` and ``"\\"`` are two characters each, so the AWS
idiom ``$s.replaceAll("\\", "\\\\")`` doubles backslashes), a doubled quote is one quote
(``'it''s'``), and a double-quoted literal's ``\uXXXX`` is that character (Velocity's
``ASTStringLiteral``). airspeed unescaped ``\n \t \\ \'`` and refused any other backslash.
Directives also open in Velocity's formal notation (``#{foreach}(...)``), and ``#break`` is a
directive (``BreakDirective``), not text. The parser classes are set so here, at import,
because this module is where both the compiler and the proxy get their parser from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import airspeed

_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _velocity_literal(self: Any) -> None:
    r"""``StringLiteral.parse`` (and, through it, the double-quoted kind's) as Velocity 1.7 does
    it: the text between the quotes, a doubled quote made one, ``\uXXXX`` decoded in ``"..."``."""
    (value,) = self.identity_match(self.STRING)
    if isinstance(self, airspeed.InterpolatedStringLiteral):
        value = _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value).replace('""', '"')
    else:
        value = value.replace("''", "'")
    self.value = value


class Break(Exception):
    """``#break`` ran: the innermost ``#foreach`` ends there, or, outside any, the template."""


class BreakDirective(airspeed._Element):  # type: ignore[misc]  # airspeed is untyped
    """Velocity 1.7's ``#break`` (or ``#{break}``), which airspeed lacks and printed as text."""

    START = re.compile(r"#(?:break\b|\{break\})", re.S + re.I)

    def parse(self) -> None:
        self.identity_match(self.START)

    def evaluate_raw(self, stream: Any, namespace: Any, loader: Any) -> None:
        raise Break()


def broke(error: BaseException) -> bool:
    """Whether an error airspeed raised while rendering is a ``#break`` (it wraps exceptions in
    a ``TemplateExecutionError`` whose cause is the original)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, Break):
            return True
        cause = cause.__cause__
    return False


# Velocity's formal notation for directives, ``#{if}(...)``, ``#{foreach}(...)``, ``#{set}(...)``,
# ``#{elseif}(...)``: airspeed took only ``#{else}`` and ``#{end}``.
airspeed.IfDirective.START = re.compile(r"#(?:if\b|\{if\})\s*", re.S + re.I)
airspeed.ElseifBlock.START = re.compile(r"#(?:elseif\b|\{elseif\})\s*", re.S + re.I)
airspeed.ForeachDirective.START = re.compile(r"#(?:foreach\b|\{foreach\})", re.S + re.I)
airspeed.SetDirective.START = re.compile(r"#(?:set|\{set\})\s*\(", re.S + re.I)
if BreakDirective not in airspeed.UserDefinedDirective.DIRECTIVES:
    airspeed.UserDefinedDirective.DIRECTIVES.append(BreakDirective)

airspeed.StringLiteral.STRING = re.compile(r"'((?:[^']|'')*)'", re.S)
airspeed.InterpolatedStringLiteral.STRING = re.compile(r'"((?:[^"]|"")*)"', re.S)
airspeed.StringLiteral.parse = _velocity_literal

# The directives a template may not use, with what they would have done.
REFUSED_DIRECTIVES: dict[type, str] = {
    airspeed.EvaluateDirective: "#evaluate (it renders text as template code at run time)",
    airspeed.IncludeDirective: "#include (there are no other templates to read)",
    airspeed.ParseDirective: "#parse (there are no other templates to read)",
}


def template_error(text: str) -> str | None:
    """What is wrong with VTL ``text``, to follow the word "template" in a diagnostic: "does not
    parse: " and airspeed's error (line and column included), or "uses " a refused directive;
    None when it is a template the gateway runs."""
    try:
        template = airspeed.Template(text)
        template.ensure_compiled()
    except airspeed.TemplateError as exc:
        return f"does not parse: {str(exc).strip()}"
    for element in elements(template.root_element):
        refused = REFUSED_DIRECTIVES.get(type(element))
        if refused is not None:
            return f"uses {refused}, which is not supported ({_position(element, text)})"
    return None


def elements(root: Any) -> Iterator[Any]:
    """Every element of a parsed airspeed tree, each once (the tree's nodes keep their children
    in attributes, alone or in lists; an interpolated string's parsed block among them).

    A parenthesised expression and a ``#if``/``#elseif`` condition keep their expression only
    as a bound method (airspeed sets ``self.calculate = expression.calculate``), so a method's
    ``__self__`` counts as a child too: without it, ``($a * 3)`` and ``#if($x.__class__)`` were
    out of reach of every walk (the sandbox's among them)."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        element = pending.pop()
        if id(element) in seen or not hasattr(element, "__dict__"):
            continue
        seen.add(id(element))
        yield element
        for value in list(vars(element).values()):
            children = value if isinstance(value, list) else [value]
            for child in children:
                child = getattr(child, "__self__", child)  # a bound method: its element
                if isinstance(child, airspeed._Element):
                    pending.append(child)


def _position(element: Any, text: str) -> str:
    """``line L, column C`` of an element of ``text``, or where it is when its positions count
    from a string literal's start instead."""
    if getattr(element, "_full_text", None) is not text:
        return "inside a string literal"
    before = text[: element.start]
    line = before.count("\n") + 1
    column = element.start - (before.rfind("\n") + 1) + 1
    return f"line {line}, column {column}"
