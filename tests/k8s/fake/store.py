"""The fake API server's object store: kinds, defaults, validation, selectors, errors.

Objects are kept as the JSON the API server would return, per (resource, namespace,
name), each with `uid`, `resourceVersion` (one cluster-wide counter) and
`creationTimestamp`. Every write goes through `create`/`replace`/`remove` here, by
the HTTP layer and the controllers alike, so the controllers' pods meet the same
validation and admission (a missing service account refuses the pod) as a user's.
Errors are `ApiError`s carrying the `Status` object the API server would answer.
"""

from __future__ import annotations

import base64
import copy
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import podsecurity, schema


@dataclass(frozen=True)
class Kind:
    group: str  # "" for core
    version: str
    plural: str
    kind: str
    model: str  # the client's model class
    namespaced: bool = True
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`jobs.batch`, `pods`: how the API server names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS = (
    Kind("", "v1", "namespaces", "Namespace", "V1Namespace", namespaced=False),
    Kind("", "v1", "nodes", "Node", "V1Node", namespaced=False),
    Kind("", "v1", "pods", "Pod", "V1Pod", subresources=("status", "log", "eviction", "proxy")),
    Kind("", "v1", "configmaps", "ConfigMap", "V1ConfigMap"),
    Kind("", "v1", "secrets", "Secret", "V1Secret"),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", "V1ServiceAccount"),
    Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", "V1PersistentVolumeClaim"),
    Kind("", "v1", "events", "Event", "CoreV1Event"),
    Kind("batch", "v1", "jobs", "Job", "V1Job", subresources=("status",)),
    Kind("rbac.authorization.k8s.io", "v1", "roles", "Role", "V1Role"),
    Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", "V1RoleBinding"),
)
BY_PATH = {(k.group, k.version, k.plural): k for k in KINDS}
BY_PLURAL = {k.plural: k for k in KINDS}

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet


def now_rfc3339(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class ApiError(Exception):
    """An answer the API server gives as a `Status` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        kind: Kind | None = None,
        name: str = "",
        causes: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details: dict[str, Any] = {}
        if kind is not None:
            self.details = {"name": name, "group": kind.group, "kind": kind.plural}
        if causes:
            self.details["causes"] = causes

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found', kind=kind, name=name)


def invalid(kind: Kind, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; causes are (reason, field, message)."""
    text = ", ".join(f"{f}: {m}" for _, f, m in causes)
    return ApiError(
        422,
        "Invalid",
        f'{kind.kind}.{kind.group or "core"} "{name}" is invalid: {text}'.replace(".core", ""),
        kind=kind,
        name=name,
        causes=[{"reason": r, "field": f, "message": m} for r, f, m in causes],
    )


# --- selectors ----------------------------------------------------------------------


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


_SET_REQ = re.compile(r"^(\S+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ_REQ = re.compile(r"^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$")


def label_matcher(text: str) -> Callable[[dict[str, str]], bool]:
    """A label selector (`a=b,c!=d,e in (f,g),!h,i`) -> a predicate; 400 if malformed."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for req in _split_selector(text or ""):
        set_req = _SET_REQ.match(req)
        eq_req = _EQ_REQ.match(req)
        if set_req:
            key, op, values = set_req.group(1), set_req.group(2), set_req.group(3)
            allowed = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                tests.append(lambda labels, k=key, a=allowed: labels.get(k) in a)
            else:
                tests.append(lambda labels, k=key, a=allowed: labels.get(k) not in a)
        elif eq_req:
            key, op, value = eq_req.groups()
            if op == "!=":
                tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif re.match(r"^!\s*[A-Za-z0-9./_-]+$", req):
            key = req[1:].strip()
            tests.append(lambda labels, k=key: k not in labels)
        elif re.match(r"^[A-Za-z0-9./_-]+$", req):
            tests.append(lambda labels, k=req: k in labels)
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {req!r}")
    return lambda labels: all(t(labels) for t in tests)


def field_matcher(text: str) -> Callable[[dict[str, Any]], bool]:
    """A field selector over dotted paths (`involvedObject.name=x,status.phase!=Failed`)."""
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for req in _split_selector(text or ""):
        found = _EQ_REQ.match(req)
        if not found:
            raise ApiError(400, "BadRequest", f"invalid field selector: {req!r}")
        path, op, value = found.groups()

        def get(obj: dict[str, Any], p: str = path) -> str:
            cur: Any = obj
            for part in p.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            return "" if cur is None else str(cur)

        if op == "!=":
            tests.append(lambda obj, g=get, v=value: g(obj) != v)
        else:
            tests.append(lambda obj, g=get, v=value: g(obj) == v)
    return lambda obj: all(t(obj) for t in tests)


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector object (matchLabels, matchExpressions) against labels."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or ())
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# --- merge patch ----------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch (used for merge and, for the fields the fake serves,
    strategic merge: every list the backend patches is replaced whole)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# --- the store ------------------------------------------------------------------------


class Store:
    """Objects per (plural, namespace, name); one lock; a condition the controllers wait on."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.revision = 1
        self.deleted: list[dict[str, Any]] = []  # every object removed, for leftovers checks
        for ns in ("default", "kube-system"):
            self.create(BY_PLURAL["namespaces"], "", {"metadata": {"name": ns}})

    # --- reads --------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            found = self.objects.get((kind.plural, namespace if kind.namespaced else "", name))
            if found is None:
                raise not_found(kind, name)
            return copy.deepcopy(found)

    def find(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.get(kind, namespace, name)
        except ApiError:
            return None

    def list(
        self,
        kind: Kind,
        namespace: str | None,
        labels: str = "",
        fields: str = "",
    ) -> list[dict[str, Any]]:
        label_ok, field_ok = label_matcher(labels), field_matcher(fields)
        with self.lock:
            out = [
                copy.deepcopy(obj)
                for (plural, ns, _), obj in sorted(self.objects.items())
                if plural == kind.plural
                and (namespace is None or ns == namespace)
                and label_ok(obj["metadata"].get("labels") or {})
                and field_ok(obj)
            ]
        return out

    def iter_kind(self, kind: Kind) -> Iterator[dict[str, Any]]:
        yield from self.list(kind, None)

    # --- writes -------------------------------------------------------------------

    def _bump(self, obj: dict[str, Any]) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self.changed.notify_all()

    def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            if kind.namespaced:
                if meta.get("namespace") not in (None, "", namespace):
                    raise ApiError(
                        400,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace "
                        "sent on the request",
                    )
                if (
                    kind.plural != "namespaces"
                    and ("namespaces", "", namespace) not in self.objects
                ):
                    raise not_found(BY_PLURAL["namespaces"], namespace)
                meta["namespace"] = namespace
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(
                    _CHARS[b % len(_CHARS)] for b in uuid.uuid4().bytes[:5]
                )
            name = meta.get("name") or ""
            if not name:
                raise invalid(
                    kind,
                    "",
                    [
                        (
                            "FieldValueRequired",
                            "metadata.name",
                            "Required value: name or generateName",
                        )
                    ],
                )
            key = (kind.plural, namespace if kind.namespaced else "", name)
            if key in self.objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{kind.qualified} "{name}" already exists',
                    kind=kind,
                    name=name,
                )
            obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
            apply_defaults(kind, obj)
            validate(kind, obj, None)
            admit(self, kind, obj)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if kind.plural in ("jobs", "pods"):
                meta["generation"] = 1
            after_create_defaults(kind, obj)
            self.objects[key] = obj
            self._bump(obj)
            return copy.deepcopy(obj)

    def replace(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        subresource: str = "",
        check_version: bool = True,
    ) -> dict[str, Any]:
        """PUT semantics: the whole object (or only its status for the status subresource)."""
        with self.lock:
            key = (kind.plural, namespace if kind.namespaced else "", name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(kind, name)
            sent_version = (body.get("metadata") or {}).get("resourceVersion")
            if (
                check_version
                and sent_version
                and sent_version != current["metadata"].get("resourceVersion")
            ):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and "
                    "try again",
                    kind=kind,
                    name=name,
                )
            new = copy.deepcopy(current)
            if subresource == "status":
                new["status"] = copy.deepcopy(body.get("status") or {})
            else:
                status = new.get("status")
                new = copy.deepcopy(body)
                new.setdefault("metadata", {})
                for keep in ("uid", "creationTimestamp", "namespace", "name", "generation"):
                    if keep in current["metadata"]:
                        new["metadata"][keep] = current["metadata"][keep]
                for keep in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                    if keep in current["metadata"]:
                        new["metadata"][keep] = current["metadata"][keep]
                new["apiVersion"], new["kind"] = kind.api_version, kind.kind
                if status is not None:
                    new["status"] = status
                apply_defaults(kind, new)
                validate(kind, new, current)
                if kind.plural == "secrets":
                    _fold_string_data(new)
                if new.get("spec") != current.get("spec"):
                    new["metadata"]["generation"] = (
                        int(current["metadata"].get("generation", 1)) + 1
                    )
            self.objects[key] = new
            if (
                new["metadata"].get("deletionTimestamp")
                and not new["metadata"].get("finalizers")
                and kind.plural != "pods"
            ):
                self._drop(key)
            else:
                self._bump(new)
            return copy.deepcopy(new)

    def update(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        change: Callable[[dict[str, Any]], None],
        *,
        subresource: str = "",
    ) -> dict[str, Any]:
        """Read, change in place, write back (the controllers' way to write)."""
        with self.lock:
            obj = self.get(kind, namespace, name)
            change(obj)
            return self.replace(
                kind, namespace, name, obj, subresource=subresource, check_version=False
            )

    def _drop(self, key: tuple[str, str, str]) -> None:
        obj = self.objects.pop(key)
        self.deleted.append(obj)
        self.revision += 1
        self.changed.notify_all()

    def remove(self, kind: Kind, namespace: str, name: str) -> None:
        """Gone for good (after finalizers and grace periods)."""
        with self.lock:
            key = (kind.plural, namespace if kind.namespaced else "", name)
            if key in self.objects:
                self._drop(key)

    def mark_deleted(
        self, kind: Kind, namespace: str, name: str, *, grace: int | None, finalizer: str = ""
    ) -> dict[str, Any]:
        """Start a deletion: a deletionTimestamp (and optionally a finalizer) first."""
        with self.lock:
            key = (kind.plural, namespace if kind.namespaced else "", name)
            obj = self.objects.get(key)
            if obj is None:
                raise not_found(kind, name)
            meta = obj["metadata"]
            meta.setdefault("deletionTimestamp", now_rfc3339())
            if grace is not None:
                meta["deletionGracePeriodSeconds"] = grace
            if finalizer and finalizer not in meta.setdefault("finalizers", []):
                meta["finalizers"].append(finalizer)
            self._bump(obj)
            return copy.deepcopy(obj)

    def wait_changed(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait(timeout)


# --- defaults, validation, admission -------------------------------------------------------


def apply_defaults(kind: Kind, obj: dict[str, Any]) -> None:
    if kind.plural == "jobs":
        spec = obj.setdefault("spec", {})
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", spec["parallelism"] if spec.get("completionMode") else 1)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault(
            "backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
        )
        spec.setdefault(
            "podReplacementPolicy",
            "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed",
        )
        _pod_spec_defaults(spec.setdefault("template", {}).setdefault("spec", {}))
    elif kind.plural == "pods":
        _pod_spec_defaults(obj.setdefault("spec", {}))
    elif kind.plural == "secrets":
        obj.setdefault("type", "Opaque")
    elif kind.plural == "persistentvolumeclaims":
        obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")


def _pod_spec_defaults(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")


def after_create_defaults(kind: Kind, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    if kind.plural == "jobs":
        spec = obj["spec"]
        labels = {
            "batch.kubernetes.io/controller-uid": meta["uid"],
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"],
            "job-name": meta["name"],
        }
        if not spec.get("manualSelector"):
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}}
        template_meta = spec["template"].setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
        obj["status"] = {}
    elif kind.plural == "pods":
        obj["status"] = {"phase": "Pending", "qosClass": _qos(obj["spec"])}
    elif kind.plural == "secrets":
        _fold_string_data(obj)
    elif kind.plural == "serviceaccounts":
        pass
    elif kind.plural == "namespaces":
        obj["status"] = {"phase": "Active"}
    elif kind.plural == "persistentvolumeclaims":
        obj["status"] = {"phase": "Pending"}  # as the API server's defaults: never unset


def _qos(spec: dict[str, Any]) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if resources and all(
        r.get("limits") and r.get("limits") == r.get("requests") for r in resources
    ):
        return "Guaranteed"
    return "Burstable" if any(r for r in resources) else "BestEffort"


def _fold_string_data(obj: dict[str, Any]) -> None:
    """The API server writes stringData into data and never returns stringData."""
    string_data = obj.pop("stringData", None) or {}
    data = obj.setdefault("data", {}) or {}
    for k, v in string_data.items():
        data[k] = base64.b64encode(v.encode()).decode()
    obj["data"] = data


def validate(kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """The API server's own semantic checks the backend's objects are subject to."""
    meta = obj["metadata"]
    name = meta.get("name", "")
    causes: list[tuple[str, str, str]] = []
    pattern = _DNS_LABEL if kind.plural in ("namespaces",) else _DNS_SUBDOMAIN
    if kind.plural not in ("roles", "rolebindings", "events") and (
        not pattern.match(name) or len(name) > 253
    ):
        causes.append(
            (
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        )
    if kind.plural == "jobs" and len(name) > 63:
        causes.append(("FieldValueInvalid", "metadata.name", "must be no more than 63 characters"))
    for key, value in (meta.get("labels") or {}).items():
        label = key.rsplit("/", 1)[-1]
        if not _LABEL_NAME.match(label) or len(label) > 63:
            causes.append(("FieldValueInvalid", "metadata.labels", f'Invalid value: "{key}"'))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.labels",
                    f'Invalid value: "{value}": a valid label must be an empty string or '
                    "consist of alphanumeric characters, '-', '_' or '.', and must start "
                    "and end with an alphanumeric character (at most 63 characters)",
                )
            )
    if kind.plural == "jobs":
        causes += _job_causes(obj, old)
    elif kind.plural == "pods":
        causes += _pod_spec_causes(obj.get("spec") or {}, "spec")
        if old is not None and _pod_spec_frozen(old) != _pod_spec_frozen(obj):
            causes.append(
                (
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: pod updates may not change fields other than image, "
                    "activeDeadlineSeconds, tolerations",
                )
            )
    elif kind.plural in ("configmaps", "secrets"):
        for field_name in ("data", "binaryData", "stringData"):
            for key in obj.get(field_name) or {}:
                if not _CONFIG_KEY.match(key):
                    causes.append(
                        (
                            "FieldValueInvalid",
                            f"{field_name}[{key}]",
                            "a valid config key must consist of alphanumeric characters, "
                            "'-', '_' or '.'",
                        )
                    )
        if (
            old is not None
            and old.get("immutable")
            and (
                old.get("data") != obj.get("data") or old.get("binaryData") != obj.get("binaryData")
            )
        ):
            causes.append(
                (
                    "FieldValueForbidden",
                    "data",
                    "Forbidden: field is immutable when `immutable` is set",
                )
            )
    elif kind.plural == "persistentvolumeclaims":
        spec = obj.get("spec") or {}
        if not spec.get("accessModes"):
            causes.append(
                (
                    "FieldValueRequired",
                    "spec.accessModes",
                    "Required value: at least 1 access mode is required",
                )
            )
        for mode in spec.get("accessModes") or []:
            if mode not in ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"):
                causes.append(
                    ("FieldValueNotSupported", "spec.accessModes", f'Unsupported value: "{mode}"')
                )
        if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
            causes.append(("FieldValueRequired", "spec.resources[storage]", "Required value"))
        if old is not None and (old.get("spec") or {}).get("accessModes") != spec.get(
            "accessModes"
        ):
            causes.append(
                (
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests",
                )
            )
    elif kind.plural == "roles":
        for i, rule in enumerate(obj.get("rules") or []):
            if not rule.get("verbs"):
                causes.append(
                    (
                        "FieldValueRequired",
                        f"rules[{i}].verbs",
                        "Required value: verbs must contain at least one value",
                    )
                )
            if rule.get("apiGroups") is None and not rule.get("nonResourceURLs"):
                causes.append(
                    (
                        "FieldValueRequired",
                        f"rules[{i}].apiGroups",
                        "Required value: resource rules must supply at least one api group",
                    )
                )
    elif kind.plural == "rolebindings":
        ref = obj.get("roleRef") or {}
        if ref.get("kind") not in ("Role", "ClusterRole"):
            causes.append(
                (
                    "FieldValueNotSupported",
                    "roleRef.kind",
                    f'Unsupported value: "{ref.get("kind")}"',
                )
            )
        if old is not None and old.get("roleRef") != obj.get("roleRef"):
            causes.append(("FieldValueInvalid", "roleRef", "Invalid value: cannot change roleRef"))
        for i, subject in enumerate(obj.get("subjects") or []):
            if subject.get("kind") == "ServiceAccount" and not subject.get("namespace"):
                causes.append(("FieldValueRequired", f"subjects[{i}].namespace", "Required value"))
    if causes:
        raise invalid(kind, name, causes)


def _pod_spec_frozen(pod: dict[str, Any]) -> Any:
    spec = copy.deepcopy(pod.get("spec") or {})
    spec.pop("nodeName", None)
    spec.pop("tolerations", None)
    spec.pop("activeDeadlineSeconds", None)
    for c in spec.get("containers") or []:
        c.pop("image", None)
    return spec


def _job_causes(obj: dict[str, Any], old: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    spec = obj.get("spec") or {}
    causes: list[tuple[str, str, str]] = []
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    restart = pod_spec.get("restartPolicy")
    if restart not in ("Never", "OnFailure"):
        causes.append(
            (
                "FieldValueNotSupported",
                "spec.template.spec.restartPolicy",
                f'Unsupported value: "{restart}": supported values: "OnFailure", "Never"',
            )
        )
    if spec.get("completionMode") not in ("NonIndexed", "Indexed"):
        causes.append(("FieldValueNotSupported", "spec.completionMode", "Unsupported value"))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        causes.append(
            (
                "FieldValueRequired",
                "spec.completions",
                "Required value: when completion mode is Indexed",
            )
        )
    for f in (
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ):
        value = spec.get(f)
        if value is not None and value < (1 if f == "activeDeadlineSeconds" else 0):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"spec.{f}",
                    f"Invalid value: {value}: must be greater than or equal to 0",
                )
            )
    if spec.get("backoffLimitPerIndex") is not None and spec.get("completionMode") != "Indexed":
        causes.append(
            ("FieldValueInvalid", "spec.backoffLimitPerIndex", "requires indexed completion mode")
        )
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        causes.append(
            (
                "FieldValueRequired",
                "spec.backoffLimitPerIndex",
                "Required value: when maxFailedIndexes is specified",
            )
        )
    policy = spec.get("podFailurePolicy")
    if policy:
        if restart != "Never":
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.podFailurePolicy",
                    'Invalid value: only "Never" is supported when podFailurePolicy is specified',
                )
            )
        for i, rule in enumerate(policy.get("rules") or []):
            action = rule.get("action")
            if action not in ("FailJob", "FailIndex", "Ignore", "Count"):
                causes.append(
                    (
                        "FieldValueNotSupported",
                        f"spec.podFailurePolicy.rules[{i}].action",
                        f'Unsupported value: "{action}"',
                    )
                )
            if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"spec.podFailurePolicy.rules[{i}].action",
                        "requires the backoffLimitPerIndex to be set",
                    )
                )
            if bool(rule.get("onExitCodes")) == bool(rule.get("onPodConditions")):
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"spec.podFailurePolicy.rules[{i}]",
                        "specifying one of OnExitCodes and OnPodConditions is required",
                    )
                )
            codes = rule.get("onExitCodes") or {}
            if codes and codes.get("operator") not in ("In", "NotIn"):
                causes.append(
                    (
                        "FieldValueNotSupported",
                        f"spec.podFailurePolicy.rules[{i}].onExitCodes.operator",
                        "Unsupported value",
                    )
                )
            if codes and codes.get("operator") == "In" and 0 in (codes.get("values") or []):
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"spec.podFailurePolicy.rules[{i}].onExitCodes.values",
                        "must not be 0 for the In operator",
                    )
                )
        if spec.get("podReplacementPolicy") != "Failed":
            causes.append(
                (
                    "FieldValueNotSupported",
                    "spec.podReplacementPolicy",
                    "must be Failed when podFailurePolicy is used",
                )
            )
    causes += _pod_spec_causes(pod_spec, "spec.template.spec")
    if old is not None:
        old_spec = old.get("spec") or {}
        for f in (
            "completions",
            "completionMode",
            "backoffLimitPerIndex",
            "podFailurePolicy",
            "selector",
        ):
            if f in ("completions",) and spec.get(f) == old_spec.get(f):
                continue
            if spec.get(f) != old_spec.get(f) and f != "completions":
                causes.append(("FieldValueInvalid", f"spec.{f}", "field is immutable"))
        old_template = copy.deepcopy(old_spec.get("template"))
        if old_template != spec.get("template") and not (
            old_spec.get("suspend") and spec.get("suspend")
        ):
            causes.append(("FieldValueInvalid", "spec.template", "field is immutable"))
    return causes


def _pod_spec_causes(spec: dict[str, Any], path: str) -> list[tuple[str, str, str]]:
    causes: list[tuple[str, str, str]] = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(("FieldValueRequired", f"{path}.containers", "Required value"))
    names: set[str] = set()
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    for i, c in enumerate(containers):
        where = f"{path}.containers[{i}]"
        if c.get("name") in names:
            causes.append(
                ("FieldValueDuplicate", f"{where}.name", f'Duplicate value: "{c.get("name")}"')
            )
        names.add(c.get("name"))
        if not c.get("image"):
            causes.append(("FieldValueRequired", f"{where}.image", "Required value"))
        for j, env in enumerate(c.get("env") or []):
            if not _ENV_NAME.match(env.get("name") or ""):
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"{where}.env[{j}].name",
                        "a valid environment variable name must consist of alphabetic "
                        "characters, digits, '_', '-', or '.'",
                    )
                )
            source = env.get("valueFrom") or {}
            set_sources = [k for k, v in source.items() if v is not None]
            if env.get("value") not in (None, "") and set_sources:
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"{where}.env[{j}].valueFrom",
                        "may not be specified when `value` is not empty",
                    )
                )
            if source and len(set_sources) != 1:
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"{where}.env[{j}].valueFrom",
                        "may not have more than one field specified at a time",
                    )
                )
        for j, mount in enumerate(c.get("volumeMounts") or []):
            if mount.get("name") not in volumes:
                causes.append(
                    (
                        "FieldValueNotFound",
                        f"{where}.volumeMounts[{j}].name",
                        f'Not found: "{mount.get("name")}"',
                    )
                )
            if not str(mount.get("mountPath", "")).startswith("/"):
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"{where}.volumeMounts[{j}].mountPath",
                        "must be an absolute path",
                    )
                )
        resources = c.get("resources") or {}
        for res, limit in (resources.get("limits") or {}).items():
            request = (resources.get("requests") or {}).get(res)
            if request is not None and quantity(request) > quantity(limit):
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"{where}.resources.requests",
                        f"Invalid value: must be less than or equal to {res} limit of {limit}",
                    )
                )
        if "nvidia.com/gpu" in (resources.get("requests") or {}) and (
            resources.get("requests") or {}
        ).get("nvidia.com/gpu") != (resources.get("limits") or {}).get("nvidia.com/gpu"):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{where}.resources.requests[nvidia.com/gpu]",
                    "must be equal to nvidia.com/gpu limit",
                )
            )
    for i, t in enumerate(spec.get("tolerations") or []):
        if t.get("operator", "Equal") not in ("Equal", "Exists"):
            causes.append(
                ("FieldValueNotSupported", f"{path}.tolerations[{i}].operator", "Unsupported value")
            )
        if t.get("effect") not in (None, "", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            causes.append(
                ("FieldValueNotSupported", f"{path}.tolerations[{i}].effect", "Unsupported value")
            )
    return causes


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SUFFIX = {
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def quantity(value: Any) -> float:
    """A resource quantity (`500m`, `32Gi`, `8`) as a number; 422 when malformed."""
    if isinstance(value, (int, float)):
        return float(value)
    found = _QUANTITY.match(str(value))
    if not found:
        raise ApiError(
            422, "Invalid", f"quantities must match the regular expression '{_QUANTITY.pattern}'"
        )
    return float(found.group(1)) * _SUFFIX.get(found.group(2) or "", 1.0)


def admit(store: Store, kind: Kind, obj: dict[str, Any]) -> None:
    """Admission: Pod Security on a labelled namespace (the PodSecurity plugin), then a
    pod's service account must exist (the ServiceAccount plugin)."""
    if kind.plural != "pods":
        return
    namespace = obj["metadata"]["namespace"]
    found = store.find(BY_PLURAL["namespaces"], "", namespace) or {}
    labels = (found.get("metadata") or {}).get("labels") or {}
    level = labels.get(podsecurity.ENFORCE_LABEL, "privileged")
    check = podsecurity.LEVELS.get(level)
    failures = check(obj["spec"]) if check else []
    if failures:
        name = obj["metadata"].get("name") or obj["metadata"].get("generateName", "")
        version = labels.get(podsecurity.VERSION_LABEL, "")
        raise ApiError(
            403,
            "Forbidden",
            podsecurity.forbidden_message(name, level, version, failures),
            kind=kind,
            name=obj["metadata"].get("name", ""),
        )
    account = obj["spec"].get("serviceAccountName") or "default"
    if account == "default":
        return  # every namespace has one
    if store.find(BY_PLURAL["serviceaccounts"], namespace, account) is None:
        raise ApiError(
            403,
            "Forbidden",
            f'pods "{obj["metadata"].get("name") or obj["metadata"].get("generateName", "")}" is '
            f"forbidden: error looking up service account {namespace}/{account}: "
            f'serviceaccount "{account}" not found',
            kind=kind,
            name=obj["metadata"].get("name", ""),
        )


def decode_body(kind: Kind, body: Any, field_validation: str) -> tuple[dict[str, Any], list[str]]:
    """Strict decoding by the client's model class; returns the body and warnings."""
    decoded = schema.decode(body, kind.model)
    prefix = f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
    if decoded.type_errors:
        raise ApiError(400, "BadRequest", prefix + decoded.type_errors[0])
    warnings = [f'unknown field "{u}"' for u in decoded.unknown]
    if decoded.unknown and field_validation == "Strict":
        raise ApiError(
            400,
            "BadRequest",
            prefix + "strict decoding error: " + ", ".join(warnings),
        )
    if decoded.missing:
        name = ((decoded.body.get("metadata") or {}).get("name")) or ""
        raise invalid(
            kind, name, [("FieldValueRequired", m, "Required value") for m in decoded.missing]
        )
    return decoded.body, warnings if field_validation != "Ignore" else []
