"""Tests of the PDB Ligand Pockets convention, through the SDK's documented test API."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pydantic
import pytest
from osa import Reject, _registry
from osa.testing import run_hook, run_ingester, run_test

from pdb_pockets import cif
from pdb_pockets.convention import PDBStructure, Pocket, check_structure, detect_pockets
from pdb_pockets.ingest import StructureMirror

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "pdb_pockets" / "samples"
TITLE = "PDB Ligand Pockets"


def _samples() -> dict[str, dict[str, Any]]:
    lines = (SAMPLES / "in" / "records.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return {record["metadata"]["pdb_id"]: record for record in records}


RECORDS = _samples()


def meta(sample: str, /, **changes: Any) -> dict[str, Any]:
    """The metadata of a sample record, with `changes` applied."""
    return {**RECORDS[sample]["metadata"], **changes}


def files(pdb_id: str) -> Path:
    """The files directory of a sample record (named as the engine names it)."""
    return SAMPLES / "files" / f"pdb_{pdb_id}"


def mmcif(block: str, *rows: str) -> str:
    """A minimal mmCIF text with the given `_atom_site` rows."""
    header = [
        "group_PDB",
        "id",
        "label_atom_id",
        "label_comp_id",
        "label_asym_id",
        "label_seq_id",
        "Cartn_x",
        "Cartn_y",
        "Cartn_z",
    ]
    columns = "\n".join(f"_atom_site.{name}" for name in header)
    return f"data_{block}\n#\nloop_\n{columns}\n" + "\n".join(rows) + "\n#\n"


def console_script(name: str) -> str:
    """A console script installed next to the test interpreter (else on PATH)."""
    path = Path(sys.executable).parent / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"console script {name} is not installed"
    return found


def run_console_script(
    name: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a console script with this environment minus `OSA_*`, plus `env`; it must
    exit 0."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OSA_")}
    result = subprocess.run(
        [console_script(name), *args],
        capture_output=True,
        text=True,
        env=clean | (env or {}),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


# check_structure


@pytest.mark.parametrize("pdb_id", ["9PK1", "9PK2"])
def test_fit_structures_pass(pdb_id: str) -> None:
    assert run_hook(check_structure, meta=meta(pdb_id), files=files(pdb_id)) is None


def test_low_resolution_is_rejected() -> None:
    with pytest.raises(Reject, match=r"^Resolution too low for reliable analysis$"):
        run_hook(check_structure, meta=meta("9PK3"), files=files("9PK3"))


def test_resolution_at_the_limit_passes() -> None:
    assert run_hook(check_structure, meta=meta("9PK3", resolution=4.0), files=files("9PK3")) is None


def test_nmr_structure_without_resolution_passes() -> None:
    metadata = meta("9PK1", resolution=None, method="SOLUTION NMR")
    assert run_hook(check_structure, meta=metadata, files=files("9PK1")) is None


def test_a_record_without_cif_is_rejected() -> None:
    with pytest.raises(Reject, match=r"^At least one CIF file is required$"):
        run_hook(check_structure, meta=meta("9PK4"), files=files("9PK4"))


def test_a_cif_of_another_entry_is_rejected() -> None:
    with pytest.raises(Reject, match=re.escape("structure.cif describes entry 9PK2, not 1ABC")):
        run_hook(check_structure, meta=meta("9PK2", pdb_id="1ABC"), files=files("9PK2"))


def test_an_unreadable_cif_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "structure.cif").write_text("HEADER not a CIF\n")
    with pytest.raises(
        Reject, match=re.escape("structure.cif is not a readable mmCIF file: no data_")
    ):
        run_hook(check_structure, meta=meta("9PK2"), files=tmp_path)


def test_a_cif_without_polymer_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "ligand.cif").write_text(mmcif("9PK2", "HETATM 1 MG MG C . 0 0 0"))
    with pytest.raises(Reject, match=re.escape("ligand.cif has no polymer atoms")):
        run_hook(check_structure, meta=meta("9PK2"), files=tmp_path)


def test_metadata_the_schema_refuses_never_reaches_the_hook() -> None:
    with pytest.raises(pydantic.ValidationError, match="chain_count"):
        run_hook(check_structure, meta=meta("9PK5"), files=files("9PK5"))
    with pytest.raises(pydantic.ValidationError, match="pdb_id"):
        run_hook(check_structure, meta=meta("9PK1", pdb_id="not-an-id"), files=files("9PK1"))
    with pytest.raises(pydantic.ValidationError, match="extra"):
        run_hook(check_structure, meta=meta("9PK1", ligand="ATP"), files=files("9PK1"))


# detect_pockets


def test_one_pocket_per_bound_ligand_water_excluded() -> None:
    pockets = run_hook(detect_pockets, meta=meta("9PK1"), files=files("9PK1"))
    assert pockets == [
        Pocket(
            pocket_id=1,
            ligand="ATP",
            chain="A",
            ligand_atoms=5,
            lining_residues=6,
            radius=2.0,
            buriedness=0.5,
        ),
        Pocket(
            pocket_id=2,
            ligand="MG",
            chain="A",
            ligand_atoms=1,
            lining_residues=2,
            radius=0.0,
            buriedness=0.17,
        ),
    ]


def test_an_apo_structure_has_no_pockets() -> None:
    assert run_hook(detect_pockets, meta=meta("9PK2"), files=files("9PK2")) == []


def test_detect_pockets_rejects_a_record_without_cif_too() -> None:
    with pytest.raises(Reject, match=r"^At least one CIF file is required$"):
        run_hook(detect_pockets, meta=meta("9PK4"), files=files("9PK4"))


def test_contact_distance_decides_lining(tmp_path: Path) -> None:
    text = mmcif(
        "9PK2",
        "ATOM 1 CA ALA A 1 4.0 0 0",  # exactly 4 Å: lines the pocket
        "ATOM 2 CA GLY B 1 0 4.01 0",  # just beyond
        "HETATM 3 ZN ZN C . 0 0 0",
    )
    (tmp_path / "structure.cif").write_text(text)
    (pocket,) = run_hook(detect_pockets, meta=meta("9PK2"), files=tmp_path)
    assert (pocket.ligand, pocket.chain, pocket.lining_residues) == ("ZN", "C", 1)


# the mmCIF reader


def test_reader_handles_quotes_and_rows_split_over_lines() -> None:
    text = mmcif("1abc", "ATOM 1 \"C5'\" 'A B' A", "7 1.5 -2 3e0", "HETATM 2 O HOH W . 0 0 0")
    structure = cif.parse(text)
    assert structure.block == "1abc"
    assert structure.atoms[0] == cif.Atom("ATOM", "C5'", "A B", "A", "7", 1.5, -2.0, 3.0)
    assert [atom.residue for atom in structure.atoms] == ["A B", "HOH"]


def test_reader_refuses_what_it_cannot_read() -> None:
    with pytest.raises(cif.CifError, match="no data_ block"):
        cif.parse("loop_\n_atom_site.id\n1\n")
    with pytest.raises(cif.CifError, match="a row has 3 values, expected 9"):
        cif.parse(mmcif("1abc", "ATOM 1 CA"))
    with pytest.raises(cif.CifError, match="bad coordinate"):
        cif.parse(mmcif("1abc", "ATOM 1 CA ALA A 1 x 0 0"))


# the schema and the package


def test_schema_id_and_units() -> None:
    assert PDBStructure.schema_id() == "pdb-structure"
    definitions = {f.name: f for f in PDBStructure.to_field_definitions()}
    assert list(definitions) == [
        "pdb_id",
        "title",
        "method",
        "resolution",
        "deposition_date",
        "molecular_weight",
        "chain_count",
    ]
    units = {name: (f.constraints or {}).get("unit") for name, f in definitions.items()}
    assert units["resolution"] == "Å"
    assert units["molecular_weight"] == "kDa"
    assert definitions["pdb_id"].required
    assert not definitions["resolution"].required


def test_the_entry_point_names_the_convention_module() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="osa.conventions")}
    assert found.get("pdb_pockets") == "pdb_pockets.convention"


def test_osa_manifest_prints_the_deploy_payload() -> None:
    result = run_console_script("osa", "manifest")
    document = json.loads(result.stdout)
    assert document["manifest_version"] == 1
    (body,) = [c for c in document["conventions"] if c["title"] == TITLE]
    assert body["schema"]["id"] == "pdb-structure"
    assert body["schema"]["version"] == "1.0.0"
    assert body["file_requirements"] == {
        "accepted_types": [".cif", ".pdb"],
        "max_count": 5,
        "max_file_size": 52_428_800,
        "min_count": 0,
    }
    hooks = {hook["name"]: hook for hook in body["hooks"]}
    assert list(hooks) == ["check_structure", "detect_pockets"]
    assert hooks["check_structure"]["feature"] == {
        "kind": "table",
        "cardinality": "one",
        "columns": [],
    }
    pockets = hooks["detect_pockets"]["feature"]
    assert pockets["cardinality"] == "many"
    columns = {c["name"]: c for c in pockets["columns"]}
    assert list(columns) == list(Pocket.model_fields)
    assert {name: c["json_type"] for name, c in columns.items()} == {
        "pocket_id": "integer",
        "ligand": "string",
        "chain": "string",
        "ligand_atoms": "integer",
        "lining_residues": "integer",
        "radius": "number",
        "buriedness": "number",
    }
    assert columns["radius"]["unit"] == "Å"
    assert hooks["detect_pockets"]["limits"] == {
        "timeout_seconds": 120,
        "memory": "1g",
        "cpu": "1",
    }
    assert hooks["check_structure"]["config"] == {}
    assert body["ingester"] == {
        "name": "pdb_mirror",
        "config": {"mirror": None},
        "limits": {"timeout_seconds": 600, "memory": "512m", "cpu": "0.5"},
        "schedule": {"cron": "0 3 * * *", "limit": 500},
        "initial_run": {"limit": 5},
    }
    assert len(body["docs"]["example_questions"]) == 3
    assert body["docs"]["examples"][0]["question"].startswith("Which structures bind ATP")


# the ingester


def test_the_mirror_ingester_pulls_the_bundled_samples(tmp_path: Path) -> None:
    result = run_ingester(StructureMirror, files_dir=tmp_path)
    assert result.ingester_name == "pdb_mirror"
    assert [r.source_id for r in result.records] == [f"pdb:9PK{i}" for i in range(1, 6)]
    first = result.records[0]
    assert first.metadata == RECORDS["9PK1"]["metadata"]
    (ref,) = first.files
    # The directory naming is the SDK's (OSA maps ids like the engine: `pdb_9PK1`).
    assert ref.name == "structure.cif"
    assert ref.relative_path.endswith("9PK1/structure.cif")
    copied = (tmp_path / ref.relative_path).read_bytes()
    assert copied == (files("9PK1") / "structure.cif").read_bytes()
    assert ref.size_mb == pytest.approx(len(copied) / 2**20)


def test_the_mirror_ingester_honours_limit_offset_since_and_session(tmp_path: Path) -> None:
    def ids(**kwargs: Any) -> list[str]:
        return [r.source_id for r in run_ingester(StructureMirror, **kwargs).records]

    assert ids(limit=2, files_dir=tmp_path / "a") == ["pdb:9PK1", "pdb:9PK2"]
    assert ids(session={"after": ["2024-03-01", "pdb:9PK3"]}, files_dir=tmp_path / "b") == [
        "pdb:9PK4",
        "pdb:9PK5",
    ]
    late = datetime(2024, 3, 2, tzinfo=UTC)
    assert ids(since=late, files_dir=tmp_path / "c") == []


def test_the_mirror_ingester_reads_the_configured_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "in").mkdir(parents=True)
    entry = {"id": "pdb:1ABC", "metadata": meta("9PK2", pdb_id="1ABC")}
    (mirror / "in" / "records.jsonl").write_text(json.dumps(entry) + "\n", encoding="utf-8")
    result = run_ingester(
        StructureMirror, config={"mirror": str(mirror)}, files_dir=tmp_path / "files"
    )
    assert [(r.source_id, r.files) for r in result.records] == [("pdb:1ABC", [])]


def test_run_test_validates_ingested_records_with_every_hook() -> None:
    (info,) = [c for c in _registry._conventions if c.title == TITLE]
    result = run_test(convention_info=info, limit=5)
    assert result.ingester_name == "pdb_mirror"
    statuses = {r.source_id: [(h.hook_name, h.status) for h in r.hooks] for r in result.records}
    assert statuses == {
        "pdb:9PK1": [("check_structure", "passed"), ("detect_pockets", "passed")],
        "pdb:9PK2": [("check_structure", "passed"), ("detect_pockets", "passed")],
        "pdb:9PK3": [("check_structure", "rejected"), ("detect_pockets", "skipped")],
        "pdb:9PK4": [("check_structure", "rejected"), ("detect_pockets", "skipped")],
        "pdb:9PK5": [("check_structure", "error"), ("detect_pockets", "skipped")],
    }
    assert [r.accepted for r in result.records] == [True, True, False, False, False]


def test_osa_run_ingester_writes_records_files_and_session(tmp_path: Path) -> None:
    inputs, out, fetched = tmp_path / "in", tmp_path / "out", tmp_path / "files"
    inputs.mkdir()
    run_console_script(
        "osa-run-ingester",
        env={
            "OSA_IN": str(inputs),
            "OSA_OUT": str(out),
            "OSA_FILES": str(fetched),
            "OSA_OFFSET": "3",
        },
    )
    lines = (out / "records.jsonl").read_text(encoding="utf-8").splitlines()
    pulled = [json.loads(line) for line in lines]
    assert [r["source_id"] for r in pulled] == ["pdb:9PK4", "pdb:9PK5"]
    ((ref,),) = [r["files"] for r in pulled if r["source_id"] == "pdb:9PK4"]
    assert ref["name"] == "structure.pdb"
    assert ref["relative_path"].endswith("9PK4/structure.pdb")
    copied = (fetched / ref["relative_path"]).read_bytes()
    assert copied == (files("9PK4") / "structure.pdb").read_bytes()
    assert ref["size_mb"] == pytest.approx(len(copied) / 2**20)
    session = json.loads((out / "session.json").read_text(encoding="utf-8"))
    assert session == {"after": ["2024-03-01", "pdb:9PK5"]}
