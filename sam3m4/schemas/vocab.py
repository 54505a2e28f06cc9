"""A deployment vocabulary: ``<pte stem>.vocab.json`` (:meth:`sam3m4.export.token_table.Vocabulary.save`) and the
same file given back to ``sam3m4 export --vocabulary``. The phrase-list form (one phrase a line) is text."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from sam3m4.schemas._base import Count, Own, Text

CLIP_VOCAB = 49408
"""Rows of the CLIP token table (ids 0 .. 49407)."""


def _sorted_unique(ids: list[int]) -> list[int]:
    if ids != sorted(set(ids)):
        raise ValueError("must be sorted, unique ids")
    return ids


ClipIds = Annotated[list[Annotated[int, Field(strict=True, ge=0, lt=CLIP_VOCAB)]], Field(min_length=1),
                    AfterValidator(_sorted_unique)]


class VocabFile(Own):
    """``{clip_ids: [sorted unique ids in [0, 49408)], source, rows}``; ``rows`` = ``len(clip_ids)``."""

    clip_ids: ClipIds
    source: Text = ""
    """Where the phrases came from."""
    rows: Count | None = None

    @model_validator(mode="after")
    def _rows_match(self):
        if self.rows is not None and self.rows != len(self.clip_ids):
            raise ValueError(f"rows is {self.rows} but clip_ids has {len(self.clip_ids)} ids")
        return self
