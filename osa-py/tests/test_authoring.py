"""The authoring API: decorator forms, registry, Record, Schema, Field, files, run_hook."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pydantic
import pytest
from pydantic import BaseModel

import osa
from osa import (
    Example,
    Field,
    Limits,
    MetadataSchema,
    Record,
    Reject,
    Schema,
    _registry,
    convention,
    hook,
)
from osa.testing import run_hook
from osa.types import File, FileCollection


class Meta(Schema):
    __schema_id__ = "test-meta"

    name: str
    size: int = 0


class Row(BaseModel):
    value: float


def test_public_api_names():
    assert set(osa.__all__) == {
        "Example",
        "Field",
        "Ingester",
        "IngesterContext",
        "IngesterFileRef",
        "IngesterRecord",
        "IngesterSchedule",
        "InitialRun",
        "Limits",
        "MetadataSchema",
        "Record",
        "Reject",
        "Schema",
        "convention",
        "hook",
    }
    assert osa.Schema is osa.MetadataSchema
    from osa.authoring import Ingester
    from osa.authoring import Reject as R2
    from osa.authoring import convention as c2
    from osa.authoring import hook as h2

    assert (R2, c2, h2) == (Reject, convention, hook)
    assert Ingester is osa.Ingester


def test_bare_decorator_returns_the_same_function_and_registers():
    def check(record: Record[Meta]) -> None:
        return None

    decorated = hook(check)
    assert decorated is check
    (info,) = _registry.hooks()
    assert info.fn is check
    assert info.name == "check"
    assert info.hook_type == "hook"
    assert info.schema_type is Meta
    assert info.cardinality == "one"
    assert info.output_type is type(None)
    assert info.limits == Limits()
    assert info.record_param == "record"


def test_decorator_with_options_and_empty_parentheses():
    @hook(limits=Limits(timeout_seconds=60, memory="1g"))
    def a(rec: Record[Meta]) -> Row:
        return Row(value=1)

    @hook()
    def b(x: int, rec: Record[Meta]) -> list[Row]:
        return []

    assert a.__name__ == "a"
    assert a(None) == Row(value=1)  # still callable as a plain function
    info_a, info_b = _registry.hooks()
    assert info_a.limits == Limits(timeout_seconds=60, memory="1g", cpu="0.5")
    assert (info_a.cardinality, info_a.output_type) == ("one", Row)
    assert (info_b.cardinality, info_b.output_type) == ("many", Row)
    assert info_b.record_param == "rec"
    assert info_b.dependencies == {"x": int}


def test_limits_defaults_and_keyword_only_option():
    assert Limits().model_dump() == {"timeout_seconds": 300, "memory": "512m", "cpu": "0.5"}
    with pytest.raises(pydantic.ValidationError):
        Limits(gpu=1)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        Limits().memory = "1g"  # type: ignore[misc]
    with pytest.raises(TypeError):
        hook(Limits())  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("annotation_src", "cardinality", "output"),
    [
        ("None", "one", type(None)),
        ("Row", "one", Row),
        ("Row | None", "one", Row),
        ("Optional[Row]", "one", Row),
        ("list[Row]", "many", Row),
        ("list[Row] | None", "many", Row),
        ("list", "one", list),
        ("dict", "one", dict),
    ],
)
def test_return_annotations(annotation_src, cardinality, output):
    namespace: dict[str, object] = {"Record": Record, "Meta": Meta, "Row": Row}
    exec(
        f"from typing import Optional\ndef fn(record: Record[Meta]) -> {annotation_src}: ...",
        namespace,
    )
    hook(namespace["fn"])
    (registered,) = _registry.hooks()
    assert registered.cardinality == cardinality
    assert registered.output_type is output


def test_no_return_annotation_is_one_with_no_output():
    @hook
    def fn(record: Record[Meta]):
        return None

    (info,) = _registry.hooks()
    assert (info.cardinality, info.output_type, info.return_type) == ("one", None, None)
    assert info.columns() == []


@pytest.mark.parametrize(
    "src",
    [
        "def fn(record): ...",
        "def fn(record: Record): ...",
        "def fn(record: Meta): ...",
        "def fn(): ...",
    ],
)
def test_missing_record_parameter_is_a_type_error(src):
    namespace: dict[str, object] = {}
    exec(src, {"Record": Record, "Meta": Meta}, namespace)
    with pytest.raises(TypeError, match=r"^Hook fn must have a Record\[T\] parameter$"):
        hook(namespace["fn"])
    assert _registry.hooks() == []


def test_unresolvable_annotation_is_a_type_error():
    def fn(record: Record[Missing]) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    with pytest.raises(TypeError, match="cannot resolve its annotations"):
        hook(fn)


def test_duplicates_and_clear():
    def same(record: Record[Meta]) -> None: ...

    hook(same)
    hook(same)
    assert len(_registry.hooks()) == 2
    _registry.clear()
    assert _registry.hooks() == []
    assert _registry.conventions() == []


def test_record_is_keyword_only_and_read_only():
    files = FileCollection.empty()
    with pytest.raises(TypeError):
        Record("id", None, None, files)  # type: ignore[misc]
    rec: Record[Meta] = Record(
        id="r1",
        created_at=None,
        metadata=Meta(name="x"),
        files=files,  # type: ignore[arg-type]
    )
    assert (rec.id, rec.srn, rec.metadata.name, len(rec.files)) == ("r1", "", "x", 0)
    with pytest.raises(AttributeError):
        rec.id = "other"  # type: ignore[misc]


def test_schema_requires_its_own_schema_id():
    with pytest.raises(TypeError, match="must declare ``__schema_id__``"):

        class NoId(Schema):
            x: int

    with pytest.raises(TypeError, match="must declare ``__schema_id__``"):

        class Child(Meta):  # inherits but does not redeclare
            extra: int = 0

    for bad in ["Bad", "1abc", "ab", "a_b", "a" * 65, "héllo"]:
        with pytest.raises(TypeError, match="is invalid"):
            type(MetadataSchema)("Bad", (Schema,), {"__schema_id__": bad, "__module__": __name__})

    class Ok(Schema):
        __schema_id__ = "abc-1"

    assert Ok.schema_id() == "abc-1"


def test_schema_forbids_unknown_keys_and_coerces_lax():
    class Dated(Schema):
        __schema_id__ = "dated"
        when: date

    assert Dated(when="2024-01-01").when == date(2024, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        Dated(when="2024-01-01", other=1)  # type: ignore[call-arg]


def test_field_is_keyword_only_and_adds_unit():
    with pytest.raises(TypeError):
        Field(None)  # type: ignore[misc]
    info = Field(default=1.0, unit="kDa", json_schema_extra={"k": "v"}, description="d")
    assert info.json_schema_extra == {"k": "v", "unit": "kDa"}
    assert info.description == "d"

    class WithUnit(Schema):
        __schema_id__ = "with-unit"
        weight: float = Field(unit="kDa")

    props = WithUnit.model_json_schema()["properties"]
    assert props["weight"]["unit"] == "kDa"


def test_example_is_frozen():
    e = Example(question="q", query="s", interpretation="i")
    with pytest.raises(pydantic.ValidationError):
        e.question = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        Example(question="q")  # type: ignore[call-arg]


def test_convention_keyword_only_required_and_registered():
    def check(record: Record[Meta]) -> None: ...

    hook(check)
    with pytest.raises(TypeError):
        convention(title="T")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        convention("T", "d")  # type: ignore[misc]
    files = {"accepted_types": [".csv"], "max_count": 1, "max_file_size": 10}
    result = convention(  # type: ignore[func-returns-value]
        title="T",
        description="d",
        version="1.0.0",
        schema=Meta,
        files=files,
        hooks=[check],
        purpose="p",
        examples=[Example(question="q", query="s", interpretation="i")],
    )
    assert result is None
    (conv,) = _registry.conventions()
    assert conv.file_requirements is files
    assert conv.hooks == [check]
    assert conv.example_questions == []
    assert conv.ingester_info is None


def test_ingester_registration():
    class Puller:
        name = "puller"
        schedule = osa.IngesterSchedule(cron="0 * * * *")
        initial_run = osa.InitialRun(limit=5)
        max_file_mb = 50

        async def pull(self, *, ctx, since=None, limit=None, offset=0, session=None):
            yield osa.IngesterRecord(source_id="x", metadata={})

    convention(
        title="T",
        description="d",
        version="1.0.0",
        schema=Meta,
        files={},
        hooks=[],
        purpose="p",
        examples=[],
        ingester=Puller,
    )
    (info,) = _registry.ingesters()
    assert (info.name, info.max_file_mb) == ("puller", 50)
    assert info.limits == Limits(timeout_seconds=3600)
    assert _registry.conventions()[0].ingester_info is info


def test_ingester_models():
    rec = osa.IngesterRecord(source_id="s", metadata={"a": 1})
    assert rec.files == []
    assert rec.fetched_at is None
    assert osa.IngesterFileRef(name="a", relative_path="s/a", size_mb=0.5).size_mb == 0.5
    assert osa.IngesterSchedule(cron="* * * * *").limit is None
    with pytest.raises(pydantic.ValidationError):
        rec.source_id = "t"  # type: ignore[misc]


async def _pull_files(tmp_path: Path) -> tuple[osa.IngesterFileRef, Path]:
    ctx = osa.IngesterContext(tmp_path / "files", tmp_path / "out")
    ref = await ctx.add_bytes("urn:x@1", "a.cif", data=b"1234")
    ctx.set_session({"cursor": 3})
    ctx.write_session()
    await ctx.close()
    return ref, tmp_path


def test_ingester_context_stores_files_under_the_mapped_dir(tmp_path):
    import asyncio
    import json

    ref, root = asyncio.run(_pull_files(tmp_path))
    assert ref.relative_path == "urn_x_1/a.cif"
    assert (root / "files" / "urn_x_1" / "a.cif").read_bytes() == b"1234"
    assert json.loads((root / "out" / "session.json").read_text()) == {"cursor": 3}
    ctx = osa.IngesterContext(tmp_path, tmp_path)
    with pytest.raises(ValueError, match="plain file name"):
        asyncio.run(ctx.add_bytes("x", "../escape", data=b""))


def test_files_and_collection(tmp_path):
    (tmp_path / "b.cif").write_text("bb")
    (tmp_path / "a.pdb").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.cif").write_text("n")
    files = FileCollection(tmp_path)
    assert [f.name for f in files] == ["a.pdb", "b.cif"]
    assert len(files) == 2
    assert [f.name for f in files.glob("*.cif")] == ["b.cif"]
    assert files.glob("*.CIF") == []
    assert files["b.cif"].read() == b"bb"
    assert files["b.cif"].size == 2
    assert isinstance(files["b.cif"], File)
    assert files["b.cif"].path == tmp_path / "b.cif"
    with pytest.raises(KeyError):
        files["nested.cif"]
    # Divergence from the published SDK: `in` works.
    assert "b.cif" in files
    assert "nested.cif" not in files
    assert files["a.pdb"] in files
    assert files.list() is not files.list()
    with pytest.raises(FileNotFoundError):
        FileCollection(tmp_path / "missing")
    assert len(FileCollection.empty()) == 0


def test_run_hook(tmp_path):
    @hook
    def validate(record: Record[Meta]) -> list[Row]:
        if record.metadata.size > 10:
            raise Reject("too big")
        return [Row(value=len(record.files))]

    (tmp_path / "x.txt").write_text("x")
    assert run_hook(validate, meta={"name": "a"}, files=tmp_path) == [Row(value=1)]
    assert run_hook(validate, meta=Meta(name="a")) == [Row(value=0)]
    with pytest.raises(Reject, match="too big"):
        run_hook(validate, meta={"name": "a", "size": 11})
    with pytest.raises(pydantic.ValidationError):
        run_hook(validate, meta={"name": "a", "unknown": 1})
    with pytest.raises(FileNotFoundError):
        run_hook(validate, meta={"name": "a"}, files=tmp_path / "missing")

    def plain(record: Record[Meta]) -> None: ...

    with pytest.raises(ValueError, match="Function plain is not a registered hook"):
        run_hook(plain, meta={"name": "a"})


def test_run_hook_awaits_async_hooks():
    @hook
    async def later(record: Record[Meta]) -> Row:
        return Row(value=2.5)

    rec_srn = run_hook(later, meta={"name": "a"}, srn="urn:osa:x")
    assert rec_srn == Row(value=2.5)
