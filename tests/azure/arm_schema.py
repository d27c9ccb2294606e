"""Strict request-body checks from the azure-mgmt SDKs' own model classes.

The fake Resource Manager validates every body it accepts against the model class
the real SDK serializes it from, in either of the two shapes Azure's Python SDKs
ship:

- msrest-style models (azure-mgmt-msi, -authorization, -monitor): `_attribute_map`
  (attribute -> wire key, dotted when flattened, and a type string) and
  `_validation` (required, readonly, constraints); `_subtype_map` for
  discriminators;
- TypeSpec-style models (azure-mgmt-compute, -network, -storage, -resource): the
  `rest_field`s of `_utils.model_base.Model` (wire name and visibility) and the
  class annotations (`Optional[...]` = not required); `__mapping__` for
  discriminators.

A property the model does not have, a read-only property, a required property
left out, or a value of the wrong JSON type is an error, reported with the path
of the property, as ARM's `InvalidRequestContent` would. After the checks the
body is also deserialized into the model class, so anything the SDK itself cannot
read is refused too.
"""

from __future__ import annotations

import datetime
import enum
import re
import sys
import typing
from dataclasses import dataclass
from typing import Any

_DOT = re.compile(r"(?<!\\)\.")


@dataclass(frozen=True)
class Prop:
    """One wire property of a model: its type, and whether it must or must not be sent."""

    type: Any  # a typing object (TypeSpec style) or an msrest type string
    required: bool
    readonly: bool
    module: str  # where model names in `type` resolve


def _is_msrest(cls: type) -> bool:
    return hasattr(cls, "_attribute_map")


def _is_model_base(cls: Any) -> bool:
    return (isinstance(cls, type) and hasattr(cls, "_attr_to_rest_field")) or (
        isinstance(cls, type)
        and any(b.__name__ == "Model" and "model_base" in b.__module__ for b in cls.__mro__)
    )


def _msrest_tree(cls: type) -> dict[str, Any]:
    """Wire keys -> Prop, with flattened keys ("properties.x") as nested dicts."""
    tree: dict[str, Any] = {}
    validation = getattr(cls, "_validation", {}) or {}
    for attr, spec in cls._attribute_map.items():  # type: ignore[attr-defined]
        parts = [p.replace("\\.", ".") for p in _DOT.split(spec["key"])]
        rules = validation.get(attr, {})
        prop = Prop(
            spec["type"], bool(rules.get("required")), bool(rules.get("readonly")), cls.__module__
        )
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = prop
    return tree


def _model_base_fields(cls: type) -> dict[str, Any]:
    if not hasattr(cls, "_attr_to_rest_field") or cls.__qualname__ not in str(
        getattr(cls, "_calculated", set())
    ):
        cls.__new__(cls)  # model_base computes the rest fields of a class on first use
    module = sys.modules[cls.__module__]
    package = sys.modules[cls.__module__.rsplit(".", 1)[0]]  # the SDK's `models`
    hints = typing.get_type_hints(cls, globalns={**vars(module), "_models": package})
    out: dict[str, Any] = {}
    for attr, field in cls._attr_to_rest_field.items():  # type: ignore[attr-defined]
        hint = hints.get(attr, Any)
        optional = _is_optional(hint)
        visibility = field._visibility or ["read", "create", "update"]
        readonly = visibility == ["read"]
        required = (not optional) and not readonly and "create" in visibility
        out[field._rest_name] = Prop(hint, required, readonly, cls.__module__)
    return out


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)


class Checker:
    """Collects every problem of one body (not just the first)."""

    def __init__(self, *, create: bool = True) -> None:
        self.create = create  # PUT: required properties must be there
        self.errors: list[str] = []

    def model(self, cls: type, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            self.errors.append(f"{path or 'body'}: expected an object, got {_kind(value)}")
            return
        cls = self._subtype(cls, value)
        if _is_msrest(cls):
            self._tree(_msrest_tree(cls), value, path)
        else:
            self._tree(_model_base_fields(cls), value, path)

    def _subtype(self, cls: type, value: dict[str, Any]) -> type:
        module = sys.modules[cls.__module__]
        mapping = getattr(cls, "_subtype_map", None)
        if mapping:
            for attr, choices in mapping.items():
                key = cls._attribute_map[attr]["key"]  # type: ignore[attr-defined]
                found = choices.get(value.get(key))
                if found:
                    return typing.cast(type, getattr(module, found, cls))
        mapping = getattr(cls, "__mapping__", None)
        if mapping:
            for field in cls._attr_to_rest_field.values():  # type: ignore[attr-defined]
                if field._is_discriminator and value.get(field._rest_name) in mapping:
                    return typing.cast(type, mapping[value[field._rest_name]])
        return cls

    def _tree(self, tree: dict[str, Any], value: dict[str, Any], path: str) -> None:
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            known = tree.get(key)
            if known is None:
                self.errors.append(f"{where}: no such property")
            elif isinstance(known, dict):  # a flattened group, e.g. "properties"
                if not isinstance(item, dict):
                    self.errors.append(f"{where}: expected an object, got {_kind(item)}")
                else:
                    self._tree(known, item, where)
            elif known.readonly:
                self.errors.append(f"{where}: read-only, must not be sent")
            elif item is not None:
                self.value(known.type, item, where, known.module)
        if self.create:
            for key, known in tree.items():
                where = f"{path}.{key}" if path else key
                if isinstance(known, dict):
                    inner = value.get(key)
                    if _has_required(known) and not isinstance(inner, dict):
                        self.errors.append(f"{where}: required, missing")
                        # present dicts were checked above, requirements included
                elif known.required and value.get(key) is None:
                    self.errors.append(f"{where}: required, missing")

    def value(self, kind: Any, item: Any, path: str, module: str) -> None:
        if isinstance(kind, str):
            return self._msrest_value(kind, item, path, module)
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if origin is typing.Union:
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:
                return self.value(options[0], item, path, module)
            if all(_is_str_like(a) for a in options):
                return self.value(str, item, path, module)
            return None  # a genuine union: accept any of its JSON shapes
        if origin is typing.Literal:
            if item not in args:
                self.errors.append(f"{path}: must be one of {list(args)}, got {item!r}")
            return None
        if origin in (list, typing.List):  # noqa: UP006
            if not isinstance(item, list):
                self.errors.append(f"{path}: expected an array, got {_kind(item)}")
                return None
            for n, element in enumerate(item):
                self.value(args[0] if args else Any, element, f"{path}[{n}]", module)
            return None
        if origin in (dict, typing.Dict):  # noqa: UP006
            if not isinstance(item, dict):
                self.errors.append(f"{path}: expected an object, got {_kind(item)}")
                return None
            for k, element in item.items():
                self.value(args[1] if len(args) > 1 else Any, element, f"{path}.{k}", module)
            return None
        if kind is Any or kind is object:
            return None
        if (isinstance(kind, type) and issubclass(kind, enum.Enum)) or kind is str:
            return self._expect(item, str, path, "a string")
        if kind is bool:
            return self._expect(item, bool, path, "a boolean")
        if kind is int:
            if isinstance(item, bool) or not isinstance(item, int):
                self.errors.append(f"{path}: expected an integer, got {_kind(item)}")
            return None
        if kind is float:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                self.errors.append(f"{path}: expected a number, got {_kind(item)}")
            return None
        if kind in (datetime.datetime, datetime.date, datetime.timedelta, bytes):
            return self._expect(item, str, path, "a string")
        if isinstance(kind, type) and _is_model_base(kind):
            return self.model(kind, item, path)
        return None

    def _msrest_value(self, kind: str, item: Any, path: str, module: str) -> None:
        if kind.startswith("[") and kind.endswith("]"):
            if not isinstance(item, list):
                self.errors.append(f"{path}: expected an array, got {_kind(item)}")
                return
            for n, element in enumerate(item):
                self._msrest_value(kind[1:-1], element, f"{path}[{n}]", module)
            return
        if kind.startswith("{") and kind.endswith("}"):
            if not isinstance(item, dict):
                self.errors.append(f"{path}: expected an object, got {_kind(item)}")
                return
            for k, element in item.items():
                self._msrest_value(kind[1:-1], element, f"{path}.{k}", module)
            return
        simple = {
            "str": (str, "a string"),
            "bool": (bool, "a boolean"),
            "iso-8601": (str, "a date-time string"),
            "rfc-1123": (str, "a date-time string"),
            "duration": (str, "a duration string"),
            "date": (str, "a date string"),
            "base64": (str, "a base64 string"),
            "bytearray": (str, "a base64 string"),
        }
        if kind in simple:
            self._expect(item, simple[kind][0], path, simple[kind][1])
            return
        if kind in ("int", "long", "unix-time"):
            if isinstance(item, bool) or not isinstance(item, int):
                self.errors.append(f"{path}: expected an integer, got {_kind(item)}")
            return
        if kind == "float":
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                self.errors.append(f"{path}: expected a number, got {_kind(item)}")
            return
        if kind == "object":
            return
        target = getattr(sys.modules[module], kind, None)
        if isinstance(target, type) and issubclass(target, enum.Enum):
            self._expect(item, str, path, "a string")
        elif isinstance(target, type):
            self.model(target, item, path)
        else:
            self.errors.append(f"{path}: the model declares an unknown type {kind!r}")

    def _expect(self, item: Any, kind: type, path: str, what: str) -> None:
        if not isinstance(item, kind) or (kind is not bool and isinstance(item, bool)):
            self.errors.append(f"{path}: expected {what}, got {_kind(item)}")


def _has_required(tree: dict[str, Any]) -> bool:
    return any(_has_required(v) if isinstance(v, dict) else v.required for v in tree.values())


def _is_str_like(kind: Any) -> bool:
    return (
        kind is str
        or (isinstance(kind, type) and issubclass(kind, enum.Enum))
        or (typing.get_origin(kind) is typing.Literal)
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def check_body(cls: type, body: Any, *, create: bool = True) -> list[str]:
    """Every problem of `body` against model `cls`; [] when the SDK's model takes it."""
    checker = Checker(create=create)
    checker.model(cls, body, "")
    if not checker.errors:
        try:
            if _is_msrest(cls):
                cls.deserialize(body)  # type: ignore[attr-defined]
            else:
                cls(body)
        except Exception as exc:  # the SDK's own deserializer refused it
            checker.errors.append(f"body: {type(exc).__name__}: {exc}")
    return checker.errors
