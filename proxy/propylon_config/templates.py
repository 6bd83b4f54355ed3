"""Parse check for mapping templates (VTL), shared by the compiler and the proxy.

The compiler may not import the proxy (see .importlinter), yet both must agree on what a
valid template is: the compiler turns a parse error into a diagnostic naming the field, and the
proxy parses each template once per plan. Both call ``template_error`` here so the rule lives
in one place. The engine is airspeed, a maintained Velocity implementation for Python; we do
not write a template language of our own.
"""

from __future__ import annotations

import airspeed


def template_error(text: str) -> str | None:
    """Return the parse error of VTL ``text`` (line and column included), or None if it parses."""
    try:
        airspeed.Template(text).ensure_compiled()
    except airspeed.TemplateError as exc:
        return str(exc).strip()
    return None
