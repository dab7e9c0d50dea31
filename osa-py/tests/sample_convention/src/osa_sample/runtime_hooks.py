"""Hooks (no convention) that exercise every path of `osa-run-hook`."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel

from osa import Field, Record, Reject, Schema, hook


class Sample(Schema):
    __schema_id__ = "osa-sample"

    label: str
    mode: Literal[
        "pass",
        "reject",
        "raise",
        "bad_row",
        "none",
        "scalar",
        "unserialisable",
        "reject_files",
        "raise_files",
    ] = "pass"
    count: int = Field(default=1, ge=0)
    day: date = date(2024, 5, 1)


class Location(BaseModel):
    chain: str
    residue: int


class TypedRow(BaseModel):
    label: str
    index: int
    score: float | None = None
    seen_at: datetime
    day: date
    ref: uuid.UUID
    amount: Decimal
    tags: list[str]
    location: Location
    files: list[str]
    size: int | None = Field(default=None, unit="bytes")


@hook
def typed_rows(record: Record[Sample]) -> list[TypedRow]:
    meta = record.metadata
    if meta.mode == "reject":
        raise Reject(f"label {meta.label!r} is not accepted")
    if meta.mode == "raise":
        raise RuntimeError(f"cannot process {meta.label}")
    if meta.mode == "none":
        return None  # type: ignore[return-value]
    if meta.mode == "reject_files":
        raise Reject("unexpected files: " + ", ".join(f.name for f in record.files))
    if meta.mode == "raise_files":
        raise RuntimeError("cannot read " + ", ".join(f.name for f in record.files))
    if meta.mode == "bad_row":
        return [{"label": meta.label, "colour": "red"}]  # type: ignore[list-item]
    if meta.mode == "scalar":
        return [3]  # type: ignore[list-item]
    if meta.mode == "unserialisable":
        return [object()]  # type: ignore[list-item]
    names = [f.name for f in record.files]
    return [
        TypedRow(
            label=meta.label,
            index=i,
            score=None if i % 2 else i / 4,
            seen_at=datetime(2024, 5, 1, 12, 30, i),
            day=meta.day,
            ref=uuid.uuid5(uuid.NAMESPACE_URL, f"{meta.label}/{i}"),
            amount=Decimal("1.50") * i,
            tags=[meta.label, str(i)],
            location=Location(chain="A", residue=i),
            files=names,
            size=sum(f.size for f in record.files) if names else None,
        )
        for i in range(meta.count)
    ]


class Verdict(BaseModel):
    ok: bool
    note: str | None = None


@hook()
async def async_verdict(record: Record[Sample]) -> Verdict | None:
    if record.metadata.mode == "none":
        return None
    return Verdict(ok=record.metadata.mode == "pass", note=record.metadata.label)


@hook
def loose_rows(record: Record[Sample]) -> dict:
    """No declared columns: the row goes out as returned, any keys."""
    return {"label": record.metadata.label, "Any Key": [1, None], "record_id": record.id}


class Named(BaseModel):
    """Fields named like the engine's own columns of a feature table."""

    id: int
    record_id: str
    run_id: str
    created_at: str


@hook
def named_rows(record: Record[Sample]) -> Named:
    return Named(id=7, record_id=f"not {record.id}", run_id="mine", created_at="today")


HOOKS = [typed_rows, async_verdict, loose_rows, named_rows]
