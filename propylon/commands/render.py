"""`propylon render -f PATH ...`: print the snapshot the gateway would serve.

The output is what the operator ships to proxies (canonical JSON), so a user can diff two
renders to see what an edit changes. Diagnostics go to stderr and make the exit status 1, but
the snapshot is still printed: it is what would be served, broken objects left out. Nothing
from a Secret's data is ever in a snapshot: API keys are keyed hashes under the install's
secret, and ``render`` has no such secret, so it prints keys with empty digests (their ids,
plans and whether they are enabled) and ``key_hashing: null``.
"""

from __future__ import annotations

import argparse

import yaml

from propylon.commands import shared_flags, validate
from propylon_config import codec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    validate.add_file_arguments(parser)
    shared_flags.add_gateway_throttle(parser)  # shown in the snapshot's settings, as serve would serve it
    parser.add_argument(
        "-o", "--output", choices=("json", "yaml"), default="json", help="output format (default: json)"
    )


def run(args: argparse.Namespace) -> int:
    result, found = validate.load_and_compile(args, gateway_throttle=shared_flags.gateway_throttle(args))
    validate.print_diagnostics(found)
    if args.output == "yaml":
        print(yaml.safe_dump(codec.to_data(result.snapshot), sort_keys=True, allow_unicode=True), end="")
    else:
        print(codec.dumps(result.snapshot, indent=2))
    return 1 if found else 0
