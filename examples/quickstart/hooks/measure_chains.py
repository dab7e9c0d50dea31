#!/usr/bin/env python3
"""Quickstart hook 2: one feature row per chain of a structure (residue count and mean
B-factor), read from the record's structure.cif. Standard library only."""

import json
import os
from collections import defaultdict


def main():
    in_dir, out_dir, files_dir = os.environ["OSA_IN"], os.environ["OSA_OUT"], os.environ["OSA_FILES"]
    with open(os.path.join(in_dir, "records.jsonl")) as records, open(
        os.path.join(out_dir, "features.jsonl"), "w"
    ) as out:
        for line in records:
            record = json.loads(line)
            chains = defaultdict(lambda: {"residues": set(), "b": []})
            path = os.path.join(files_dir, record_dir(record["id"]), "structure.cif")
            with open(path) as cif:
                for row in cif:
                    if row.startswith("ATOM"):
                        _, chain, residue, b_factor = row.split()
                        chains[chain]["residues"].add(int(residue))
                        chains[chain]["b"].append(float(b_factor))
            rows = [
                {
                    "chain": chain,
                    "residues": len(data["residues"]),
                    "mean_b": round(sum(data["b"]) / len(data["b"]), 2),
                }
                for chain, data in sorted(chains.items())
            ]
            out.write(json.dumps({"id": record["id"], "features": rows}) + "\n")


def record_dir(record_id):
    return "".join(c if c.isalnum() and c.isascii() or c in "._-" else "_" for c in record_id)


if __name__ == "__main__":
    main()
