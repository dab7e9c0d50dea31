"""`osa.testing.run_ingester` and `run_test`: a convention's ingester and hooks in process."""

from __future__ import annotations

import inspect
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pydantic
import pytest
from pydantic import BaseModel

from osa import (
    Example,
    IngesterContext,
    IngesterRecord,
    MetadataSchema,
    Record,
    Reject,
    _registry,
    convention,
    hook,
)
from osa.testing import IngesterResult, TestError, run_ingester, run_test


class Reading(MetadataSchema):
    __schema_id__ = "reading"
    value: float


class Level(BaseModel):
    level: str


class Sensor:
    name: ClassVar[str] = "sensor"
    schedule = None
    initial_run = None
    max_file_mb = None

    class RuntimeConfig(BaseModel):
        scale: float = 1.0

    def __init__(self, config: RuntimeConfig | None = None) -> None:
        self.scale = (config or Sensor.RuntimeConfig()).scale

    async def pull(
        self,
        *,
        ctx: IngesterContext,
        since: Any = None,
        limit: int | None = None,
        offset: int = 0,
        session: dict[str, Any] | None = None,
    ) -> AsyncIterator[IngesterRecord]:
        for i, value in enumerate([0.5, 7.0, 2.0][: limit or 3]):
            files = []
            if i != 2:  # the last record has no files
                files.append(await ctx.add_bytes(f"s/{i}", "raw.txt", data=b"x" * (i + 1)))
            yield IngesterRecord(
                source_id=f"s/{i}", metadata={"value": value * self.scale}, files=files
            )


def declare(ingester: type | None) -> _registry.ConventionInfo:
    # Hooks are declared here: the registry is emptied before every test.
    @hook
    def in_range(record: Record[Reading]) -> None:
        if record.metadata.value > 5:
            raise Reject(f"value {record.metadata.value} out of range")

    @hook
    def classify(record: Record[Reading]) -> Level:
        sizes = [f.size for f in record.files.list()]
        return Level(level=f"{record.metadata.value}:{sizes}")

    convention(
        title="Sensors",
        description="sensor readings",
        version="1.0.0",
        schema=Reading,
        files={},
        hooks=[in_range, classify],
        purpose="readings",
        examples=[Example(question="q1?", query="q", interpretation="i")],
        example_questions=["q2?", "q3?"],
        ingester=ingester,
    )
    return _registry.conventions()[-1]


def test_run_ingester_collects_records_and_files(tmp_path):
    result = run_ingester(Sensor, limit=2, config={"scale": 2.0}, files_dir=tmp_path)
    assert result.ingester_name == "sensor"
    assert [(r.source_id, r.metadata["value"]) for r in result.records] == [
        ("s/0", 1.0),
        ("s/1", 14.0),
    ]
    assert result.files_dir == tmp_path
    assert (tmp_path / "s_0" / "raw.txt").read_bytes() == b"x"
    assert result.records[1].files[0].relative_path == "s_1/raw.txt"


def test_run_ingester_instantiates_like_the_published_helper(tmp_path):
    class Plain:
        """No RuntimeConfig: a config is not passed to the class."""

        name = "plain"

        def __init__(self) -> None:
            self.made = True

        async def pull(self, **kwargs: Any) -> AsyncIterator[IngesterRecord]:
            assert self.made
            yield IngesterRecord(source_id="p", metadata={"value": 1.0}, files=[])

    result = run_ingester(Plain, config={"scale": 2.0}, files_dir=tmp_path)
    assert [r.source_id for r in result.records] == ["p"]

    # An invalid config raises pydantic's error, as instantiating RuntimeConfig does.
    with pytest.raises(pydantic.ValidationError, match="scale"):
        run_ingester(Sensor, config={"scale": "lots"}, files_dir=tmp_path)


class Counter:
    """No `name`, no RuntimeConfig; records what `pull` was called with."""

    calls: ClassVar[list[dict[str, Any]]] = []

    async def pull(self, **kwargs: Any) -> AsyncIterator[IngesterRecord]:
        Counter.calls.append({k: v for k, v in kwargs.items() if k != "ctx"})
        ctx = kwargs["ctx"]
        for i in range(3):
            ref = await ctx.add_bytes(f"c{i}", "n.txt", data=str(i).encode())
            yield IngesterRecord(source_id=f"c{i}", metadata={"i": i}, files=[ref])


def test_run_ingester_at_the_published_path_and_signature():
    from osa.testing import harness

    assert harness.run_ingester is run_ingester
    assert harness.IngesterResult is IngesterResult
    params = inspect.signature(harness.run_ingester).parameters
    assert list(params) == ["ingester_cls", "limit", "config", "since", "session", "files_dir"]
    assert params["ingester_cls"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in list(params)[1:])
    assert all(params[p].default is None for p in list(params)[1:])


def test_run_ingester_passes_its_arguments_to_pull_and_keeps_a_temporary_files_dir():
    Counter.calls.clear()
    since = datetime(2024, 1, 2, tzinfo=UTC)
    result = run_ingester(ingester_cls=Counter, limit=2, since=since, session={"cursor": 7})
    assert Counter.calls == [{"since": since, "limit": 2, "offset": 0, "session": {"cursor": 7}}]
    # The class's __name__ when it has no `name`; every record yielded is kept (this
    # ingester ignores `limit`).
    assert result.ingester_name == "Counter"
    assert [r.source_id for r in result.records] == ["c0", "c1", "c2"]
    assert isinstance(result.files_dir, Path)
    assert result.files_dir.is_dir()
    assert (result.files_dir / "c2" / "n.txt").read_text() == "2"
    assert result.records[0].files[0].name == "n.txt"
    shutil.rmtree(result.files_dir)


def test_run_ingester_keeps_oversized_records_and_creates_files_dir(tmp_path):
    class Big:
        name = "big"
        max_file_mb = 0.000001  # every file is over it: run_ingester does not filter

        async def pull(self, *, ctx: IngesterContext, **_: Any) -> AsyncIterator[IngesterRecord]:
            ref = await ctx.add_bytes("b", "big.bin", data=b"y" * 100)
            yield IngesterRecord(source_id="b", metadata={}, files=[ref])

    target = tmp_path / "not" / "yet"
    result = run_ingester(Big, files_dir=str(target))
    assert result.files_dir == target
    assert [r.source_id for r in result.records] == ["b"]
    assert (target / "b" / "big.bin").stat().st_size == 100


def test_run_ingester_propagates_a_pull_error(tmp_path):
    class Broken:
        name = "broken"

        async def pull(self, **_: Any) -> AsyncIterator[IngesterRecord]:
            yield IngesterRecord(source_id="ok", metadata={}, files=[])
            raise ConnectionError("upstream down")

    with pytest.raises(ConnectionError, match="upstream down"):
        run_ingester(Broken, files_dir=tmp_path)


def test_run_test_runs_hooks_in_order_and_skips_after_a_rejection():
    conv = declare(Sensor)
    result = run_test(convention_info=conv, limit=None)
    assert result.convention_title == "Sensors"
    assert result.ingester_name == "sensor"
    by_id = {r.source_id: r for r in result.records}
    assert [h.status for h in by_id["s/0"].hooks] == ["passed", "passed"]
    assert by_id["s/0"].hooks[1].result == Level(level="0.5:[1]")
    assert by_id["s/0"].accepted
    assert [h.status for h in by_id["s/1"].hooks] == ["rejected", "skipped"]
    assert by_id["s/1"].hooks[0].reason == "value 7.0 out of range"
    assert not by_id["s/1"].accepted
    # A record without files gets an empty collection, not an error.
    assert [h.status for h in by_id["s/2"].hooks] == ["passed", "passed"]
    assert by_id["s/2"].hooks[1].result == Level(level="2.0:[]")


def test_run_test_needs_an_ingester():
    conv = declare(None)
    with pytest.raises(TestError, match="no ingester"):
        run_test(convention_info=conv)
