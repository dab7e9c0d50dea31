"""`Record[T]`: what a hook receives."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from osa.types.files import FileCollection

T = TypeVar("T")


class Record(Generic[T]):
    """A record handed to a hook: id, SRN, creation time, typed metadata and files.

    Args:
        id: the record id (as in `records.jsonl`).
        created_at: when the record object was built.
        metadata: the validated metadata (an instance of the hook's schema).
        files: the record's files.
        srn: the record's SRN, when known.
    """

    __slots__ = ("_created_at", "_files", "_id", "_metadata", "_srn")

    def __init__(
        self,
        *,
        id: str,
        created_at: datetime,
        metadata: T,
        files: FileCollection,
        srn: str = "",
    ) -> None:
        self._id = id
        self._srn = srn
        self._created_at = created_at
        self._metadata = metadata
        self._files = files

    @property
    def id(self) -> str:
        """The record id."""
        return self._id

    @property
    def srn(self) -> str:
        """The record's SRN (empty when unknown)."""
        return self._srn

    @property
    def created_at(self) -> datetime:
        """When this record object was built."""
        return self._created_at

    @property
    def metadata(self) -> T:
        """The validated metadata."""
        return self._metadata

    @property
    def files(self) -> FileCollection:
        """The record's files."""
        return self._files

    def __repr__(self) -> str:
        return f"Record(id={self._id!r}, files={len(self._files)})"
