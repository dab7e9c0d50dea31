"""Authoring API: `hook`, `convention`, `Reject`, `Example`, `Ingester`."""

from osa.authoring.convention import convention
from osa.authoring.example import Example
from osa.authoring.hook import hook
from osa.authoring.ingester import Ingester
from osa.authoring.validator import Reject

__all__ = ["Example", "Ingester", "Reject", "convention", "hook"]
