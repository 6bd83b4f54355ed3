"""Entry point of the ``propylon`` command.

Subcommands are imported lazily so that ``propylon validate`` does not pay for aiohttp or kopf,
and a missing optional dependency only breaks the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import propylon

# subcommand -> (module under propylon.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "serve manifests from files, no cluster needed"),
    "validate": ("validate", "check manifests offline: schema and references"),
    "render": ("render", "print the compiled snapshot (secrets redacted)"),
    "operator": ("kube_operator", "run the Kubernetes operator (kopf)"),
    "proxy": ("kube_proxy", "run the data plane from a snapshot Secret, as the operator deploys it"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="propylon", description="Amazon API Gateway semantics on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"propylon {propylon.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(f"propylon.commands.{module_name}")
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
