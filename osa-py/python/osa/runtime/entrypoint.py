"""`osa-run-hook`: the hook container entrypoint (the batch contract).

Inputs: `$OSA_IN/records.jsonl` (one `{"id", "metadata", "size_hint_mb"}` per line) and
`$OSA_FILES/<record dir>/` (each record's files). Outputs in `$OSA_OUT`:
`features.jsonl` (`{"id", "features": [row, ...]}`; a hook returning `None` writes
`"features": []`), `rejections.jsonl` (`{"id", "reason"}`) and `errors.jsonl`
(`{"id", "error", "retryable": false}`). Reading records, checking each row against
the hook's columns and writing the lines are done by `osa._native`.

Exit codes: 0 when the batch was processed (whatever each record's outcome); 1 when
`records.jsonl` is missing or unreadable, the output directory cannot be written, a
convention package fails to load, or the hook cannot be resolved.
"""

from __future__ import annotations

import gc
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pydantic
import pydantic_core
from pydantic import BaseModel

from osa import _native, _registry
from osa._discovery import load_conventions
from osa.authoring.validator import Reject
from osa.errors import ConventionLoadError, HookResolutionError
from osa.runtime.logging import setup_logging
from osa.types.files import FileCollection
from osa.types.record import Record

log = logging.getLogger("osa.hook.entrypoint")

#: Exit code of a processed batch.
EXIT_OK = 0
#: Exit code when inputs are missing/unreadable, outputs unwritable or the hook unknown.
EXIT_FAILURE = 1

#: Records between two full garbage collections: reference cycles a hook leaves behind
#: (large arrays included) cannot pile up over a long batch; a collection takes ~20 ms.
GC_EVERY = 4096


def _dir(explicit: str | os.PathLike[str] | None, env: str, default: str) -> Path:
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(env) or default)


def record_dir(files_dir: str | os.PathLike[str], record_id: str) -> Path | None:
    """The directory of a record's files, if there is one.

    `<files_dir>/<record_dir_name(id)>` (the engine's mapping), else the raw id's
    directory (runners that do not map ids), else `None`.
    """
    mapped_name = _native.record_dir_name(record_id)
    mapped = Path(files_dir, mapped_name)
    if mapped.is_dir():
        return mapped
    plain = record_id not in (".", "..") and not any(c in record_id for c in "/\\\0")
    if plain and record_id != mapped_name:
        raw = Path(files_dir, record_id)
        if raw.is_dir():
            return raw
    return None


def record_files(files_dir: Path, record_id: str) -> FileCollection:
    """The files of a record (see `record_dir`) as a snapshot; empty when it has none."""
    directory = record_dir(files_dir, record_id)
    return FileCollection(directory) if directory is not None else FileCollection.empty()


def validate_metadata(schema_type: Any, metadata: dict[str, Any]) -> Any:
    """Builds the hook's metadata object (pydantic validation for models)."""
    if isinstance(schema_type, type) and issubclass(schema_type, BaseModel):
        return schema_type.model_validate(metadata)
    if schema_type is dict or schema_type is Any:
        return metadata
    return schema_type(**metadata)


class OutputSerialisationError(ValueError):
    """A hook's return value cannot be written as JSON rows."""


def validation_message(error: pydantic.ValidationError) -> str:
    """A one-line summary of a validation error (stable: no documentation URLs).

    Example: `2 validation errors for Sample: count: Input should be a valid integer;
    extra: Extra inputs are not permitted`.
    """
    count = error.error_count()
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
        for err in error.errors(include_url=False)
    ]
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} for {error.title}: " + "; ".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=False)
    return pydantic_core.to_jsonable_python(value, by_alias=False)


def rows_json(result: Any) -> str:
    """The hook's return value as a JSON array of rows.

    `None` → `[]`; a list or tuple → one row per non-`None` item; anything else → one
    row. Models are dumped in JSON mode, so dates, times, UUIDs and decimals are
    strings.

    Raises:
        OutputSerialisationError: a value cannot be represented in JSON (NaN, an
            unknown object).
    """
    if result is None:
        items: list[Any] = []
    elif isinstance(result, list | tuple):
        items = [item for item in result if item is not None]
    else:
        items = [result]
    try:
        rows = [_jsonable(item) for item in items]
    except pydantic_core.PydanticSerializationError as e:
        raise OutputSerialisationError(f"cannot serialise the hook's output: {e}") from e
    try:
        return json.dumps(rows, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except ValueError as e:
        raise OutputSerialisationError(
            f"cannot serialise the hook's output: {e} (NaN or infinity; use None for a "
            "missing value)"
        ) from e
    except TypeError as e:
        raise OutputSerialisationError(f"cannot serialise the hook's output: {e}") from e


def call_hook(fn: Callable[..., Any], record: Record[Any]) -> Any:
    """Calls a hook with its record; a coroutine result is awaited (async hooks)."""
    result = fn(record)
    if inspect.isawaitable(result):
        import asyncio  # imported lazily: it adds ~70 ms to every start, async hooks are rare

        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _describe(e: BaseException) -> str:
    """`Type: message` of an exception (just `Type` when the message is empty).

    Never raises: an exception whose `str()` fails is described by its type.
    """
    try:
        text = str(e)
    except Exception:
        text = ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def run_hook_entrypoint(
    *,
    hook_fn: Callable[..., Any],
    input_dir: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    files_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Runs a registered hook over the batch in `input_dir` and writes its outcomes.

    Directories default to `$OSA_IN`, `$OSA_OUT`, `$OSA_FILES`, then `/osa/in`,
    `/osa/out`, `/osa/files`. Every record gets exactly one outcome line; a failing
    record never stops the batch.

    Returns:
        0 when the batch was processed; 1 when the hook is not registered, the input is
        missing or unreadable, or the outputs cannot be written.
    """
    info = _registry.find_hook(hook_fn)
    if info is None:
        log.error("%r is not a registered hook", getattr(hook_fn, "__name__", hook_fn))
        return EXIT_FAILURE
    in_dir = _dir(input_dir, "OSA_IN", "/osa/in")
    out_dir = _dir(output_dir, "OSA_OUT", "/osa/out")
    files_root = _dir(files_dir, "OSA_FILES", "/osa/files")
    records_path = in_dir / "records.jsonl"
    try:
        columns = info.columns_json()
    except ValueError as e:
        log.error("hook %s: its output type cannot be stored: %s", info.name, e)
        return EXIT_FAILURE
    try:
        reader = _native.RecordReader(str(records_path))
    except OSError as e:
        log.error("cannot read %s: %s", records_path, e)
        return EXIT_FAILURE
    try:
        writer = _native.OutputWriter(str(out_dir), columns, info.cardinality)
    except OSError as e:
        log.error("cannot write outputs to %s: %s", out_dir, e)
        return EXIT_FAILURE
    log.info("HOOK START hook=%s input=%s", info.name, records_path)
    total = 0
    try:
        with writer:
            for item in reader:
                total += 1
                _process(info, item, writer, files_root)
                if total % GC_EVERY == 0:
                    gc.collect()
    except OSError as e:
        log.error("I/O failure after %d records: %s", total, e)
        return EXIT_FAILURE
    finally:
        reader.close()
    log.info(
        "HOOK DONE %d total, %d passed, %d rejected, %d errored",
        total,
        writer.passed,
        writer.rejected,
        writer.errored,
    )
    return EXIT_OK


def _process(
    info: _registry.HookInfo,
    item: _native.InputRecord,
    writer: _native.OutputWriter,
    files_root: Path,
) -> None:
    """Runs the hook on one record and writes its one outcome line.

    Whatever fails on the way becomes the record's error, writing the outcome included;
    only an I/O error of the writer stops the batch.
    """
    record_id = item.outcome_id
    try:
        outcome = _outcome(info, item, files_root)
    except Exception as e:
        log.warning("record %s: %s", record_id, _describe(e))
        outcome = ("error", _describe(e))
    try:
        _write_outcome(writer, record_id, outcome)
    except OSError:
        raise
    except Exception as e:
        log.warning("record %s: cannot write its outcome: %s", record_id, _describe(e))
        writer.write_error(record_id, f"cannot write the outcome: {_describe(e)}")


#: A record's outcome: `("features", rows JSON)`, `("rejected", reason)` or
#: `("error", message)`.
Outcome = tuple[Literal["features", "rejected", "error"], str]


def _outcome(info: _registry.HookInfo, item: _native.InputRecord, files_root: Path) -> Outcome:
    record_id = item.outcome_id
    if item.error is not None or item.metadata is None:
        return ("error", item.error or "malformed record")
    try:
        metadata = validate_metadata(info.schema_type, item.metadata)
    except pydantic.ValidationError as e:
        return ("error", f"metadata validation: {validation_message(e)}")
    except Exception as e:
        return ("error", f"metadata validation: {_describe(e)}")
    try:
        record: Record[Any] = Record(
            id=record_id,
            srn=item.srn or "",
            created_at=datetime.now(UTC),
            metadata=metadata,
            files=record_files(files_root, record_id),
        )
        result = call_hook(info.fn, record)
        return ("features", rows_json(result))
    except Reject as e:
        try:
            return ("rejected", str(e))
        except Exception as unprintable:
            return ("error", f"the rejection's reason cannot be read: {_describe(unprintable)}")
    except OutputSerialisationError as e:
        log.warning("record %s: %s", record_id, e)
        return ("error", str(e))
    except Exception as e:
        log.warning("record %s: %s", record_id, _describe(e))
        log.debug("record %s failed", record_id, exc_info=True)
        return ("error", _describe(e))


def _write_outcome(writer: _native.OutputWriter, record_id: str, outcome: Outcome) -> None:
    kind, text = outcome
    if kind == "features":
        refused = writer.write_features(record_id, text)
        if refused is not None:
            log.warning("record %s: output refused: %s", record_id, refused)
    elif kind == "rejected":
        writer.write_rejection(record_id, text)
    else:
        writer.write_error(record_id, text)


def resolve_hook(name: str | None) -> _registry.HookInfo:
    """The hook to run: the first registered hook called `name`, or the only hook.

    Raises:
        HookResolutionError: no hook has that name, or no name is given and the number
            of registered hooks is not exactly one.
    """
    registered = _registry.hooks()
    if name:
        matches = [h for h in registered if h.name == name]
        if not matches:
            known = ", ".join(sorted({h.name for h in registered})) or "none"
            raise HookResolutionError(
                f"no registered hook is called {name!r} (registered: {known})"
            )
        if len(matches) > 1:
            log.warning("%d hooks are called %r; running the first", len(matches), name)
        return matches[0]
    if len(registered) == 1:
        return registered[0]
    raise HookResolutionError(
        f"OSA_HOOK_NAME is not set and {len(registered)} hooks are registered; "
        "set OSA_HOOK_NAME to the hook to run"
    )


def main() -> None:
    """Console script `osa-run-hook`: load conventions, resolve the hook, run the batch."""
    setup_logging()
    try:
        load_conventions()
        info = resolve_hook(os.environ.get("OSA_HOOK_NAME"))
    except (ConventionLoadError, HookResolutionError) as e:
        log.error("%s", e)
        sys.exit(EXIT_FAILURE)
    sys.exit(run_hook_entrypoint(hook_fn=info.fn))


if __name__ == "__main__":
    main()
