"""An example OSA convention package: ligand pockets in protein structures.

The convention lives in `pdb_pockets.convention` (the `osa.conventions` entry point);
`pdb_pockets.cif` is the small mmCIF reader its hooks use.
"""
