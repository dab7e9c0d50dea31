"""The "PDB Ligand Pockets" convention: protein structures and their ligand pockets.

Loaded through the `osa.conventions` entry point `pdb_pockets = "pdb_pockets.convention"`;
importing it registers the schema's two hooks and the convention. Written only against
the published `osa-py` SDK's documented API.

Hooks, in order:

- `check_structure`: rejects a record whose resolution is worse than 4 Å, that has no
  `.cif` file, whose CIF cannot be read, describes another entry than `pdb_id`, or has
  no polymer atoms.
- `detect_pockets`: one row per bound ligand (water excluded): the polymer residues
  lining it (an atom within 4 Å), its size and how buried it is.
"""

from __future__ import annotations

import math
from datetime import date

from osa import Example, Field, Limits, Record, Reject, Schema, convention, hook
from pydantic import BaseModel

from pdb_pockets import cif
from pdb_pockets.ingest import StructureMirror

#: Worse (larger) resolutions are rejected, in Å.
RESOLUTION_LIMIT = 4.0
#: A polymer residue lines a pocket when one of its atoms is this close to the ligand, in Å.
CONTACT_DISTANCE = 4.0
#: Lining residues at which a ligand counts as fully buried.
FULLY_BURIED = 12
#: Components that are solvent, not ligands.
WATER = frozenset({"HOH", "WAT", "DOD", "H2O"})


class PDBStructure(Schema):
    """Metadata of a PDB entry, as the RCSB reports it."""

    __schema_id__ = "pdb-structure"

    pdb_id: str = Field(
        description="PDB accession code", examples=["4TOS"], pattern=r"^[0-9][A-Za-z0-9]{3}$"
    )
    title: str = Field(description="Title of the entry")
    method: str = Field(description="Experimental method", examples=["X-RAY DIFFRACTION"])
    resolution: float | None = Field(
        default=None, unit="Å", description="High-resolution limit (none for NMR)"
    )
    deposition_date: date = Field(description="Date of deposition")
    molecular_weight: float = Field(unit="kDa", gt=0, description="Total formula weight")
    chain_count: int = Field(ge=1, description="Number of protein chains")


class Pocket(BaseModel):
    """A ligand-binding pocket: the site of one bound ligand (a feature row)."""

    pocket_id: int = Field(description="1-based, in the order the ligands appear in the file")
    ligand: str = Field(description="Component id of the ligand", examples=["ATP", "HEM", "MG"])
    chain: str = Field(description="Chain the ligand belongs to")
    ligand_atoms: int = Field(description="Atoms of the ligand in the model")
    lining_residues: int = Field(
        description=f"Polymer residues with an atom within {CONTACT_DISTANCE} Å of the ligand"
    )
    radius: float = Field(unit="Å", description="Largest distance of a ligand atom to its centre")
    buriedness: float = Field(
        ge=0, le=1, description=f"lining_residues / {FULLY_BURIED}, capped at 1"
    )


def _structure_file(record: Record[PDBStructure]) -> tuple[str, cif.Structure]:
    """The name and content of the record's first `.cif` file.

    Raises:
        Reject: there is no `.cif` file or it cannot be read.
    """
    cifs = record.files.glob("*.cif")
    if not cifs:
        raise Reject("At least one CIF file is required")
    file = cifs[0]
    try:
        return file.name, cif.parse(file.read().decode("utf-8"))
    except (UnicodeDecodeError, cif.CifError) as e:
        raise Reject(f"{file.name} is not a readable mmCIF file: {e}") from e


@hook
def check_structure(record: Record[PDBStructure]) -> None:
    """Accepts structures fit for pocket analysis."""
    meta = record.metadata
    if meta.resolution is not None and meta.resolution > RESOLUTION_LIMIT:
        raise Reject("Resolution too low for reliable analysis")
    name, structure = _structure_file(record)
    if structure.block.upper() != meta.pdb_id.upper():
        raise Reject(f"{name} describes entry {structure.block}, not {meta.pdb_id}")
    if not any(atom.group == "ATOM" for atom in structure.atoms):
        raise Reject(f"{name} has no polymer atoms")


def find_pockets(structure: cif.Structure) -> list[Pocket]:
    """One pocket per ligand instance (chain, number, component), water excluded."""
    polymer = [atom for atom in structure.atoms if atom.group == "ATOM"]
    ligands: dict[tuple[str, str, str], list[cif.Atom]] = {}
    for atom in structure.atoms:
        if atom.group == "HETATM" and atom.residue not in WATER:
            ligands.setdefault(atom.residue_key, []).append(atom)
    pockets = []
    for number, ((chain, _, component), atoms) in enumerate(ligands.items(), start=1):
        points = [(a.x, a.y, a.z) for a in atoms]
        centre = [sum(axis) / len(points) for axis in zip(*points, strict=True)]
        radius = max(math.dist(centre, point) for point in points)
        lining = {
            residue.residue_key
            for residue in polymer
            if any(residue.distance(atom) <= CONTACT_DISTANCE for atom in atoms)
        }
        pockets.append(
            Pocket(
                pocket_id=number,
                ligand=component,
                chain=chain,
                ligand_atoms=len(atoms),
                lining_residues=len(lining),
                radius=round(radius, 2),
                buriedness=round(min(1.0, len(lining) / FULLY_BURIED), 2),
            )
        )
    return pockets


@hook(limits=Limits(timeout_seconds=120, memory="1g", cpu="1"))
def detect_pockets(record: Record[PDBStructure]) -> list[Pocket]:
    """The ligand pockets of the record's structure (none for an apo structure)."""
    _, structure = _structure_file(record)
    return find_pockets(structure)


convention(
    title="PDB Ligand Pockets",
    description="Protein structures from the PDB with the ligand-binding pockets found in "
    "their coordinates",
    version="1.0.0",
    schema=PDBStructure,
    files={"accepted_types": [".cif", ".pdb"], "max_count": 5, "max_file_size": 50 * 1024 * 1024},
    hooks=[check_structure, detect_pockets],
    ingester=StructureMirror,
    purpose="Find where ligands bind in experimentally solved protein structures and how "
    "buried each binding site is, to shortlist druggable pockets.",
    examples=[
        Example(
            question="Which structures bind ATP in a well-buried pocket?",
            query="detect_pockets.ligand = 'ATP' AND detect_pockets.buriedness >= 0.5",
            interpretation="ATP sites lined by at least 6 residues; deeper pockets tend to "
            "bind more tightly.",
        )
    ],
    example_questions=[
        "How many ligand pockets does a structure have?",
        "Which ligands sit in the largest pockets?",
        "Which structures were rejected, and why?",
    ],
    when_not_to_use="Predicting pockets in apo structures or models: only sites with a "
    "bound ligand in the deposited coordinates are reported.",
    see_also=["https://www.rcsb.org", "https://mmcif.wwpdb.org"],
)
