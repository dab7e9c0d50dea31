"""`osa emit`, `osa progress`, `osa reject`: outcome helpers for shell (non-Python) hooks.

Each writes into `$OSA_OUT` (default `/osa/out`, created when missing):

- `osa emit DATA` parses DATA (a JSON object or array) and writes it to `features.json`,
  indented by 2, replacing an earlier one;
- `osa progress [--step S] [--status info] [--message M]` appends
  `{"status", "step"?, "message"?}` to `progress.jsonl`;
- `osa reject REASON` appends `{"status": "rejected", "message": REASON}` to
  `progress.jsonl`: the engine then rejects every record of the batch that has no other
  outcome, with REASON.
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


def _emit(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as e:
        raise OsaError(f"DATA is not JSON: {e}") from e
    if not isinstance(data, dict | list):
        raise OsaError(f"DATA must be a JSON object or array, got {type(data).__name__}")
    path = _out_dir() / FEATURES_FILE
    try:
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    except OSError as e:
        raise OsaError(f"cannot write {path}: {e}") from e
    return 0


def _progress(args: argparse.Namespace) -> int:
    entry: dict[str, Any] = {"status": args.status}
    if args.step is not None:
        entry["step"] = args.step
    if args.message is not None:
        entry["message"] = args.message
    _append_progress(entry)
    return 0


def _reject(args: argparse.Namespace) -> int:
    _append_progress({"status": "rejected", "message": args.reason})
    return 0


def add_runtime_commands(commands: Any) -> None:
    """Registers `osa emit`, `osa progress` and `osa reject` on the CLI's subparsers."""
    emit = commands.add_parser(
        "emit",
        help="write features (a JSON object or array) to $OSA_OUT/features.json",
        description="Parses DATA and writes it, indented, to $OSA_OUT/features.json "
        "(replacing an earlier one).",
    )
    emit.add_argument("data", metavar="DATA", help="a JSON object or array")
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


__all__ = ["add_runtime_commands"]
