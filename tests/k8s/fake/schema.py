"""Strict decoding of request bodies by the official client's own model classes.

Every kind the fake serves maps to a `kubernetes.client.models` class. A body is
walked against that class's `openapi_types` (attribute -> type string) and
`attribute_map` (attribute -> JSON key), the generated description of the API:

- a key that no attribute maps to is an unknown field: with fieldValidation=Strict
  the request is refused (400, "strict decoding error: unknown field ..."), with
  Warn or Ignore (the server's default is Warn) it is dropped, as the API server does;
- a value of the wrong JSON type is a decoding error (400) whatever the mode;
- a required attribute that is missing is a validation error (422, FieldValueRequired).

Only the wire names count: the client's Python attribute names (`active_deadline_seconds`)
are unknown fields on the wire, as they are to a real API server.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import kubernetes.client.models as models

_LIST = re.compile(r"^List\[(.+)\]$")
_DICT = re.compile(r"^Dict\[str, (.+)\]$")
# Go's names for the wire types, for messages shaped like the API server's.
_GO_TYPE = {"str": "string", "int": "int32", "bool": "bool", "float": "float64"}


@dataclass
class Decoded:
    """The body with unknown fields dropped, and what was found on the way."""

    body: dict[str, Any]
    unknown: list[str] = field(default_factory=list)  # "spec.foo"
    type_errors: list[str] = field(default_factory=list)  # decoding errors, Go-style
    missing: list[str] = field(default_factory=list)  # required fields absent


def model_class(name: str) -> type:
    cls = getattr(models, name, None)
    if cls is None or not isinstance(getattr(cls, "openapi_types", None), dict):
        raise KeyError(f"no model class {name}")
    return cls


def _required(cls: type, attr: str) -> bool:
    fields = getattr(cls, "model_fields", None)  # pydantic-generated clients (>= 35)
    if fields and attr in fields:
        return bool(fields[attr].is_required())
    return False


def decode(body: Any, model: str) -> Decoded:
    out = Decoded({})
    if not isinstance(body, dict):
        out.type_errors.append(f"cannot unmarshal {_json_kind(body)} into Go value of type {model}")
        return out
    out.body = _object(body, model, "", out)
    return out


def _object(value: dict[str, Any], model: str, path: str, out: Decoded) -> dict[str, Any]:
    cls = model_class(model)
    by_wire = {wire: attr for attr, wire in cls.attribute_map.items()}  # type: ignore[attr-defined]
    kept: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        attr = by_wire.get(key)
        if attr is None:
            out.unknown.append(where)
            continue
        kept[key] = _value(item, cls.openapi_types[attr], where, out)  # type: ignore[attr-defined]
    for attr, wire in cls.attribute_map.items():  # type: ignore[attr-defined]
        if _required(cls, attr) and value.get(wire) is None:
            out.missing.append(f"{path}.{wire}" if path else wire)
    return kept


def _value(value: Any, type_name: str, path: str, out: Decoded) -> Any:
    if value is None:
        return None
    found = _LIST.match(type_name)
    if found:
        if not isinstance(value, list):
            out.type_errors.append(_mismatch(value, "[]" + found.group(1), path))
            return value
        return [_value(v, found.group(1), f"{path}[{i}]", out) for i, v in enumerate(value)]
    found = _DICT.match(type_name)
    if found:
        if not isinstance(value, dict):
            out.type_errors.append(_mismatch(value, "map[string]" + found.group(1), path))
            return value
        return {k: _value(v, found.group(1), f"{path}[{k}]", out) for k, v in value.items()}
    if type_name == "object":
        return value
    if type_name in ("str", "int", "bool", "float"):
        if not _scalar_ok(value, type_name):
            out.type_errors.append(_mismatch(value, _GO_TYPE[type_name], path))
        return value
    if type_name == "bytes":
        if not isinstance(value, str):
            out.type_errors.append(_mismatch(value, "[]byte", path))
            return value
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            out.type_errors.append(f"illegal base64 data in field {path}")
        return value
    if type_name == "datetime":
        if not isinstance(value, str) or not _is_time(value):
            out.type_errors.append(_mismatch(value, "Time", path))
        return value
    if isinstance(value, dict):
        return _object(value, type_name, path, out)
    out.type_errors.append(_mismatch(value, type_name, path))
    return value


def _scalar_ok(value: Any, type_name: str) -> bool:
    if type_name == "str":
        return isinstance(value, str)
    if type_name == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if type_name == "int":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, (int, float))


def _is_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _mismatch(value: Any, go_type: str, path: str) -> str:
    return (
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field {path} of type {go_type}"
    )
