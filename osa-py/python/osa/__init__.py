"""OSA hook SDK: author, test and run validation hooks for scientific archives.

```python
from osa import Record, Reject, Schema, hook

class Structure(Schema):
    __schema_id__ = "pdb-structure"
    resolution: float | None = None

@hook
def validate(record: Record[Structure]) -> None:
    if (record.metadata.resolution or 0) > 4.0:
        raise Reject("Resolution too low for reliable analysis")
```
"""

from osa import _native
from osa.authoring.convention import convention
from osa.authoring.example import Example
from osa.authoring.hook import hook
from osa.authoring.ingester import Ingester
from osa.authoring.validator import Reject
from osa.runtime.ingester_context import IngesterContext
from osa.types.ingester import IngesterFileRef, IngesterRecord, IngesterSchedule, InitialRun, Limits
from osa.types.record import Record
from osa.types.schema import Field, MetadataSchema

#: `Schema` is `MetadataSchema`.
Schema = MetadataSchema

__version__: str = _native.__version__

__all__ = [
    "Example",
    "Field",
    "Ingester",
    "IngesterContext",
    "IngesterFileRef",
    "IngesterRecord",
    "IngesterSchedule",
    "InitialRun",
    "Limits",
    "MetadataSchema",
    "Record",
    "Reject",
    "Schema",
    "convention",
    "hook",
]
