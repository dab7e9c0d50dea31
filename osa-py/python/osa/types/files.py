"""A record's files, as a hook sees them."""

from __future__ import annotations

import builtins
import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path


class File:
    """One file of a record."""

    __slots__ = ("_path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)

    @property
    def path(self) -> Path:
        """Where the file is."""
        return self._path

    @property
    def name(self) -> str:
        """The file's base name."""
        return self._path.name

    @property
    def size(self) -> int:
        """Its size in bytes (read from the file system on each access)."""
        return self._path.stat().st_size

    def read(self) -> bytes:
        """Reads the whole file."""
        return self._path.read_bytes()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other._path == self._path

    def __hash__(self) -> int:
        return hash(self._path)

    def __repr__(self) -> str:
        return f"File({str(self._path)!r})"


class FileCollection:
    """The regular files directly inside a directory, sorted by name (a snapshot).

    Raises:
        FileNotFoundError: when `directory` does not exist.
    """

    __slots__ = ("_files",)

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"files directory not found: {root}")
        self._files = sorted(
            (File(entry.path) for entry in os.scandir(root) if entry.is_file()),
            key=lambda f: f.name,
        )

    @classmethod
    def empty(cls) -> FileCollection:
        """A collection without files (a record that has none)."""
        collection = cls.__new__(cls)
        collection._files = []
        return collection

    def list(self) -> builtins.list[File]:
        """The files, sorted by name (a copy)."""
        return builtins.list(self._files)

    def glob(self, pattern: str) -> builtins.list[File]:
        """The files whose name matches `pattern` (`fnmatch`, case-sensitive on Linux)."""
        return [f for f in self._files if fnmatch.fnmatch(f.name, pattern)]

    def __getitem__(self, name: str) -> File:
        for f in self._files:
            if f.name == name:
                return f
        raise KeyError(name)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, File):
            return item in self._files
        return isinstance(item, str) and any(f.name == item for f in self._files)

    def __iter__(self) -> Iterator[File]:
        return iter(builtins.list(self._files))

    def __len__(self) -> int:
        return len(self._files)

    def __repr__(self) -> str:
        return f"FileCollection({[f.name for f in self._files]!r})"
