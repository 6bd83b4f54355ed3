"""`propylon validate -f PATH ...`: the offline lint a user runs before applying manifests.

It runs the same compiler the operator and ``serve`` run, so a clean ``validate`` means the
gateway will serve every object. Diagnostics go to stderr, one per line, in the form
``FILE: document N (Kind ns/name): field.path: message``; any diagnostic means exit 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from propylon_compiler import compiler, diagnostics, manifests
from propylon_config import model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_file_arguments(parser)


def add_file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        required=True,
        metavar="PATH",
        help="a manifest file or a folder of them (YAML, many documents); repeatable",
    )
    parser.add_argument(
        "--allow-cross-namespace",
        action="store_true",
        help="allow routes to Services in other namespaces without their propylon.dev/allow-from label",
    )


def load_and_compile(
    args: argparse.Namespace, *, gateway_throttle: model.Throttle | None = None
) -> tuple[compiler.CompileResult, tuple[diagnostics.Diagnostic, ...]]:
    """Read and compile ``args.paths``; returns the result and every diagnostic, load errors first.
    ``gateway_throttle``: ``render``'s flags (None: the default limit)."""
    loaded = manifests.load_paths(args.paths)
    options = compiler.CompileOptions(allow_cross_namespace=args.allow_cross_namespace, load_order_wins=True)
    if gateway_throttle is not None:
        options = dataclasses.replace(options, gateway_throttle=gateway_throttle)
    result = compiler.compile(loaded.documents, options=options)
    return result, _in_input_order(args.paths, loaded.diagnostics + result.diagnostics)


def _in_input_order(
    paths: Sequence[str], found: tuple[diagnostics.Diagnostic, ...]
) -> tuple[diagnostics.Diagnostic, ...]:
    """Diagnostics in the order of the input (files as read, documents and List items in
    order), as a user reads the files; a file's YAML error among the others, not first of all.
    Stable: what one document got keeps the order the compiler found it in."""
    files = {display: i for i, (display, _) in enumerate(manifests.expand_paths(paths))}

    def position(diagnostic: diagnostics.Diagnostic) -> tuple[int, int, int]:
        origin = diagnostic.origin
        return (files.get(origin.file, len(files)), origin.document, -1 if origin.item is None else origin.item)

    return tuple(sorted(found, key=position))


def print_diagnostics(found: Sequence[diagnostics.Diagnostic]) -> None:
    for diagnostic in found:
        print(diagnostic, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    result, found = load_and_compile(args)
    print_diagnostics(found)
    if found:
        return 1
    snapshot = result.snapshot
    routes = sum(len(stage.routes) for stage in snapshot.stages)
    print(
        f"ok: {_count(len(snapshot.apis), 'Api')}, {_count(len(snapshot.stages), 'Stage')}, "
        f"{_count(routes, 'route')} (config version {snapshot.version})"
    )
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
