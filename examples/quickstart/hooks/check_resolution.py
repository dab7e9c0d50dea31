#!/usr/bin/env python3
"""Quickstart hook 1: reject structures whose resolution is too coarse or that carry
no coordinates. Standard library only; implements OSA's batch contract directly."""

import json
import os

MAX_RESOLUTION = 3.5  # Å


def main():
    in_dir, out_dir, files_dir = os.environ["OSA_IN"], os.environ["OSA_OUT"], os.environ["OSA_FILES"]
    with open(os.path.join(in_dir, "records.jsonl")) as records, open(
        os.path.join(out_dir, "features.jsonl"), "w"
    ) as passed, open(os.path.join(out_dir, "rejections.jsonl"), "w") as rejected:
        for line in records:
            record = json.loads(line)
            rid, meta = record["id"], record["metadata"]
            structure = os.path.join(files_dir, record_dir(rid), "structure.cif")
            if meta["resolution"] > MAX_RESOLUTION:
                reason = f"resolution {meta['resolution']} Å is coarser than {MAX_RESOLUTION} Å"
                rejected.write(json.dumps({"id": rid, "reason": reason}) + "\n")
            elif not os.path.exists(structure):
                rejected.write(json.dumps({"id": rid, "reason": "no structure.cif file"}) + "\n")
            else:
                passed.write(json.dumps({"id": rid, "features": []}) + "\n")


def record_dir(record_id):
    return "".join(c if c.isalnum() and c.isascii() or c in "._-" else "_" for c in record_id)


if __name__ == "__main__":
    main()
