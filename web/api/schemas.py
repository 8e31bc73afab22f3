"""Fields shared by the API's schemas: row ids and moments in time."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from marshmallow import fields, validate

#: The largest id a row can have (ids are 32-bit integer columns): a larger number names no row.
MAX_ID = 2**31 - 1


class UtcDateTime(fields.DateTime):
    """An ISO 8601 moment that always carries its offset, as the document's ``date-time`` format requires.

    The database stores UTC; SQLite gives it back without its offset, so a naive
    value is given its UTC offset when dumped.
    """

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> str | float | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return super()._serialize(value, attr, obj, **kwargs)


def row_id(**kwargs: Any) -> fields.Integer:
    """An integer naming a row: a number outside 0..:data:`MAX_ID` is refused (422) rather than looked up."""
    return fields.Integer(validate=validate.Range(min=0, max=MAX_ID), **kwargs)
