"""`osa`: the command line of the SDK.

Commands: `osa deploy`, `osa link`, `osa login`, `osa logout`, `osa init`,
`osa start`, `osa stop`, `osa status`, `osa logs`, `osa manifest`,
`osa test`, the helpers of shell hooks `osa emit DATA`, `osa progress [...]`,
`osa reject REASON`, and `osa meta` (the legacy introspection manifest). Data goes to
stdout, messages to stderr (plain when stderr is not a terminal or `NO_COLOR`/`CI` is
set). Exit codes: 0 success, 1 failure (cause and hint on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from osa import __version__, _registry
from osa._discovery import load_conventions
from osa._native import EngineError
from osa.cli.instance_commands import add_instance_commands
from osa.cli.local_test import add_test_command
from osa.cli.runtime_commands import add_runtime_commands
from osa.cli.server_commands import add_server_commands
from osa.cli.ui import UI
from osa.errors import OsaError
from osa.payload import MANIFEST_VERSION, manifest_document


def _fail(error: OsaError) -> int:
    UI.create().error(str(error), cause=error.cause, hint=error.hint)
    return 1


def _manifest(args: argparse.Namespace) -> int:
    try:
        load_conventions()
        conventions = _registry.conventions()
        if not conventions:
            return _fail(
                OsaError(
                    "no conventions registered",
                    hint="Install a package that declares an `osa.conventions` entry point.",
                )
            )
        if args.process:
            from osa.local import local_payload

            document = {
                "manifest_version": MANIFEST_VERSION,
                "conventions": [
                    local_payload(conv, docs_check=not args.skip_docs_check) for conv in conventions
                ],
            }
        else:
            document = manifest_document(
                conventions,
                docs_check=not args.skip_docs_check,
                engine_check=not args.skip_engine_check,
            )
    except OsaError as e:
        return _fail(e)
    print(json.dumps(document, ensure_ascii=False, separators=(",", ":")))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="osa", description="OSA hook SDK")
    parser.add_argument("--version", action="version", version=f"osa {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    manifest = commands.add_parser(
        "manifest",
        help="print the deploy manifest of the installed conventions (JSON)",
        description="Loads the `osa.conventions` entry points, runs the docs gate and "
        "prints {manifest_version, conventions} as one JSON line.",
    )
    manifest.add_argument("--skip-docs-check", action="store_true", help="do not run the docs gate")
    manifest.add_argument(
        "--skip-engine-check",
        action="store_true",
        help="do not check the conventions against the engine's deploy rules",
    )
    manifest.add_argument(
        "--process",
        action="store_true",
        help="add a `process` release to every hook (run by this interpreter's "
        "osa-run-hook module) so each body deploys as is to a local engine; "
        "ingesters are left out",
    )
    manifest.set_defaults(handler=_manifest)
    add_test_command(commands)
    add_server_commands(commands)
    add_instance_commands(commands)
    add_runtime_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `osa` command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        result: int = handler(args)
    except OsaError as e:
        return _fail(e)
    except EngineError as e:
        return _fail(OsaError(f"engine: {e}"))
    except TimeoutError as e:
        return _fail(OsaError(str(e), hint="Raise --timeout, or look at the hook logs."))
    return result


if __name__ == "__main__":
    sys.exit(main())
