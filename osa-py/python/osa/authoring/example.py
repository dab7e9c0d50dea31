"""`Example`: a worked example in a convention's documentation."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Example(BaseModel):
    """A question, a query answering it over the features, and how to read the answer."""

    model_config = ConfigDict(frozen=True)

    question: str
    query: str
    interpretation: str
