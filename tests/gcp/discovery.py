"""Google's own API descriptions as the fake's rulebook.

google-api-python-client ships the official discovery documents of every Google
API (`googleapiclient/discovery_cache/documents/<api>.<version>.json`). Each
describes every method: its HTTP verb, its URL template, its path and query
parameters (with patterns and `required`), and the schema of its request and
response bodies. This module turns them into a router and a validator:

- `Discovery.route(verb, path)` finds the one method whose template matches,
  with its path parameters (URL-decoded), or says why none does;
- `Discovery.check(method, query, body)` refuses unknown query parameters,
  missing required ones, and any body field the schema does not define, at any
  depth, plus wrong JSON types, values outside an enum, and fields the schema
  marks required for this very method (`annotations.required`).

Errors are `ApiError(code, message, reason)`, rendered in Google's error shape.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}
REASONS = {400: "invalid", 403: "forbidden", 404: "notFound", 409: "alreadyExists"}
# Parameters every Google API accepts (the GAPIC REST transports send `$alt`).
SYSTEM_PARAMS = {"$alt", "$fields", "$prettyPrint", "$callback", "$.xgafv"}


class ApiError(Exception):
    """An HTTP error in Google's JSON shape."""

    def __init__(self, code: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or REASONS.get(code, "backendError")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
                "status": STATUS_NAMES.get(self.code, "UNKNOWN"),
            }
        }


def documents_dir() -> Path:
    import googleapiclient

    return Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


@functools.cache
def load(name: str) -> dict[str, Any]:
    """A discovery document by file stem, e.g. "compute.v1"."""
    return json.loads((documents_dir() / f"{name}.json").read_text())


@dataclass(frozen=True)
class Method:
    api: str  # "compute.v1"
    id: str  # "compute.regionInstanceGroupManagers.resize"
    verb: str
    template: str  # servicePath + path, no leading slash
    regex: re.Pattern[str]
    literal: int  # literal characters in the template: more = more specific
    spec: dict[str, Any]

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.spec.get("parameters") or {})

    @property
    def request(self) -> str | None:
        return (self.spec.get("request") or {}).get("$ref")


def _compile(template: str, params: dict[str, Any]) -> tuple[re.Pattern[str], int]:
    out, literal, pos = ["^"], 0, 0
    for m in re.finditer(r"\{(\+?)([^}]+)\}", template):
        text = template[pos : m.start()]
        out.append(re.escape(text))
        literal += len(text)
        plus, name = m.group(1), m.group(2)
        pattern = (params.get(name) or {}).get("pattern", "")
        if plus and pattern:
            body = pattern.lstrip("^").rstrip("$")
        elif plus:
            body = ".+"
        else:
            body = "[^/]+"
        out.append(f"(?P<{name.replace('.', '_')}>{body})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    literal += len(template) - pos
    out.append("$")
    return re.compile("".join(out)), literal


def _methods(doc: dict[str, Any], api: str) -> list[Method]:
    found: list[Method] = []

    def walk(resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for spec in (resource.get("methods") or {}).values():
                template = doc.get("servicePath", "") + spec["path"]
                regex, literal = _compile(template, spec.get("parameters") or {})
                found.append(
                    Method(api, spec["id"], spec["httpMethod"], template, regex, literal, spec)
                )
            walk(resource.get("resources") or {})

    walk(doc.get("resources") or {})
    return found


class Discovery:
    """The methods and schemas of several APIs served from one address."""

    def __init__(self, *apis: str) -> None:
        self.docs = {api: load(api) for api in apis}
        self.methods = sorted(
            (m for api, doc in self.docs.items() for m in _methods(doc, api)),
            key=lambda m: -m.literal,
        )

    def route(self, verb: str, path: str) -> tuple[Method, dict[str, str]]:
        raw = path.lstrip("/")
        wrong_verb: Method | None = None
        for method in self.methods:
            m = method.regex.match(raw)
            if not m:
                continue
            if method.verb != verb:
                wrong_verb = wrong_verb or method
                continue
            names = {k.replace(".", "_"): k for k in method.params}
            values = {names.get(k, k): urllib.parse.unquote(v) for k, v in m.groupdict().items()}
            return method, values
        if wrong_verb is not None:
            raise ApiError(400, f"{verb} is not a method of {wrong_verb.template}", "badRequest")
        raise ApiError(400, f"no such method: {verb} /{raw}", "badRequest")

    def schema(self, api: str, name: str) -> dict[str, Any]:
        return dict(self.docs[api]["schemas"][name])

    def check(
        self, method: Method, query: dict[str, list[str]], body: Any, path_values: dict[str, str]
    ) -> None:
        """Refuse what the method does not define; fine when nothing is said."""
        params = method.params
        allowed = set(params) | set(self.docs[method.api].get("parameters") or {}) | SYSTEM_PARAMS
        for key in query:
            if key not in allowed:
                raise ApiError(
                    400,
                    f'Invalid JSON payload received. Unknown name "{key}": '
                    "Cannot bind query parameter.",
                    "badRequest",
                )
        for name, spec in params.items():
            loc = spec.get("location")
            if not spec.get("required"):
                continue
            if loc == "query" and name not in query:
                raise ApiError(400, f"Required parameter '{name}' is missing.", "required")
            if loc == "path" and not path_values.get(name):
                raise ApiError(400, f"Required path parameter '{name}' is missing.", "required")
        for name, values in query.items():
            spec = params.get(name)
            if spec and spec.get("type") == "integer":
                for v in values:
                    if not re.fullmatch(r"-?\d+", v):
                        raise ApiError(400, f"Invalid value for {name}: {v!r}", "invalid")
        ref = method.request
        if ref is None:
            if body not in (None, {}, b""):
                raise ApiError(400, f"{method.id} takes no request body", "badRequest")
            return
        if body is None:
            body = {}
        self.validate(method.api, {"$ref": ref}, body, ref, method.id)

    def validate(
        self, api: str, schema: dict[str, Any], value: Any, where: str, method: str
    ) -> None:
        """`value` against `schema`, recursively; ApiError naming the first bad field."""
        if "$ref" in schema:
            schema = self.schema(api, schema["$ref"])
        kind = schema.get("type", "any")
        if kind == "object":
            if not isinstance(value, dict):
                raise ApiError(400, f"Invalid value at '{where}': expected an object", "invalid")
            props = schema.get("properties") or {}
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                if key in props:
                    self.validate(api, props[key], item, f"{where}.{key}", method)
                elif extra is not None:
                    self.validate(api, extra, item, f"{where}[{key!r}]", method)
                else:
                    raise ApiError(
                        400,
                        f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': "
                        "Cannot find field.",
                        "badRequest",
                    )
            for key, prop in props.items():
                needed = (prop.get("annotations") or {}).get("required") or []
                if method in needed and key not in value:
                    raise ApiError(400, f"Required field '{where}.{key}' not specified", "required")
        elif kind == "array":
            if not isinstance(value, list):
                raise ApiError(400, f"Invalid value at '{where}': expected a list", "invalid")
            for n, item in enumerate(value):
                self.validate(api, schema.get("items") or {}, item, f"{where}[{n}]", method)
        elif kind == "string":
            fmt = schema.get("format", "")
            numeric = fmt in ("int64", "uint64") and isinstance(value, int)
            if not isinstance(value, str) and not numeric:
                raise ApiError(400, f"Invalid value at '{where}': expected a string", "invalid")
            enum = schema.get("enum")
            if enum and value not in enum:
                raise ApiError(
                    400, f"Invalid value at '{where}' ({value!r}): not one of {enum}", "invalid"
                )
        elif kind == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok and not (isinstance(value, str) and re.fullmatch(r"-?\d+", value)):
                raise ApiError(400, f"Invalid value at '{where}': expected an integer", "invalid")
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ApiError(400, f"Invalid value at '{where}': expected a number", "invalid")
        elif kind == "boolean" and not isinstance(value, bool):
            raise ApiError(400, f"Invalid value at '{where}': expected true or false", "invalid")
