"""Types hooks work with: schemas, records, files and ingester/limit models."""

from osa.types.files import File, FileCollection
from osa.types.ingester import IngesterFileRef, IngesterRecord, IngesterSchedule, InitialRun, Limits
from osa.types.record import Record
from osa.types.schema import Field, FieldDefinition, MetadataSchema

__all__ = [
    "Field",
    "FieldDefinition",
    "File",
    "FileCollection",
    "IngesterFileRef",
    "IngesterRecord",
    "IngesterSchedule",
    "InitialRun",
    "Limits",
    "MetadataSchema",
    "Record",
]
