"""Parse check for mapping templates (VTL), shared by the compiler and the proxy.

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
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import airspeed

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
    in attributes, alone or in lists; an interpolated string's parsed block among them)."""
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
            pending.extend(child for child in children if isinstance(child, airspeed._Element))


def _position(element: Any, text: str) -> str:
    """``line L, column C`` of an element of ``text``, or where it is when its positions count
    from a string literal's start instead."""
    if getattr(element, "_full_text", None) is not text:
        return "inside a string literal"
    before = text[: element.start]
    line = before.count("\n") + 1
    column = element.start - (before.rfind("\n") + 1) + 1
    return f"line {line}, column {column}"
