"""`osa test`: the installed convention through the real engine, on a local archive.

Deploys the convention (hooks as local processes), validates records through the
durable saga (SQLite + the process runner), then reports each record's verdict, the
feature rows and the provenance of one row. Records come from `--records FILE`
(JSON lines `{"id", "metadata"}`; `source_id` is accepted for `id`) with their files
under `--files DIR/<record>/`, or else from the convention's ingester (`--limit`).
With `--server`, the records are validated by a running server instead, where the
convention is deployed (`osa deploy`; `osa start` runs one here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from osa import _registry
from osa.errors import OsaError
from osa.local import LocalArchive, RunEvent, RunResult, find_convention
from osa.runtime.entrypoint import record_dir

#: Feature rows shown per hook.
SHOWN_ROWS = 3


class TestCommandError(OsaError):
    """`osa test` cannot run as asked (no records, unreadable input)."""


def _say(message: str = "") -> None:
    print(message, file=sys.stderr)


def _record_files(files_dir: Path | None, record_id: str) -> Path | None:
    return None if files_dir is None else record_dir(files_dir, record_id)


def records_from_file(
    path: Path, files_dir: Path | None, limit: int | None
) -> list[dict[str, Any]]:
    """Records of a JSON-lines file (the batch contract's `records.jsonl` works as is).

    Raises:
        TestCommandError: the file cannot be read or a line is not a record.
    """
    records: list[dict[str, Any]] = []
    try:
        # Lines end at "\n" only: `str.splitlines()` would also split at U+2028, U+2029
        # and U+0085, which JSON strings may hold unescaped. A "\r" left at the end of a
        # line is JSON whitespace.
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as e:
        raise TestCommandError(f"cannot read {path}: {e}") from e
    except UnicodeDecodeError as e:
        raise TestCommandError(f"{path} is not UTF-8 text: {e}") from e
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise TestCommandError(f"{path}:{number}: not JSON: {e}") from e
        if not isinstance(item, dict):
            raise TestCommandError(f"{path}:{number}: expected an object")
        record_id = item.get("id", item.get("source_id"))
        if not isinstance(record_id, str):
            raise TestCommandError(f"{path}:{number}: a record needs a string `id`")
        metadata = item.get("metadata", {})
        if not isinstance(metadata, dict):
            raise TestCommandError(f"{path}:{number}: `metadata` must be an object")
        records.append(
            {"id": record_id, "metadata": metadata, "files": _record_files(files_dir, record_id)}
        )
        if limit is not None and len(records) >= limit:
            break
    return records


def records_from_ingester(
    conv: _registry.ConventionInfo, limit: int | None, files_dir: Path
) -> list[dict[str, Any]]:
    """Pulls records with the convention's ingester, in this process."""
    from osa.testing import run_ingester

    if conv.ingester_info is None:
        raise TestCommandError(
            f'convention "{conv.title}" has no ingester and no --records were given',
            hint="Pass --records FILE.jsonl (and --files DIR for their files).",
        )
    # One record by default, as the published `osa test` does.
    result = run_ingester(
        conv.ingester_info.ingester_cls, limit=1 if limit is None else limit, files_dir=files_dir
    )
    return [
        {
            "id": r.source_id,
            "metadata": dict(r.metadata),
            "files": _record_files(files_dir, r.source_id),
        }
        for r in result.records
    ]


@contextmanager
def _archive_dir(explicit: str | None, keep: bool) -> Iterator[Path]:
    if explicit is not None:
        yield Path(explicit)
        return
    path = Path(tempfile.mkdtemp(prefix="osa-test-"))
    try:
        yield path
    finally:
        if keep:
            _say(f"archive kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def _progress(event: RunEvent) -> None:
    data = event.data
    if event.type == "step_finished":
        counts = data["counts"]
        _say(
            f"  step {data['step']} {data['hook']:<24} {data['status']:<7} "
            f"{counts['passed']} passed, {counts['rejected']} rejected, "
            f"{counts['errored']} errored"
        )
    elif event.type == "step_retrying":
        _say(f"  step {data['step']} retrying: {data['reason']}")


def _report(archive: LocalArchive, result: RunResult, hooks: list[str]) -> dict[str, Any]:
    _say("records")
    for v in result.verdicts:
        if v.accepted:
            _say(f"  ✓ {v.record_id}")
        else:
            why = f"{v.verdict} by {v.hook}: {v.reason}" if v.hook else v.verdict
            _say(f"  ✗ {v.record_id}  {why}")
    features: dict[str, Any] = {}
    first: tuple[str, int] | None = None
    for hook in hooks:
        rows = list(archive.iter_features(hook))
        features[hook] = [
            {"id": r.id, "record_id": r.record_id, "row_index": r.row_index, "values": r.values}
            for r in rows
        ]
        if not rows:
            continue
        _say(f"features of {hook}: {len(rows)} row(s)")
        for row in rows[:SHOWN_ROWS]:
            _say(f"  {row.record_id} #{row.row_index}  {json.dumps(row.values, default=str)}")
        if first is None:
            first = (hook, rows[0].id)
    provenance: dict[str, Any] | None = None
    if first is not None:
        p = archive.provenance(*first)
        _say(f"provenance of {p.hook} row {p.row.id}")
        _say(f"  record       {p.row.record_id} (validation run {p.row.validation_run_id})")
        _say(
            f"  hook run     {p.run.id} {p.run.status}, {p.run.duration_s:.2f} s, "
            f"oom_retries {p.run.oom_retries}"
        )
        _say(f"  release      {p.release.hook} v{p.release.version} {p.release.digest}")
        _say(f"  command      {' '.join(p.release.command or [])}")
        _say(f"  source_ref   {p.release.source_ref}")
        provenance = {
            "hook": p.hook,
            "row_id": p.row.id,
            "record_id": p.row.record_id,
            "hook_run_id": p.run.id,
            "release_version": p.release.version,
            "digest": p.release.digest,
        }
    return {"features": features, "provenance": provenance}


def run_test_command(args: argparse.Namespace) -> int:
    """`osa test`; returns the exit code."""
    conv = find_convention(args.convention)
    with _archive_dir(args.archive, args.keep) as root:
        if args.records is not None:
            files_dir = Path(args.files) if args.files is not None else None
            records = records_from_file(Path(args.records), files_dir, args.limit)
        else:
            records = records_from_ingester(conv, args.limit, root / "ingested")
        if not records:
            _say("0 record(s): nothing to validate")
            return 1
        if args.server is not None:
            from osa.cli.remote_test import print_json, validate_on_server

            outcome = validate_on_server(
                conv, records, server=args.server, token=args.token, timeout=args.timeout
            )
            if args.json:
                print_json(outcome)
            return 0 if outcome["status"] == "completed" else 1
        archive = LocalArchive(root)
        _say(f'osa test: "{conv.title}" on a local archive ({root})')
        deployed = archive.deploy_convention(conv, docs_check=not args.skip_docs_check)
        hooks = [r.hook for r in deployed.releases]
        versions = ", ".join(
            f"{r.hook} v{r.version}{'' if created else ' (unchanged)'}"
            for r, created in zip(deployed.releases, deployed.created, strict=True)
        )
        _say(f"deployed {deployed.slug}: {versions or 'no hooks'}")
        run_id = archive.submit(deployed.slug, records)
        _say(f"validating {len(records)} record(s), run {run_id}")
        result = archive.wait(run_id, on_event=_progress, timeout=args.timeout)
        if result.failure:
            _say(f"run {result.status}: {result.failure}")
        report = _report(archive, result, hooks)
        accepted = len(result.accepted)
        rejected = sum(1 for v in result.verdicts if v.verdict == "rejected")
        errored = sum(1 for v in result.verdicts if v.verdict == "errored")
        summary = f"{len(result.verdicts)} record(s): {accepted} accepted, {rejected} rejected"
        _say(summary + (f", {errored} errored" if errored else ""))
        if args.json:
            document = {
                "convention": deployed.slug,
                "run_id": result.id,
                "status": result.status,
                "failure": result.failure,
                "records": [
                    {
                        "id": v.record_id,
                        "verdict": v.verdict,
                        "hook": v.hook,
                        "reason": v.reason,
                    }
                    for v in result.verdicts
                ],
                **report,
            }
            print(json.dumps(document, ensure_ascii=False, default=str))
        return 0 if result.status in ("completed", "rejected") else 1


def add_test_command(commands: Any) -> None:
    """Registers `osa test` on the CLI's subparsers."""
    test = commands.add_parser(
        "test",
        help="validate records through the real engine on a local archive",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument("--convention", metavar="TITLE", help="the convention (title or slug)")
    test.add_argument("--records", metavar="FILE", help="JSON lines of records to validate")
    test.add_argument("--files", metavar="DIR", help="record files, in DIR/<record id>/")
    test.add_argument("--limit", type=int, default=None, help="validate at most N records")
    test.add_argument("--archive", metavar="DIR", help="archive directory (default: a temp dir)")
    test.add_argument("--keep", action="store_true", help="keep the temporary archive")
    test.add_argument("--timeout", type=float, default=None, help="give up after N seconds")
    test.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    test.add_argument("--skip-docs-check", action="store_true", help="do not run the docs gate")
    test.add_argument(
        "--server",
        nargs="?",
        const="",
        metavar="URL",
        help="validate on a running server instead (where the convention is deployed; "
        "without URL: OSA_SERVER or the linked one)",
    )
    test.add_argument("--token", help="with --server: bearer token (default: OSA_TOKEN, login)")
    test.set_defaults(handler=run_test_command)


__all__ = ["add_test_command", "records_from_file", "run_test_command"]
