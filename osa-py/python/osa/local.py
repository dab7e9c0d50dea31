"""The local engine: an OSA archive in a directory, driven from Python.

The archive is the engine of `osa::local` (Rust): a SQLite database, a blob store and
batch work directories under one path, with every hook run as a local process through
the same batch contract as in production. Deploys are audited, each validation is a
durable saga, features land in typed per-hook tables with their provenance.

```python
from osa.local import LocalArchive

archive = LocalArchive("./.osa-archive")
archive.deploy_convention()              # the installed convention, hooks as processes
result = archive.validate("my-convention", [
    {"id": "rec-1", "metadata": {...}, "files": "./samples/rec-1"},
])
print(result.status, result.accepted)
for row in archive.features("my_hook").rows:
    print(row.values, archive.provenance("my_hook", row.id).release.digest)
```

Every call releases the GIL while the engine works; `wait_async` and `validate_async`
run the wait in a thread so an event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from osa import _native, _registry
from osa._native import (
    ConflictError,
    EngineError,
    InvalidRequestError,
    NotFoundError,
    UnavailableError,
)
from osa.errors import DeployError
from osa.manifest import check_docs
from osa.payload import check_engine_rules, manifest_body

__all__ = [
    "ConflictError",
    "DeployResult",
    "EngineError",
    "FeaturePage",
    "FeatureRow",
    "HookRun",
    "InvalidRequestError",
    "LocalArchive",
    "LocalRecord",
    "NotFoundError",
    "Provenance",
    "RecordPage",
    "RecordVerdict",
    "Release",
    "RunEvent",
    "RunResult",
    "RunSummary",
    "StepResult",
    "UnavailableError",
    "VerdictCounts",
    "check_hooks_reachable",
    "process_release",
]

#: Where the hook processes' Python comes from: the interpreter running this code.
HOOK_MODULE = "osa.runtime.entrypoint"


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True)
class Release:
    """An immutable hook release: what ran, pinned by digest."""

    id: str
    hook: str
    version: int
    digest: str
    runtime: dict[str, Any]
    source_ref: str
    built_by: str | None
    built_at: datetime

    @property
    def command(self) -> list[str] | None:
        """The command of a `process` release (`None` for an OCI image)."""
        command = self.runtime.get("command")
        return list(command) if command is not None else None

    @property
    def image(self) -> str | None:
        """The image of an `oci` release (`None` for a local process)."""
        image = self.runtime.get("image")
        return str(image) if image is not None else None

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> Release:
        runtime = dict(d["runtime"])
        return cls(
            id=d["id"],
            hook=d["hook"],
            version=d["version"],
            digest=runtime["digest"],
            runtime=runtime,
            source_ref=d["source_ref"],
            built_by=d.get("built_by"),
            built_at=datetime.fromisoformat(d["built_at"]),
        )


@dataclass(frozen=True)
class DeployResult:
    """An audited deploy: the audit row, the convention and one release per hook."""

    deployment: dict[str, Any]
    convention: dict[str, Any]
    releases: list[Release]
    created: list[bool]

    @property
    def slug(self) -> str:
        """The convention's slug (what `submit` takes)."""
        return str(self.convention["slug"])


@dataclass(frozen=True)
class StepResult:
    """One step of a run: a hook release over the records still in play."""

    index: int
    hook: str
    version: int
    status: str
    passed: int
    rejected: int
    errored: int
    hook_run_id: str | None

    @classmethod
    def _from(cls, s: Mapping[str, Any]) -> StepResult:
        return cls(
            index=s["release"]["index"],
            hook=s["release"]["hook"],
            version=s["release"]["version"],
            status=s["status"],
            passed=s["counts"]["passed"],
            rejected=s["counts"]["rejected"],
            errored=s["counts"]["errored"],
            hook_run_id=s.get("hook_run_id"),
        )


@dataclass(frozen=True)
class RecordVerdict:
    """A record's verdict: `accepted`, `rejected`, `errored` or `pending`."""

    record_id: str
    verdict: str
    hook: str | None = None
    step: int | None = None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        """Whether the record passed every hook."""
        return self.verdict == "accepted"

    @classmethod
    def _from(cls, v: Mapping[str, Any]) -> RecordVerdict:
        verdict = v["verdict"]
        return cls(
            record_id=v["record_id"],
            verdict=verdict["verdict"],
            hook=verdict.get("hook"),
            step=verdict.get("step"),
            reason=verdict.get("reason", verdict.get("error")),
        )


@dataclass(frozen=True)
class RecordPage:
    """A page of a run's verdicts, in submit order.

    Pass `next` as `from_` for the next page; it is `None` after the run's last record.
    """

    records: list[RecordVerdict]
    next: int | None

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> RecordPage:
        return cls(records=[RecordVerdict._from(v) for v in d["records"]], next=d["next"])


@dataclass(frozen=True)
class VerdictCounts:
    """How many records of a run have each verdict."""

    pending: int
    accepted: int
    rejected: int
    errored: int

    @property
    def total(self) -> int:
        """Every record counted."""
        return self.pending + self.accepted + self.rejected + self.errored

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> VerdictCounts:
        return cls(
            pending=d["pending"],
            accepted=d["accepted"],
            rejected=d["rejected"],
            errored=d["errored"],
        )


@dataclass(frozen=True)
class RunResult:
    """A validation run as stored: status, steps and verdicts."""

    id: str
    convention: str
    status: str
    current_step: int
    record_count: int
    failure: str | None
    steps: list[StepResult]
    verdicts: list[RecordVerdict]
    created_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        """Whether the run reached a terminal status."""
        return self.status in ("completed", "rejected", "failed", "cancelled")

    @property
    def accepted(self) -> list[str]:
        """Ids of the records that passed every hook."""
        return [v.record_id for v in self.verdicts if v.accepted]

    def verdict(self, record_id: str) -> RecordVerdict:
        """The verdict of one record.

        Raises:
            KeyError: the record is not part of the run.
        """
        for v in self.verdicts:
            if v.record_id == record_id:
                return v
        raise KeyError(record_id)

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> RunResult:
        run = d["run"]
        return cls(
            id=run["id"],
            convention=run["convention"],
            status=run["status"],
            current_step=run["current_step"],
            record_count=run["record_count"],
            failure=run.get("failure"),
            steps=[StepResult._from(s) for s in d["steps"]],
            verdicts=[RecordVerdict._from(v) for v in d["verdicts"]],
            created_at=datetime.fromisoformat(run["created_at"]),
            updated_at=datetime.fromisoformat(run["updated_at"]),
        )


@dataclass(frozen=True)
class RunSummary:
    """A validation run as stored, bounded: status, steps, counts and first verdicts.

    `verdicts` lists the run's first records; `next` is where `LocalArchive.records`
    goes on (its `from_`), `None` when `verdicts` lists every record.
    """

    id: str
    convention: str
    status: str
    current_step: int
    record_count: int
    failure: str | None
    steps: list[StepResult]
    counts: VerdictCounts
    verdicts: list[RecordVerdict]
    next: int | None
    created_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        """Whether the run reached a terminal status."""
        return self.status in ("completed", "rejected", "failed", "cancelled")

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> RunSummary:
        run = d["run"]
        return cls(
            id=run["id"],
            convention=run["convention"],
            status=run["status"],
            current_step=run["current_step"],
            record_count=run["record_count"],
            failure=run.get("failure"),
            steps=[StepResult._from(s) for s in d["steps"]],
            counts=VerdictCounts._from(d["counts"]),
            verdicts=[RecordVerdict._from(v) for v in d["verdicts"]],
            next=d["next"],
            created_at=datetime.fromisoformat(run["created_at"]),
            updated_at=datetime.fromisoformat(run["updated_at"]),
        )


@dataclass(frozen=True)
class RunEvent:
    """A persisted progress event.

    `type` is `submitted`, `step_started`, `hook_progress`, `step_retrying`,
    `step_finished` or `finished`; `data` holds its fields.
    """

    seq: int
    at: datetime
    type: str
    data: dict[str, Any]

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> RunEvent:
        data = {k: v for k, v in d.items() if k not in ("seq", "at", "type")}
        return cls(seq=d["seq"], at=datetime.fromisoformat(d["at"]), type=d["type"], data=data)


@dataclass(frozen=True)
class FeatureRow:
    """A stored feature row with the ids that lead to its provenance."""

    id: int
    record_id: str
    validation_run_id: str | None
    run_id: str
    row_index: int
    created_at: datetime
    values: dict[str, Any]

    @classmethod
    def _from(cls, d: Mapping[str, Any], columns: Sequence[str] | None = None) -> FeatureRow:
        values = d["values"]
        if not isinstance(values, dict):
            values = dict(zip(columns or [], values, strict=False))
        return cls(
            id=d["id"],
            record_id=d["record_id"],
            validation_run_id=d.get("validation_run_id"),
            run_id=d["run_id"],
            row_index=d["row_index"],
            created_at=datetime.fromisoformat(d["created_at"]),
            values=values,
        )


@dataclass(frozen=True)
class FeaturePage:
    """A page of a hook's rows; pass `next_after` as `after` for the next page."""

    columns: list[dict[str, Any]]
    rows: list[FeatureRow]
    next_after: int | None


@dataclass(frozen=True)
class HookRun:
    """One execution of a release over a batch."""

    id: str
    status: str
    started_at: datetime
    finished_at: datetime
    duration_s: float
    oom_retries: int
    log_ref: str | None
    input_sha256: str | None
    counts: dict[str, int]


@dataclass(frozen=True)
class Provenance:
    """Where a feature row came from: row → hook run → release."""

    hook: str
    row: FeatureRow
    run: HookRun
    release: Release


@dataclass(frozen=True)
class LocalRecord:
    """A record to validate.

    Attributes:
        id: the record id (1-255 characters, no control characters).
        metadata: the metadata object.
        files: a directory (its regular files) or a list of file paths; none when
            omitted.
    """

    id: str
    metadata: Mapping[str, Any]
    files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None


def _file_entries(files: Any) -> list[dict[str, Any]]:
    if files is None:
        return []
    if isinstance(files, str | os.PathLike):
        root = Path(files)
        if not root.is_dir():
            raise FileNotFoundError(f"files directory not found: {root}")
        paths = sorted((p for p in root.iterdir() if p.is_file()), key=lambda p: p.name)
    else:
        paths = [Path(p) for p in files]
    entries = []
    for path in paths:
        absolute = path.resolve()
        if not absolute.is_file():
            raise FileNotFoundError(f"record file not found: {path}")
        entries.append({"name": path.name, "source": {"source": "local", "path": str(absolute)}})
    return entries


def _record_json(record: LocalRecord | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(record, LocalRecord):
        rid, metadata, files = record.id, record.metadata, record.files
    else:
        unknown = sorted(set(record) - {"id", "metadata", "files"})
        if unknown:
            raise InvalidRequestError(
                f"record {record.get('id')!r}: unknown keys {unknown} (known: id, metadata, files)"
            )
        rid, metadata, files = record["id"], record.get("metadata", {}), record.get("files")
    return {"id": rid, "metadata": dict(metadata), "files": _file_entries(files)}


def _code_digest(fn: Callable[..., Any]) -> str:
    """sha256 of the code a hook runs.

    Covers the Python files of its top-level package (or its module's file), the hook's
    name and the SDK version.
    """
    digest = hashlib.sha256()
    digest.update(f"osa-py {_native.__version__}\0{fn.__module__}\0{fn.__name__}\0".encode())
    module = sys.modules.get(fn.__module__)
    top = sys.modules.get(fn.__module__.partition(".")[0])
    files: list[Path] = []
    package_dirs = getattr(top, "__path__", None)
    if package_dirs:
        for directory in package_dirs:
            base = Path(directory)
            files.extend(sorted(base.rglob("*.py")))
    elif module is not None and getattr(module, "__file__", None):
        files.append(Path(str(module.__file__)))
    for path in files:
        digest.update(str(path.name).encode() + b"\0")
        digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()


def process_release(
    fn: Callable[..., Any], *, python: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The `release` of a hook run as a local process by `osa-run-hook`'s module.

    The command is `<python> -m osa.runtime.entrypoint` (the runner passes the hook's
    name in `OSA_HOOK_NAME`); the digest covers the hook's package code, so changing
    the code makes a new release and redeploying unchanged code does not.
    """
    executable = str(python if python is not None else sys.executable)
    return {
        "command": [executable, "-m", HOOK_MODULE],
        "digest": _code_digest(fn),
        "source_ref": f"local:{fn.__module__}",
    }


def local_payload(
    conv: _registry.ConventionInfo,
    *,
    docs_check: bool = True,
    python: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The deploy payload of a convention with `process` releases for its hooks.

    The ingester is left out: a local archive takes records from the caller. Every hook
    must be one the hook process finds through the `osa.conventions` entry points (see
    `check_hooks_reachable`).

    Raises:
        DeployError: the docs gate or the engine's rules refuse the convention, or a
            hook cannot run as a local process.
    """
    if docs_check:
        check_docs([conv])
    body = manifest_body(conv)
    check_engine_rules(conv, body)
    body.pop("ingester", None)
    by_name = {}
    for fn in conv.hooks:
        info = _registry.find_hook(fn) or _registry.find_hook_by_name(getattr(fn, "__name__", ""))
        if info is not None:
            by_name[info.name] = info
    hooks = [by_name[entry["name"]] for entry in body["hooks"]]
    check_hooks_reachable(hooks, python=python)
    for entry, info in zip(body["hooks"], hooks, strict=True):
        entry["release"] = process_release(info.fn, python=python)
    return body


#: Run with `-c` by the releases' interpreter: loads the conventions the way the hook
#: process does and writes, to the file named by its argument, the module and qualified
#: name of the first hook registered under each name (or the loading error) as JSON.
_REACHABLE_HOOKS_PROBE = """
import json, sys
from osa import _registry
from osa._discovery import load_conventions
try:
    load_conventions()
except Exception as e:
    result = {"error": f"{type(e).__name__}: {e}"}
else:
    hooks = {}
    for h in _registry.hooks():
        hooks.setdefault(h.name, [h.fn.__module__, h.fn.__qualname__])
    result = {"hooks": hooks}
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(result, f)
"""

#: Seconds the probe of `check_hooks_reachable` may take.
PROBE_TIMEOUT_S = 300


def _where(fn: Callable[..., Any]) -> tuple[str, str]:
    return (
        str(getattr(fn, "__module__", None) or "?"),
        str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "?")),
    )


def check_hooks_reachable(
    hooks: Sequence[_registry.HookInfo], *, python: str | os.PathLike[str] | None = None
) -> None:
    """Checks that a hook process (`<python> -m osa.runtime.entrypoint`) runs these hooks.

    The hook process finds its hook only through the `osa.conventions` entry points: it
    loads them and runs the first hook registered under the name it is given. A hook
    defined elsewhere (a script, a notebook, a test module) would deploy, then fail
    every run. This starts `python` once, with the runner's environment (no
    `PYTHONPATH`, an empty working directory and home), loads the conventions there and
    compares each hook's module and qualified name.

    Raises:
        DeployError: a hook is not registered through an entry point (or another hook
            holds its name there), the conventions fail to load, or the probe fails.
    """
    if not hooks:
        return
    import subprocess
    import tempfile

    executable = str(python if python is not None else sys.executable)
    with tempfile.TemporaryDirectory(prefix="osa-probe-") as scratch:
        out = Path(scratch, "hooks.json")
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": scratch}
        probe = f"`{executable}` (loading the conventions as `-m {HOOK_MODULE}` does)"
        try:
            proc = subprocess.run(
                [executable, "-c", _REACHABLE_HOOKS_PROBE, str(out)],
                env=env,
                cwd=scratch,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=PROBE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DeployError(f"cannot run {probe}: {e}") from None
        try:
            found = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DeployError(
                f"{probe} failed with exit code {proc.returncode}: {proc.stderr.strip()[-2000:]}"
            ) from None
    if "error" in found:
        raise DeployError(
            f"the hook process cannot load the conventions: {found['error']}",
            hint=f"Run `{executable} -m {HOOK_MODULE}` by hand to see the full error.",
        )
    registered: dict[str, list[str]] = found["hooks"]
    for info in hooks:
        module, qualname = _where(info.fn)
        there = registered.get(info.name)
        if there is None:
            raise DeployError(
                f"hook {info.name!r} ({module}.{qualname}) cannot run as a local process: "
                "the hook process finds hooks only through the `osa.conventions` entry "
                "points, and none of them registers it",
                hint="Define the hook in an installed package that declares an "
                "`osa.conventions` entry point importing it (`pip install -e .` while "
                "developing), and deploy that package's convention.",
            )
        if tuple(there) != (module, qualname):
            raise DeployError(
                f"hook {info.name!r} ({module}.{qualname}) cannot run as a local process: "
                f"through the `osa.conventions` entry points, the hook process would run "
                f"{there[0]}.{there[1]}, registered under the same name",
                hint="Deploy the convention of the installed package, or rename the hook.",
            )


class LocalArchive:
    """An OSA archive in a local directory (created when absent).

    Args:
        path: the archive directory (`archive.db`, `blobs/`, `work/` inside).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._native = _native.Archive(os.fspath(path))

    @property
    def path(self) -> Path:
        """The archive directory."""
        return self._native.path

    def __repr__(self) -> str:
        return f"LocalArchive({str(self.path)!r})"

    # Deploys -----------------------------------------------------------------------

    def deploy(
        self, payload: Mapping[str, Any] | str | bytes, *, principal: str = "local"
    ) -> DeployResult:
        """Deploys one convention payload (the engine's deploy body), audited.

        Raises:
            InvalidRequestError: the payload breaks a rule (the message names the path).
            ConflictError: a hook's output contract differs from the deployed one.
        """
        if isinstance(payload, bytes):
            text = payload.decode()
        elif isinstance(payload, str):
            text = payload
        else:
            text = json.dumps(payload)
        out = json.loads(self._native.deploy(text, principal))
        return DeployResult(
            deployment=out["deployment"],
            convention=out["convention"],
            releases=[Release._from(r["release"]) for r in out["releases"]],
            created=[bool(r["created"]) for r in out["releases"]],
        )

    def deploy_convention(
        self,
        convention: _registry.ConventionInfo | str | None = None,
        *,
        docs_check: bool = True,
        principal: str = "local",
    ) -> DeployResult:
        """Deploys a registered convention with its hooks as local processes.

        Args:
            convention: the convention, its title, or `None` for the only one
                registered (entry points are loaded first).
            docs_check: run the docs gate.
            principal: recorded on the audit row.

        Raises:
            DeployError: no such convention, several to choose from, the docs gate or
                the engine's rules refuse it, or a hook is not registered through an
                `osa.conventions` entry point (the hook processes would not find it).
        """
        conv = (
            convention
            if isinstance(convention, _registry.ConventionInfo)
            else find_convention(convention)
        )
        return self.deploy(local_payload(conv, docs_check=docs_check), principal=principal)

    def set_live(self, hook: str, version: int, *, principal: str = "local") -> Release:
        """Points a hook's live release at `version` (rollback or pin); returns it."""
        out = json.loads(self._native.set_live(hook, version, principal))
        return Release._from(out["current"])

    def conventions(self) -> list[dict[str, Any]]:
        """The deployed conventions."""
        result: list[dict[str, Any]] = json.loads(self._native.conventions())
        return result

    def releases(self, hook: str) -> list[Release]:
        """A hook's releases, oldest first."""
        return [Release._from(r) for r in json.loads(self._native.releases(hook))]

    # Validation --------------------------------------------------------------------

    def submit(self, convention: str, records: Iterable[LocalRecord | Mapping[str, Any]]) -> str:
        """Submits records to a convention's live hooks; returns the run id.

        Records are dicts `{"id", "metadata", "files"}` or `LocalRecord`s; `files` is a
        directory or a list of paths. The live releases are fixed at submit.
        """
        body = json.dumps({"records": [_record_json(r) for r in records]})
        return self._native.submit(convention, body)

    def wait(
        self,
        run_id: str,
        *,
        on_event: Callable[[RunEvent], object] | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Runs the engine's worker here until the run ends; returns the result.

        `on_event` gets every progress event (persisted ones first). An exception it
        raises, a `timeout` (`TimeoutError`) or Ctrl-C stops the wait at the next step
        boundary: a hook already running finishes and its step is committed. The run
        itself is durable and a later `wait` (or any worker) finishes it.
        """
        callback = None
        if on_event is not None:
            handler = on_event

            def callback(text: str) -> None:
                handler(RunEvent._from(json.loads(text)))

        return RunResult._from(json.loads(self._native.wait(run_id, callback, timeout)))

    async def wait_async(
        self,
        run_id: str,
        *,
        on_event: Callable[[RunEvent], object] | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """`wait` in a worker thread, for use from an event loop."""
        return await asyncio.to_thread(self.wait, run_id, on_event=on_event, timeout=timeout)

    def validate(
        self,
        convention: str,
        records: Iterable[LocalRecord | Mapping[str, Any]],
        *,
        on_event: Callable[[RunEvent], object] | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """`submit` then `wait`."""
        return self.wait(self.submit(convention, records), on_event=on_event, timeout=timeout)

    async def validate_async(
        self,
        convention: str,
        records: Iterable[LocalRecord | Mapping[str, Any]],
        *,
        on_event: Callable[[RunEvent], object] | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """`validate` for use from an event loop."""
        run_id = await asyncio.to_thread(self.submit, convention, list(records))
        return await self.wait_async(run_id, on_event=on_event, timeout=timeout)

    def run(self, run_id: str) -> RunResult:
        """A run as stored now (status, steps, verdicts).

        It holds the verdict of every record of the run, however many: `summary` and
        `records` (or `iter_records`) read a large run a page at a time.
        """
        return RunResult._from(json.loads(self._native.run(run_id)))

    def summary(self, run_id: str, *, limit: int = 1000) -> RunSummary:
        """A run as stored now, bounded: status, steps, counts and first verdicts.

        `verdicts` holds the verdicts of the run's first `limit` records (1 to 10,000).
        """
        return RunSummary._from(json.loads(self._native.summary(run_id, limit)))

    def records(self, run_id: str, *, from_: int = 0, limit: int = 1000) -> RecordPage:
        """A page of a run's verdicts, in submit order.

        The records at submit positions `from_` to `from_ + limit - 1` (`limit` 1 to
        10,000); fewer at the end of the run, none past it.
        """
        return RecordPage._from(json.loads(self._native.records(run_id, from_, limit)))

    def iter_records(self, run_id: str, *, page_size: int = 1000) -> Iterator[RecordVerdict]:
        """The verdict of every record of a run, in submit order, page by page."""
        start: int | None = 0
        while start is not None:
            page = self.records(run_id, from_=start, limit=page_size)
            yield from page.records
            start = page.next

    def cancel(self, run_id: str) -> bool:
        """Cancels a run; `False` when it had already ended."""
        return self._native.cancel(run_id)

    # Features and provenance -------------------------------------------------------

    def features(
        self,
        hook: str,
        *,
        record_id: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> FeaturePage:
        """A page of a hook's feature rows, in row-id order after `after`."""
        out = json.loads(self._native.features(hook, record_id, after, limit))
        return FeaturePage(
            columns=out["columns"],
            rows=[FeatureRow._from(r) for r in out["rows"]],
            next_after=out["next_after"],
        )

    def iter_features(
        self, hook: str, *, record_id: str | None = None, page_size: int = 500
    ) -> Iterator[FeatureRow]:
        """Every row of a hook (or of one record), page by page."""
        after: int | None = None
        while True:
            page = self.features(hook, record_id=record_id, after=after, limit=page_size)
            yield from page.rows
            if page.next_after is None:
                return
            after = page.next_after

    def provenance(self, hook: str, row_id: int) -> Provenance:
        """The provenance chain of one feature row."""
        out = json.loads(self._native.provenance(hook, row_id))
        run = out["run"]
        release = Release._from(out["release"])
        hook_info = self.hook_columns(hook)
        return Provenance(
            hook=out["hook"],
            row=FeatureRow._from(out["row"], hook_info),
            run=HookRun(
                id=run["id"],
                status=run["status"],
                started_at=datetime.fromisoformat(run["started_at"]),
                finished_at=datetime.fromisoformat(run["finished_at"]),
                duration_s=run["duration_s"],
                oom_retries=run["oom_retries"],
                log_ref=run.get("log_ref"),
                input_sha256=run.get("input_sha256"),
                counts=dict(run["counts"]),
            ),
            release=release,
        )

    def hook_columns(self, hook: str) -> list[str]:
        """The data column names of a hook's feature table, in order."""
        text = self._native.hook(hook)
        if text is None:
            raise NotFoundError(f"hook {hook} not found")
        return [c["name"] for c in json.loads(text)["identity"]["feature"]["columns"]]

    def hook_log(self, hook_run_id: str) -> str:
        """The captured log (stderr and progress) of a hook run."""
        return self._native.hook_log(hook_run_id).decode(errors="replace")


def _slug(conv: _registry.ConventionInfo) -> str | None:
    """The engine's slug of a convention's title; `None` when it has none."""
    try:
        return _native.convention_slug(conv.title)
    except ValueError:
        return None


def _deployable(conv: _registry.ConventionInfo) -> _registry.ConventionInfo:
    """`conv`, once its title is known to give a slug.

    Raises:
        DeployError: the title gives no slug.
    """
    try:
        _native.convention_slug(conv.title)
    except ValueError as e:
        raise DeployError(
            f"convention {conv.title!r} cannot be deployed: {e}",
            hint="The engine derives the slug from the title's ASCII letters and digits; "
            "give the title some.",
        ) from None
    return conv


def find_convention(title: str | None = None) -> _registry.ConventionInfo:
    """A registered convention by title or slug (entry points loaded first).

    With `title=None`, the only one registered. A convention whose title gives no slug
    is still found by its title (and then refused); it never hides the others.

    Raises:
        DeployError: none matches, several are registered and none was named, or the
            convention's title gives no slug.
    """
    from osa._discovery import load_conventions

    load_conventions()
    conventions = _registry.conventions()
    if not conventions:
        raise DeployError(
            "no conventions registered",
            hint="Install a package that declares an `osa.conventions` entry point.",
        )
    if title is None:
        if len(conventions) == 1:
            return _deployable(conventions[0])
        names = ", ".join(repr(c.title) for c in conventions)
        raise DeployError(
            f"{len(conventions)} conventions are registered: {names}",
            hint="Name one with --convention TITLE.",
        )
    wanted = title.strip().lower()
    for conv in conventions:
        if wanted in (conv.title.strip().lower(), _slug(conv)):
            return _deployable(conv)
    names = ", ".join(repr(c.title) for c in conventions)
    raise DeployError(f"no convention titled {title!r} (registered: {names})")
