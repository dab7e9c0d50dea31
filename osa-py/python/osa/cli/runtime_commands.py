"""`osa emit`, `osa progress`, `osa reject`, `osa meta`: helpers for container hooks.

The first three write into `$OSA_OUT` (default `/osa/out`, created when missing):

- `osa emit DATA` parses DATA (any JSON value: object, array, string, number, boolean
  or null) and writes it to `features.json`, indented by 2, replacing an earlier one;
- `osa progress [--step S] [--status info] [--message M]` appends
  `{"status", "step"?, "message"?}` to `progress.jsonl`;
- `osa reject REASON` appends `{"status": "rejected", "message": REASON}` to
  `progress.jsonl`: the engine then rejects every record of the batch that has no other
  outcome, with REASON.

`osa meta` prints the legacy introspection manifest (`osa.manifest.generate_manifest`)
of what this process has registered, indented by 2. It loads no entry points, so from a
shell its lists are empty; `osa manifest` is the deploy contract.

Each command is also a function (`emit_command`, `progress_command`, `reject_command`,
`meta_command`), as in the published SDK's `osa.cli._runtime_commands`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from osa.errors import OsaError

#: The output directory when `OSA_OUT` is not set.
DEFAULT_OUT = "/osa/out"
FEATURES_FILE = "features.json"
PROGRESS_FILE = "progress.jsonl"


def _out_dir() -> Path:
    out = Path(os.environ.get("OSA_OUT") or DEFAULT_OUT)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OsaError(f"cannot create the output directory {out}: {e}") from e
    return out


def _append_progress(entry: dict[str, Any]) -> None:
    path = _out_dir() / PROGRESS_FILE
    try:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError as e:
        raise OsaError(f"cannot write {path}: {e}") from e


def emit_command(data: str) -> None:
    """Writes the JSON value `data` to `$OSA_OUT/features.json`, indented by 2.

    Any JSON value is accepted (`42` writes `42`); the file is replaced, and written
    as `json.dumps(value, indent=2)` (ASCII, no trailing newline). The output
    directory is created first, also when `data` is not JSON.

    Raises:
        OsaError: `data` is not JSON, or the directory or file cannot be written.
    """
    out = _out_dir()
    try:
        value = json.loads(data)
    except json.JSONDecodeError as e:
        raise OsaError(f"DATA is not JSON: {e}") from e
    path = out / FEATURES_FILE
    try:
        path.write_text(json.dumps(value, indent=2), encoding="utf-8")
    except OSError as e:
        raise OsaError(f"cannot write {path}: {e}") from e


def progress_command(*, step: str | None = None, status: str, message: str | None = None) -> None:
    """Appends `{"status", "step"?, "message"?}` to `$OSA_OUT/progress.jsonl`.

    Raises:
        OsaError: the directory or file cannot be written.
    """
    entry: dict[str, Any] = {"status": status}
    if step is not None:
        entry["step"] = step
    if message is not None:
        entry["message"] = message
    _append_progress(entry)


def reject_command(*, reason: str) -> None:
    """Appends `{"status": "rejected", "message": reason}` to `$OSA_OUT/progress.jsonl`.

    Raises:
        OsaError: the directory or file cannot be written.
    """
    _append_progress({"status": "rejected", "message": reason})


def meta_command() -> str:
    """The legacy introspection manifest of this process's registry, as indented JSON.

    `generate_manifest().model_dump_json(indent=2)`: hooks, conventions and schemas
    registered so far (no entry point is loaded).

    Raises:
        ValueError: a hook's output model has a field the engine cannot store as a
            column (see `osa.manifest.generate_columns`).
    """
    from osa.manifest import generate_manifest

    return generate_manifest().model_dump_json(indent=2)


def _emit(args: argparse.Namespace) -> int:
    emit_command(args.data)
    return 0


def _progress(args: argparse.Namespace) -> int:
    progress_command(step=args.step, status=args.status, message=args.message)
    return 0


def _reject(args: argparse.Namespace) -> int:
    reject_command(reason=args.reason)
    return 0


def _meta(args: argparse.Namespace) -> int:
    try:
        text = meta_command()
    except ValueError as e:
        raise OsaError(str(e), hint="Rename the field: see `osa manifest`.") from e
    print(text)
    return 0


def add_runtime_commands(commands: Any) -> None:
    """Registers `osa emit`, `osa progress`, `osa reject` and `osa meta` on the CLI."""
    emit = commands.add_parser(
        "emit",
        help="write features (a JSON value) to $OSA_OUT/features.json",
        description="Parses DATA (any JSON value) and writes it, indented, to "
        "$OSA_OUT/features.json (replacing an earlier one).",
    )
    emit.add_argument("data", metavar="DATA", help="a JSON value (object, array or scalar)")
    emit.set_defaults(handler=_emit)

    progress = commands.add_parser(
        "progress",
        help="append a progress entry to $OSA_OUT/progress.jsonl",
        description='Appends {"status", "step"?, "message"?} to $OSA_OUT/progress.jsonl.',
    )
    progress.add_argument("--step", default=None, help="the step the entry is about")
    progress.add_argument("--status", default="info", help="the status (default: info)")
    progress.add_argument("--message", default=None, help="a message")
    progress.set_defaults(handler=_progress)

    reject = commands.add_parser(
        "reject",
        help="reject the batch's records (appends to $OSA_OUT/progress.jsonl)",
        description='Appends {"status": "rejected", "message": REASON} to '
        "$OSA_OUT/progress.jsonl: every record of the batch without another outcome is "
        "rejected with REASON.",
    )
    reject.add_argument("reason", metavar="REASON", help="why the records are rejected")
    reject.set_defaults(handler=_reject)

    meta = commands.add_parser(
        "meta",
        help="print the legacy introspection manifest (JSON, indent 2)",
        description="Prints {hooks, conventions, schemas} for what this process has "
        "registered, indented by 2. No entry point is loaded, so from a shell the lists "
        "are empty; `osa manifest` prints the deploy manifest.",
    )
    meta.set_defaults(handler=_meta)


__all__ = [
    "add_runtime_commands",
    "emit_command",
    "meta_command",
    "progress_command",
    "reject_command",
]
