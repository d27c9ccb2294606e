"""A cloud's part of a TaskRef (`extra`), written and read by its dataclass fields.

Each backend's `Place` is a frozen dataclass of plain fields; `PlaceRecord` stores
every field under its name and reads each back as its declared type, so a field
is added in one place (its declaration) and older task states keep reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

if TYPE_CHECKING:
    from ..task import TaskRef

P = TypeVar("P", bound="PlaceRecord")

PAIRS = tuple[tuple[str, str], ...]  # stored as a mapping (tags)
STRINGS = tuple[str, ...]  # stored as a list


class PlaceRecord:
    """Mixin of a frozen dataclass of str, int, bool, PAIRS and STRINGS fields."""

    def to_dict(self) -> dict[str, Any]:
        hints = get_type_hints(type(self))
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if hints[f.name] == PAIRS:
                value = dict(value)
            elif hints[f.name] == STRINGS:
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_ref(cls: type[P], ref: TaskRef) -> P:
        return cls.from_extra(ref.extra)

    @classmethod
    def from_extra(cls: type[P], extra: Mapping[str, Any], **absent: Any) -> P:
        """What to_dict stored, each field as its declared type. A field that is not
        there, or empty, takes `absent[name]`, else its default (a bool: False); a
        field with neither must be there (KeyError)."""
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            kind, name = hints[f.name], f.name
            fallback = absent.get(name, f.default)
            if kind is bool:
                values[name] = bool(extra.get(name, False if fallback is MISSING else fallback))
                continue
            raw = extra[name] if fallback is MISSING else (extra.get(name) or fallback)
            if kind is str:
                values[name] = str(raw)
            elif kind is int:
                values[name] = int(raw)
            elif kind == PAIRS:
                values[name] = tuple(sorted((str(k), str(v)) for k, v in dict(raw).items()))
            elif kind == STRINGS:
                values[name] = tuple(str(v) for v in raw)
            else:
                raise TypeError(f"{cls.__name__}.{name}: a {kind} field cannot be stored")
        return cls(**values)
