"""A small reader for the parts of an mmCIF file the hooks use.

It understands the data block name (`data_4TOS`) and the `_atom_site` loop, which is
all a coordinate-based hook needs. Values may be quoted (`'O5''` style quoting is not
supported; PDB files quote primed atom names as `"O5'"`). It is not a general CIF
parser: for real work use gemmi or Biopython.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["Atom", "CifError", "Structure", "parse"]

#: One CIF token: a quoted string (a quote closes only before whitespace) or a bare word.
_TOKEN = re.compile(r"""'(?:[^']|'(?=\S))*'|"(?:[^"]|"(?=\S))*"|\S+""")


class CifError(ValueError):
    """The text is not an mmCIF file the reader understands."""


@dataclass(frozen=True, slots=True)
class Atom:
    """One row of `_atom_site`."""

    group: str
    """`ATOM` (polymer) or `HETATM` (ligands, ions, water)."""
    name: str
    residue: str
    """Residue or component id (`ALA`, `ATP`, `HOH`)."""
    chain: str
    seq: str
    """Residue number in its chain (author numbering when present)."""
    x: float
    y: float
    z: float

    def distance(self, other: Atom) -> float:
        """Distance to `other`, in Å."""
        return math.dist((self.x, self.y, self.z), (other.x, other.y, other.z))

    @property
    def residue_key(self) -> tuple[str, str, str]:
        """(chain, residue number, residue id): one residue or ligand instance."""
        return (self.chain, self.seq, self.residue)


@dataclass(frozen=True, slots=True)
class Structure:
    """What the reader keeps of an mmCIF file."""

    block: str
    """The data block name, `4TOS` for `data_4TOS`."""
    atoms: tuple[Atom, ...]


def _tokens(line: str) -> list[str]:
    out = []
    for token in _TOKEN.findall(line):
        if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
            token = token[1:-1]
        out.append(token)
    return out


def _column(columns: list[str], *names: str) -> int:
    for name in names:
        if name in columns:
            return columns.index(name)
    raise CifError(f"_atom_site has no {' or '.join(names)} column")


def _loop_rows(lines: list[str], start: int, width: int) -> tuple[list[list[str]], int]:
    """The rows of a loop whose values start at `lines[start]`; also the next line index."""
    rows: list[list[str]] = []
    pending: list[str] = []
    i = start
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith(("_", "loop_", "data_", "#")):
            break
        pending.extend(_tokens(stripped))
        while len(pending) >= width:
            rows.append(pending[:width])
            pending = pending[width:]
        i += 1
    if pending:
        raise CifError(f"_atom_site: a row has {len(pending)} values, expected {width}")
    return rows, i


def _atoms(rows: Iterable[list[str]], columns: list[str]) -> Iterator[Atom]:
    group = _column(columns, "group_PDB")
    name = _column(columns, "auth_atom_id", "label_atom_id")
    residue = _column(columns, "auth_comp_id", "label_comp_id")
    chain = _column(columns, "auth_asym_id", "label_asym_id")
    seq = _column(columns, "auth_seq_id", "label_seq_id")
    x, y, z = (_column(columns, f"Cartn_{axis}") for axis in "xyz")
    for row in rows:
        try:
            coords = (float(row[x]), float(row[y]), float(row[z]))
        except ValueError as e:
            raise CifError(f"_atom_site: bad coordinate in {' '.join(row)!r}") from e
        yield Atom(row[group], row[name], row[residue], row[chain], row[seq], *coords)


def parse(text: str) -> Structure:
    """Reads the name and the atoms of the first data block of an mmCIF text.

    Raises:
        CifError: there is no `data_` block, or the `_atom_site` loop is malformed.
    """
    lines = text.splitlines()
    block: str | None = None
    atoms: list[Atom] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        i += 1
        if stripped.startswith("data_"):
            if block is not None:
                break  # only the first data block is read
            block = stripped[len("data_") :]
        if stripped != "loop_":
            continue
        if block is None:
            break
        columns: list[str] = []
        while i < len(lines) and lines[i].lstrip().startswith("_atom_site."):
            columns.append(lines[i].strip()[len("_atom_site.") :].split()[0])
            i += 1
        if not columns:
            continue
        rows, i = _loop_rows(lines, i, len(columns))
        atoms.extend(_atoms(rows, columns))
    if block is None:
        raise CifError("no data_ block: not an mmCIF file")
    return Structure(block=block, atoms=tuple(atoms))
