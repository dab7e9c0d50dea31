"""A two-hook convention: protein structures (a cut-down version of the pockets demo)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from osa import Example, Field, Limits, Record, Reject, Schema, convention, hook


class PDBStructure(Schema):
    __schema_id__ = "pdb-structure"

    pdb_id: str = Field(description="PDB accession", examples=["4TOS"])
    title: str
    resolution: float | None = Field(default=None, unit="Å")
    deposition_date: date
    molecular_weight: float = Field(unit="kDa")
    chain_count: int


class Pocket(BaseModel):
    pocket_id: int
    score: float = Field(description="druggability score")
    volume: float | None = Field(default=None, unit="Å^3")


@hook
def validate_structure(record: Record[PDBStructure]) -> None:
    if record.metadata.resolution is not None and record.metadata.resolution > 4.0:
        raise Reject("Resolution too low for reliable analysis")
    if not record.files.glob("*.cif"):
        raise Reject("At least one CIF file is required")


@hook(limits=Limits(timeout_seconds=600, memory="1g", cpu="1"))
def find_pockets(record: Record[PDBStructure]) -> list[Pocket]:
    cif = record.files.glob("*.cif")[0]
    size_kb = cif.size / 1024
    return [Pocket(pocket_id=1, score=round(size_kb / 100, 2), volume=size_kb)]


convention(
    title="Protein Structures",
    description="Protein structures with their binding pockets",
    version="1.0.0",
    schema=PDBStructure,
    files={"accepted_types": [".cif", ".pdb"], "max_count": 5, "max_file_size": 10_485_760},
    hooks=[validate_structure, find_pockets],
    purpose="Find ligand binding pockets in experimentally solved protein structures.",
    examples=[
        Example(
            question="Which structures have a highly druggable pocket?",
            query="find_pockets.score > 0.9",
            interpretation="Pockets scoring above 0.9 are likely druggable.",
        )
    ],
    example_questions=["How many pockets does a structure have?", "What is the largest pocket?"],
    see_also=["https://www.rcsb.org"],
)
