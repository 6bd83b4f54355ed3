"""The compiler: manifests in, one immutable snapshot (plus diagnostics) out. Pure: no I/O
outside ``manifests``, no clock, no randomness, and no kopf, aiohttp or kubernetes imports.

``compiler.compile`` is the entry point; the other modules are its phases and helpers.
"""

__all__ = [
    "api_keys",
    "apis",
    "authorizers",
    "backends",
    "compiler",
    "diagnostics",
    "fields",
    "gateway_responses",
    "integrations",
    "label_selectors",
    "manifests",
    "objects",
    "routes",
    "schema_rules",
    "schemas",
    "sealing",
    "stage_variables",
    "stages",
    "statuses",
    "usage_plans",
]
