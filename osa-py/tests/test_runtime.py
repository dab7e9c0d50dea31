"""`osa-run-hook` as a real subprocess, and the native reader and writer behind it."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import run, script
from osa import _native

pytestmark = pytest.mark.usefixtures("sample_installed")

BATCH = [
    '{"id": "urn:osa:rec:1@1", "metadata": {"label": "a", "count": 2}, "size_hint_mb": 0.1}',
    '{"id": "plain-id", "metadata": {"label": "b", "count": 1}}',
    '{"id": "rej", "metadata": {"label": "c", "mode": "reject"}}',
    '{"id": "boom", "metadata": {"label": "d", "mode": "raise"}}',
    "",
    "not json at all",
    "[1, 2]",
    '"just a string"',
    '{"metadata": {"label": "no id"}}',
    '{"id": "no-meta"}',
    '{"id": "meta-list", "metadata": [1]}',
    '{"id": 7, "metadata": {}}',
    '{"id": "bad-meta", "metadata": {"label": "e", "unknown": 1}}',
    '{"id": "bad-type", "metadata": {"label": "e", "count": "many"}}',
    '{"id": "bad-row", "metadata": {"label": "f", "mode": "bad_row"}}',
    '{"id": "scalar", "metadata": {"label": "g", "mode": "scalar"}}',
    '{"id": "unserialisable", "metadata": {"label": "h", "mode": "unserialisable"}}',
    '{"id": "nothing", "metadata": {"label": "i", "mode": "none"}}',
    '{"id": "zero", "metadata": {"label": "j", "count": 0}}',
]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def outcomes(out: Path) -> dict[str, tuple[str, Any]]:
    result: dict[str, tuple[str, Any]] = {}
    for line in read_jsonl(out / "features.jsonl"):
        assert set(line) == {"id", "features"}
        result[line["id"]] = ("features", line["features"])
    for line in read_jsonl(out / "rejections.jsonl"):
        assert set(line) == {"id", "reason"}
        result[line["id"]] = ("rejected", line["reason"])
    for line in read_jsonl(out / "errors.jsonl"):
        assert set(line) == {"id", "error", "retryable"}
        assert line["retryable"] is False
        result[line["id"]] = ("error", line["error"])
    return result


def make_batch(root: Path, lines: list[str]) -> dict[str, str]:
    (root / "in").mkdir(parents=True)
    (root / "in" / "records.jsonl").write_text("\n".join(lines) + "\n")
    # Files under the mapped dir name (what runners write) and under the raw id.
    mapped = root / "files" / _native.record_dir_name("urn:osa:rec:1@1")
    mapped.mkdir(parents=True)
    (mapped / "structure.cif").write_bytes(b"x" * 100)
    (mapped / "notes.txt").write_bytes(b"y" * 20)
    raw = root / "files" / "plain-id"
    raw.mkdir(parents=True)
    (raw / "only.cif").write_bytes(b"z")
    return {
        "OSA_IN": str(root / "in"),
        "OSA_OUT": str(root / "out"),
        "OSA_FILES": str(root / "files"),
    }


def run_hook_process(env: dict[str, str], hook: str | None = "typed_rows"):
    if hook is not None:
        env = {**env, "OSA_HOOK_NAME": hook}
    return run([script("osa-run-hook")], env=env)


def test_batch_with_every_kind_of_outcome(tmp_path):
    env = make_batch(tmp_path, BATCH)
    result = run_hook_process(env)
    assert result.returncode == 0, result.stderr
    assert "HOOK DONE 18 total, 4 passed, 1 rejected, 13 errored" in result.stderr
    got = outcomes(tmp_path / "out")

    kind, rows = got["urn:osa:rec:1@1"]
    assert kind == "features"
    assert rows == [
        {
            "label": "a",
            "index": 0,
            "score": 0.0,
            "seen_at": "2024-05-01T12:30:00",
            "day": "2024-05-01",
            "ref": str(uuid.uuid5(uuid.NAMESPACE_URL, "a/0")),
            "amount": "0.00",
            "tags": ["a", "0"],
            "location": {"chain": "A", "residue": 0},
            "files": ["notes.txt", "structure.cif"],
            "size": 120,
        },
        {
            "label": "a",
            "index": 1,
            "score": None,
            "seen_at": "2024-05-01T12:30:01",
            "day": "2024-05-01",
            "ref": str(uuid.uuid5(uuid.NAMESPACE_URL, "a/1")),
            "amount": "1.50",
            "tags": ["a", "1"],
            "location": {"chain": "A", "residue": 1},
            "files": ["notes.txt", "structure.cif"],
            "size": 120,
        },
    ]
    # Fallback to the raw id's directory.
    assert got["plain-id"][1][0]["files"] == ["only.cif"]
    assert got["rej"] == ("rejected", "label 'c' is not accepted")
    assert got["boom"] == ("error", "RuntimeError: cannot process d")
    assert got["line-6"][0] == "error"
    assert got["line-6"][1].startswith("malformed record: invalid JSON:")
    assert got["line-7"] == ("error", "malformed record: expected a JSON object, got array")
    assert got["line-8"] == ("error", "malformed record: expected a JSON object, got string")
    assert got["line-9"] == ("error", "malformed record: missing field `id`")
    assert got["no-meta"] == ("error", "malformed record: missing field `metadata`")
    assert got["meta-list"] == (
        "error",
        "malformed record: `metadata` must be a JSON object, got array",
    )
    assert got["line-12"] == ("error", "malformed record: `id` must be a string, got number")
    assert got["bad-meta"] == (
        "error",
        "metadata validation: 1 validation error for Sample: unknown: Extra inputs are not "
        "permitted",
    )
    assert got["bad-type"] == (
        "error",
        "metadata validation: 1 validation error for Sample: count: Input should be a valid "
        "integer, unable to parse string as an integer",
    )
    assert got["bad-row"][1].startswith("row 0: unknown column `colour` (declared columns:")
    assert got["scalar"] == ("error", "row 0: a feature row must be a JSON object, got number 3")
    assert got["unserialisable"][1].startswith("cannot serialise the hook's output:")
    # A hook returning None writes an empty features list (never `[null]`).
    assert got["nothing"] == ("features", [])
    assert got["zero"] == ("features", [])
    assert len(got) == 18


def test_outputs_are_in_input_order_and_compact(tmp_path):
    env = make_batch(tmp_path, BATCH)
    assert run_hook_process(env).returncode == 0
    errors = (tmp_path / "out" / "errors.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in errors]
    assert ids[:3] == ["boom", "line-6", "line-7"]
    assert ", " not in errors[0]


def test_async_hook_with_cardinality_one(tmp_path):
    env = make_batch(
        tmp_path,
        [
            '{"id": "a", "metadata": {"label": "x"}}',
            '{"id": "b", "metadata": {"label": "y", "mode": "none"}}',
            '{"id": "c", "metadata": {"label": "z", "mode": "raise"}}',
        ],
    )
    result = run_hook_process(env, "async_verdict")
    assert result.returncode == 0, result.stderr
    got = outcomes(tmp_path / "out")
    assert got == {
        "a": ("features", [{"ok": True, "note": "x"}]),
        "b": ("features", []),
        "c": ("features", [{"ok": False, "note": "z"}]),
    }


def test_a_hook_without_columns_passes_its_rows_through(tmp_path):
    env = make_batch(tmp_path, ['{"id": "a", "metadata": {"label": "x"}}'])
    result = run_hook_process(env, "loose_rows")
    assert result.returncode == 0, result.stderr
    assert outcomes(tmp_path / "out") == {
        "a": ("features", [{"label": "x", "Any Key": [1, None], "record_id": "a"}]),
    }


def test_exit_code_1_when_input_is_missing(tmp_path):
    env = {"OSA_IN": str(tmp_path / "nowhere"), "OSA_OUT": str(tmp_path / "out")}
    result = run_hook_process(env)
    assert result.returncode == 1
    assert "cannot read" in result.stderr
    assert not (tmp_path / "out").exists()


def test_exit_code_1_when_records_is_a_directory(tmp_path):
    (tmp_path / "in" / "records.jsonl").mkdir(parents=True)
    env = {"OSA_IN": str(tmp_path / "in"), "OSA_OUT": str(tmp_path / "out")}
    assert run_hook_process(env).returncode == 1


def test_exit_code_1_when_outputs_cannot_be_written(tmp_path):
    env = make_batch(tmp_path, BATCH[:1])
    (tmp_path / "blocker").write_text("a file, not a directory")
    env["OSA_OUT"] = str(tmp_path / "blocker" / "out")
    result = run_hook_process(env)
    assert result.returncode == 1
    assert "cannot write outputs" in result.stderr


def test_exit_code_1_for_an_unknown_hook(tmp_path):
    env = make_batch(tmp_path, BATCH[:1])
    result = run_hook_process(env, "no_such_hook")
    assert result.returncode == 1
    assert "no registered hook is called 'no_such_hook'" in result.stderr
    assert "typed_rows" in result.stderr


def test_exit_code_1_without_hook_name_when_several_hooks(tmp_path):
    env = make_batch(tmp_path, BATCH[:1])
    result = run_hook_process(env, None)
    assert result.returncode == 1
    assert "OSA_HOOK_NAME is not set" in result.stderr


def test_empty_batch_writes_three_empty_files(tmp_path):
    env = make_batch(tmp_path, [])
    result = run_hook_process(env, "find_pockets")
    assert result.returncode == 0, result.stderr
    for name in ("features.jsonl", "rejections.jsonl", "errors.jsonl"):
        assert (tmp_path / "out" / name).read_text() == ""


def test_sample_convention_hooks(tmp_path):
    meta = {
        "pdb_id": "4TOS",
        "title": "t",
        "deposition_date": "2024-01-01",
        "molecular_weight": 10.5,
        "chain_count": 2,
    }
    lines = [
        json.dumps({"id": "urn:osa:rec:1@1", "metadata": meta}),
        json.dumps({"id": "plain-id", "metadata": {**meta, "resolution": 5.0}}),
        json.dumps({"id": "no-files", "metadata": meta}),
    ]
    env = make_batch(tmp_path, lines)
    assert run_hook_process(env, "validate_structure").returncode == 0
    assert outcomes(tmp_path / "out") == {
        "urn:osa:rec:1@1": ("features", []),
        "plain-id": ("rejected", "Resolution too low for reliable analysis"),
        "no-files": ("rejected", "At least one CIF file is required"),
    }
    assert run_hook_process(env, "find_pockets").returncode == 0
    got = outcomes(tmp_path / "out")
    assert got["urn:osa:rec:1@1"] == (
        "features",
        [{"pocket_id": 1, "score": 0.0, "volume": 100 / 1024}],
    )
    assert got["no-files"] == ("error", "IndexError: list index out of range")


def test_non_utf8_file_names_do_not_stop_the_batch(tmp_path):
    # `bad\xff.cif` is listed as the str "bad\udcff.cif" (a lone surrogate), which
    # reaches a features row, a rejection reason and an error message.
    lines = [
        '{"id": "rows", "metadata": {"label": "a"}}',
        '{"id": "rejects", "metadata": {"label": "b", "mode": "reject_files"}}',
        '{"id": "raises", "metadata": {"label": "c", "mode": "raise_files"}}',
        '{"id": "after", "metadata": {"label": "d"}}',
    ]
    env = make_batch(tmp_path, lines)
    for record_id in ("rows", "rejects", "raises"):
        directory = tmp_path / "files" / record_id
        directory.mkdir()
        (directory / os.fsdecode(b"bad\xff.cif")).write_bytes(b"x" * 3)
    result = run_hook_process(env)
    assert result.returncode == 0, result.stderr
    assert "HOOK DONE 4 total, 2 passed, 1 rejected, 1 errored" in result.stderr
    got = outcomes(tmp_path / "out")
    kind, rows = got["rows"]
    assert kind == "features"
    assert [(r["files"], r["size"]) for r in rows] == [(["bad\ufffd.cif"], 3)]
    assert got["rejects"] == ("rejected", "unexpected files: bad\ufffd.cif")
    assert got["raises"] == ("error", "RuntimeError: cannot read bad\ufffd.cif")
    assert got["after"][0] == "features"
    for name in ("features.jsonl", "rejections.jsonl", "errors.jsonl"):
        (tmp_path / "out" / name).read_bytes().decode("utf-8")


def test_runpy_does_not_warn_when_releases_run_the_module(tmp_path):
    # Releases store `<python> -m osa.runtime.entrypoint` as their command.
    env = make_batch(tmp_path, BATCH[:2])
    result = run(
        [sys.executable, "-m", "osa.runtime.entrypoint"],
        env={**env, "OSA_HOOK_NAME": "typed_rows"},
    )
    assert result.returncode == 0, result.stderr
    assert "HOOK DONE 2 total, 2 passed" in result.stderr
    assert "RuntimeWarning" not in result.stderr
    assert "HOOK START" in result.stderr.splitlines()[0]


# --- serialisation, the native reader and writer, in process ------------------------------


def test_rows_json_shapes():
    from datetime import UTC, date, datetime
    from decimal import Decimal

    from pydantic import BaseModel

    from osa.runtime.entrypoint import OutputSerialisationError, rows_json

    class M(BaseModel):
        when: datetime
        day: date
        ref: uuid.UUID
        amount: Decimal
        score: float | None = None

    ref = uuid.UUID(int=1)
    model = M(
        when=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        day=date(2024, 1, 2),
        ref=ref,
        amount=Decimal("2.50"),
    )
    row = {
        "when": "2024-01-02T03:04:05Z",
        "day": "2024-01-02",
        "ref": str(ref),
        "amount": "2.50",
        "score": None,
    }
    assert json.loads(rows_json(model)) == [row]
    assert json.loads(rows_json([model, None, model])) == [row, row]
    assert json.loads(rows_json((model,))) == [row]
    assert rows_json(None) == "[]"
    assert json.loads(rows_json({"day": date(2024, 1, 2), "ref": ref})) == [
        {"day": "2024-01-02", "ref": str(ref)}
    ]
    with pytest.raises(OutputSerialisationError, match="NaN or infinity"):
        rows_json({"x": float("nan")})
    with pytest.raises(OutputSerialisationError, match="cannot serialise"):
        rows_json([object()])


def test_reader_streams_lines_with_numbers(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('\n  \n{"id": "a", "metadata": {"x": [1, 2.5, null, true]}, "srn": "s"}\n{')
    reader = _native.RecordReader(path)
    first = next(reader)
    assert (first.line, first.id, first.srn, first.error) == (3, "a", "s", None)
    assert first.metadata == {"x": [1, 2.5, None, True]}
    assert first.outcome_id == "a"
    last = next(reader)
    assert (last.line, last.id, last.metadata) == (4, None, None)
    assert last.outcome_id == "line-4"
    assert last.error.startswith("malformed record: invalid JSON")
    with pytest.raises(StopIteration):
        next(reader)
    assert reader.lines_read == 4
    with pytest.raises(FileNotFoundError):
        _native.RecordReader(tmp_path / "missing.jsonl")


def test_reader_refuses_invalid_ids(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(
        '{"id": "", "metadata": {}}\n'
        '{"id": "..", "metadata": {}}\n'
        '{"id": "a\\u0001", "metadata": {}}\n'
    )
    errors = [r.error for r in _native.RecordReader(path)]
    assert all(e.startswith("malformed record: `id` is invalid") for e in errors), errors


def test_reader_skips_overlong_lines(tmp_path):
    path = tmp_path / "records.jsonl"
    limit = _native.MAX_RECORD_LINE_BYTES
    with path.open("w") as f:
        f.write('{"id": "big", "metadata": {"x": "' + "a" * limit + '"}}\n')
        f.write('{"id": "ok", "metadata": {}}\n')
    big, ok = list(_native.RecordReader(path))
    assert big.error == f"malformed record: line is longer than {limit} bytes"
    assert (ok.line, ok.id) == (2, "ok")


COLUMNS = json.dumps(
    [
        {"name": "score", "json_type": "number", "required": True},
        {"name": "seen_at", "json_type": "string", "format": "date-time", "required": False},
    ]
)


def test_writer_validates_rows_like_the_engine(tmp_path):
    with _native.OutputWriter(tmp_path / "out", COLUMNS, "one") as writer:
        assert writer.write_features("a", '[{"score": 1}]') is None
        assert writer.write_features("b", "[null]") is None
        assert (
            writer.write_features("c", '[{"score": "high"}]')
            == 'row 0: column `score` expects a number, got string "high"'
        )
        assert writer.write_features("d", '[{"score": 1}, {"score": 2}]') == (
            "hook has cardinality `one` but produced 2 rows for this record"
        )
        assert writer.write_features("e", '[{"seen_at": "2024-01-01T00:00:00"}]') == (
            "row 0: column `score` is required but missing or null"
        )
        assert writer.write_features("f", '[{"score": 1, "seen_at": "yesterday"}]').startswith(
            "row 0: column `seen_at` expects a date-time string"
        )
        assert writer.write_features("g", "{}").startswith("hook output must be a list of rows")
        assert writer.write_features("h", "nope").startswith("hook output is not valid JSON")
        writer.write_rejection("i", "")
        writer.write_error("j", "transient", retryable=True)
        assert (writer.passed, writer.rejected, writer.errored) == (2, 1, 7)
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.write_error("k", "x")
    out = tmp_path / "out"
    assert read_jsonl(out / "features.jsonl") == [
        {"id": "a", "features": [{"score": 1}]},
        {"id": "b", "features": []},
    ]
    assert read_jsonl(out / "rejections.jsonl") == [{"id": "i", "reason": ""}]
    assert read_jsonl(out / "errors.jsonl")[-1] == {
        "id": "j",
        "error": "transient",
        "retryable": True,
    }


def test_writer_rejects_bad_contracts(tmp_path):
    with pytest.raises(ValueError, match="cardinality"):
        _native.OutputWriter(tmp_path, "[]", "several")
    with pytest.raises(ValueError, match="invalid columns"):
        _native.OutputWriter(tmp_path, '[{"name": "Bad", "json_type": "string", "required": true}]')
    with pytest.raises(ValueError, match="invalid columns"):
        _native.OutputWriter(
            tmp_path, '[{"name": "_run_id", "json_type": "string", "required": true}]'
        )


def test_writer_keeps_lines_within_the_engine_limit(tmp_path):
    columns = json.dumps([{"name": "blob", "json_type": "string", "required": True}])
    with _native.OutputWriter(tmp_path, columns) as writer:
        message = writer.write_features("big", json.dumps([{"blob": "x" * (5 << 20)}]))
        assert message is not None
        assert "over the engine's limit of 4194304 bytes per line" in message
        long_error = "e" * 100_000
        writer.write_error("long", long_error)
    errors = read_jsonl(tmp_path / "errors.jsonl")
    assert errors[1]["error"].endswith("… (cut)")
    assert len(errors[1]["error"]) < 20_000
    assert (tmp_path / "features.jsonl").read_text() == ""


def test_writer_keeps_message_files_within_the_engine_limit(tmp_path):
    # Messages are cut at 16 Ki characters; about 4,000 of them reach the engine's
    # 64 MiB limit per file. Past it, a short note replaces the message, so the engine
    # never refuses the batch for an oversized errors or rejections file.
    limit = 64 << 20
    message = "m" * (20 << 10)
    count = 4_400
    with _native.OutputWriter(tmp_path) as writer:
        for i in range(count):
            writer.write_error(f"e{i}", message)
            writer.write_rejection(f"r{i}", message)
        written = {"errors.jsonl": writer.errored, "rejections.jsonl": writer.rejected}
    for name, key, prefix in (("errors.jsonl", "error", "e"), ("rejections.jsonl", "reason", "r")):
        path = tmp_path / name
        # Filled to the brim (not even a note fits any more), never past it.
        assert limit - 200 < path.stat().st_size <= limit
        lines = read_jsonl(path)
        # The records written are counted, and are the first ones, in order; the rest
        # have no outcome (the engine reads that as an error of the record).
        assert len(lines) == written[name]
        assert [line["id"] for line in lines] == [f"{prefix}{i}" for i in range(len(lines))]
        noted = [line for line in lines if line[key].startswith("(message omitted")]
        assert len(noted) > 10, f"{name}: {len(noted)} notes"
        assert noted[0][key] == (
            f"(message omitted: {name} reached the engine's limit of {limit} bytes)"
        )
        full = lines[: len(lines) - len(noted)]
        assert len(full) > 4_000
        assert all(line[key].endswith("… (cut)") for line in full)


def test_writer_replaces_symlinks(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "errors.jsonl").symlink_to(target)
    with _native.OutputWriter(out) as writer:
        writer.write_error("a", "x")
    assert target.read_text() == "keep"
    assert not (out / "errors.jsonl").is_symlink()


def test_writer_writes_lone_surrogates_as_replacement_characters(tmp_path):
    columns = json.dumps([{"name": "name", "json_type": "string", "required": True}])
    with _native.OutputWriter(tmp_path, columns) as writer:
        rows = json.dumps([{"name": "bad\udcff.cif"}], ensure_ascii=False)
        assert writer.write_features("id-\udc80", rows) is None
        writer.write_rejection("r", "reason \udcff\udcfe")
        writer.write_error("e", "error \ud800")
        # A high-low pair of code points is the character it encodes in UTF-16.
        writer.write_error("pair", "\ud83d\ude00")
    assert read_jsonl(tmp_path / "features.jsonl") == [
        {"id": "id-\ufffd", "features": [{"name": "bad\ufffd.cif"}]}
    ]
    assert read_jsonl(tmp_path / "rejections.jsonl") == [
        {"id": "r", "reason": "reason \ufffd\ufffd"}
    ]
    assert [e["error"] for e in read_jsonl(tmp_path / "errors.jsonl")] == ["error \ufffd", "😀"]


def test_a_failure_writing_one_outcome_is_that_records_error(tmp_path, monkeypatch):
    from osa import Record, Reject, hook
    from osa.runtime import entrypoint

    class Unprintable(Reject):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    @hook
    def picky(record: Record[dict]) -> None:
        if record.metadata.get("mode") == "unprintable":
            raise Unprintable()

    real_rows_json = entrypoint.rows_json
    broken = [True]

    def rows_json(result: Any) -> Any:
        # The first record's rows are not a str: the writer refuses them (TypeError).
        return b"[]" if broken and broken.pop() else real_rows_json(result)

    monkeypatch.setattr(entrypoint, "rows_json", rows_json)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "records.jsonl").write_text(
        '{"id": "a", "metadata": {}}\n'
        '{"id": "b", "metadata": {"mode": "unprintable"}}\n'
        '{"id": "c", "metadata": {}}\n'
    )
    code = entrypoint.run_hook_entrypoint(
        hook_fn=picky,
        input_dir=tmp_path / "in",
        output_dir=tmp_path / "out",
        files_dir=tmp_path / "files",
    )
    assert code == 0
    got = outcomes(tmp_path / "out")
    assert got["a"][0] == "error"
    assert got["a"][1].startswith("cannot write the outcome: TypeError: ")
    assert got["b"] == (
        "error",
        "the rejection's reason cannot be read: RuntimeError: no text",
    )
    assert got["c"] == ("features", [])


def test_memory_stays_flat_for_100k_records(tmp_path):
    """Peak RSS of a 100k-record run stays close to that of a 2k-record run."""
    line = '{"id": "r%d", "metadata": {"label": "%s", "count": 1}}\n'

    def peak_rss_kb(count: int) -> int:
        root = tmp_path / str(count)
        (root / "in").mkdir(parents=True)
        with (root / "in" / "records.jsonl").open("w") as f:
            for i in range(count):
                f.write(line % (i, "x" * 40))
        probe = (
            "import resource, subprocess, sys\n"
            "code = subprocess.run([sys.argv[1]]).returncode\n"
            "assert code == 0, code\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        )
        env = {
            "OSA_IN": str(root / "in"),
            "OSA_OUT": str(root / "out"),
            "OSA_FILES": str(root / "files"),
            "OSA_HOOK_NAME": "typed_rows",
            "OSA_LOG_LEVEL": "WARNING",
        }
        result = run([sys.executable, "-c", probe, script("osa-run-hook")], env=env)
        assert result.returncode == 0, result.stderr
        features = (root / "out" / "features.jsonl").read_text().count("\n")
        assert features == count
        return int(result.stdout.strip())

    small = peak_rss_kb(2_000)
    large = peak_rss_kb(100_000)
    # The input file alone is ~6 MB and would take far more as Python objects.
    assert large - small < 16_000, (small, large)
