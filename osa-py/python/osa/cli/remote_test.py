"""`osa test --server`: the same records as `osa test`, validated by a running server.

The convention must be deployed there already (`osa deploy`, or `osa deploy --process`
for a server on this machine). Each record's files are uploaded (`PUT
/api/v1/uploads/{name}`), the records are submitted in one `POST /api/v1/validations`,
and the run is followed (`GET /api/v1/validations/{id}`) until it ends; the verdicts are
printed as `osa test` prints them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from osa import _native, _registry
from osa.cli._http import json_object
from osa.cli.credentials import resolve_token_with_source
from osa.cli.link import resolve_server_with_source
from osa.cli.ui import UI
from osa.errors import OsaError

__all__ = ["RemoteTestError", "validate_on_server"]

#: Seconds between two looks at the run.
POLL_S = 0.25
#: Seconds one request may take.
REQUEST_TIMEOUT_S = 60.0
#: Verdicts read per page of the run view.
PAGE = 10_000
_TERMINAL = ("completed", "failed", "cancelled")


class RemoteTestError(OsaError):
    """The server refused or could not be reached."""


def _check(resp: httpx.Response, what: str) -> Any:
    if resp.status_code >= 400:
        body = json_object(resp)
        message = body.get("message") if body is not None else None
        raise RemoteTestError(
            f"{what} failed ({resp.status_code}): {message or resp.text[:500]}",
            hint="`osa login` (or `osa start` for a local server) stores a token."
            if resp.status_code in (401, 403)
            else None,
        )
    return resp.json()


def _upload(client: httpx.Client, files: Path | None) -> list[dict[str, Any]]:
    if files is None or not files.is_dir():
        return []
    out = []
    for path in sorted(p for p in files.iterdir() if p.is_file()):
        answer = _check(
            client.put(f"/uploads/{path.name}", content=path.read_bytes()),
            f"uploading {path.name}",
        )
        out.append({"name": path.name, "source": {"source": "object", "key": answer["key"]}})
    return out


def _verdict(entry: dict[str, Any]) -> tuple[str, str | None, str | None]:
    verdict = entry.get("verdict")
    if isinstance(verdict, str):
        return verdict, None, None
    if isinstance(verdict, dict):
        reason = verdict.get("reason", verdict.get("error"))
        return str(verdict.get("verdict", "?")), verdict.get("hook"), reason
    return "?", None, None


def validate_on_server(
    conv: _registry.ConventionInfo,
    records: list[dict[str, Any]],
    *,
    server: str | None,
    token: str | None = None,
    timeout: float | None = None,
    ui: UI | None = None,
) -> dict[str, Any]:
    """Validates `records` (`{"id", "metadata", "files": dir | None}`) on a server.

    Returns `{"convention", "run_id", "status", "records": [{id, verdict, hook,
    reason}]}`.

    Raises:
        RemoteTestError: the server refused a request, could not be reached, or the run
            did not end within `timeout` seconds.
    """
    out = UI.create() if ui is None else ui
    base, source = resolve_server_with_source(server or None)
    bearer, _ = resolve_token_with_source(base, flag=token)
    slug = _native.convention_slug(conv.title)
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    out.info(f'osa test: "{conv.title}" on {base} (from {source})')
    try:
        with httpx.Client(
            base_url=f"{base}/api/v1", headers=headers, timeout=REQUEST_TIMEOUT_S
        ) as client:
            body = {
                "convention": slug,
                "records": [
                    {"id": r["id"], "metadata": r["metadata"], "files": _upload(client, r["files"])}
                    for r in records
                ],
            }
            run = _check(client.post("/validations", json=body), "submitting the records")
            run_id = str(run["id"])
            out.info(f"validating {len(records)} record(s), run {run_id}")
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                view = _check(
                    client.get(f"/validations/{run_id}", params={"limit": PAGE}),
                    "reading the run",
                )
                status = str(view["run"]["status"])
                if status in _TERMINAL:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise RemoteTestError(f"run {run_id} did not end within {timeout} s")
                time.sleep(POLL_S)
    except httpx.HTTPError as e:
        raise RemoteTestError(f"Could not reach {base}: {e}") from e
    for step in view.get("steps", []):
        counts = step.get("counts", {})
        out.detail(
            f"step {step.get('step')} {step.get('hook', '?'):<24} {step.get('status', '?'):<7} "
            f"{counts.get('passed', 0)} passed, {counts.get('rejected', 0)} rejected, "
            f"{counts.get('errored', 0)} errored"
        )
    out.info("records")
    results = []
    for entry in view.get("verdicts", []):
        verdict, hook, reason = _verdict(entry)
        record_id = str(entry.get("record_id"))
        results.append({"id": record_id, "verdict": verdict, "hook": hook, "reason": reason})
        if verdict == "accepted":
            out.info(f"  ✓ {record_id}")
        else:
            out.info(
                f"  ✗ {record_id}  {verdict} by {hook}: {reason}"
                if hook
                else f"  ✗ {record_id}  {verdict}"
            )
    counts = {
        k: sum(1 for r in results if r["verdict"] == k) for k in ("accepted", "rejected", "errored")
    }
    summary = (
        f"{len(results)} record(s): {counts['accepted']} accepted, {counts['rejected']} rejected"
    )
    out.info(summary + (f", {counts['errored']} errored" if counts["errored"] else ""))
    return {"convention": slug, "run_id": run_id, "status": status, "records": results}


def print_json(document: dict[str, Any]) -> None:
    """The outcome as one JSON line on stdout (`--json`)."""
    print(json.dumps(document, ensure_ascii=False, default=str))
