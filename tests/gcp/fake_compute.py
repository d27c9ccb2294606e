"""Compute Engine methods of the fake (handlers registered on import).

Images, regions, networks, firewalls, instance templates, instances and the
three kinds of operations. Managed instance groups are in fake_mig.py. Each
handler gets the validated request (`Call`) and returns the API's JSON answer,
or raises ApiError as the API would (404 notFound, 409 alreadyExists, ...).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from tests.gcp.discovery import ApiError
from tests.gcp.fake_gcp import (
    COMPUTE,
    PROJECT,
    REGIONS,
    ZONES,
    Call,
    FakeGcp,
    handles,
    new_id,
    now_rfc3339,
)

SHUTDOWN_GRACE = 0.5  # seconds an instance shows STOPPING before it is gone


def link(path: str) -> str:
    return f"{COMPUTE}projects/{PROJECT}/{path}"


def short(url: str) -> str:
    """The last path part of a resource URL (or the name itself)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def matches(expression: str, item: dict[str, Any]) -> bool:
    """The small part of the list filter syntax the callers here use:
    `field = "value"` / `field != "value"` (exact) and `field eq "regex"` /
    `field ne "regex"` (a full match) terms, dotted fields (`labels.key`), joined by
    AND or by spaces, each optionally in parentheses; anything else is refused."""
    text = expression.strip()
    if not text:
        return True
    term = r'\(?\s*([\w.-]+)\s+(!=|=|eq|ne)\s+"([^"]*)"\s*\)?'
    terms = re.findall(term, text)
    rest = re.sub(term, "", text)
    if rest.replace("AND", "").strip():
        raise ApiError(400, f"Invalid list filter expression: {expression!r}", "invalid")
    for name, op, want in terms:
        value: Any = item
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        got = "" if value is None else str(value)
        same = bool(re.fullmatch(want, got)) if op in ("eq", "ne") else got == want
        if same != (op in ("=", "eq")):
            return False
    return True


def listing(kind: str, items: list[dict[str, Any]], call: Call) -> dict[str, Any]:
    chosen = [i for i in items if matches(call.q("filter"), i)]
    return {"kind": kind, "id": kind, "items": chosen, "selfLink": COMPUTE}


def zone_of(call: Call) -> str:
    zone = call.path["zone"]
    if zone not in ZONES:
        raise ApiError(404, f"The resource 'projects/{PROJECT}/zones/{zone}' was not found")
    return zone


def region_of(call: Call) -> str:
    region = call.path["region"]
    if region not in REGIONS:
        raise ApiError(400, f"Invalid value for field 'region': '{region}'. Unknown region.")
    return region


# --- images, regions, networks ----------------------------------------------------------


@handles("compute.images.getFromFamily")
def image_from_family(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    found = gcp.images.get(f"{call.path['project']}/{call.path['family']}")
    if not found:
        raise ApiError(
            404,
            f"The resource 'projects/{call.path['project']}/global/images/family/"
            f"{call.path['family']}' was not found",
        )
    return found[-1]


@handles("compute.images.get")
def image_get(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    for images in gcp.images.values():
        for image in images:
            if image["name"] == call.path["image"] and call.path["project"] in image["selfLink"]:
                return image
    raise ApiError(
        404,
        f"The resource 'projects/{call.path['project']}/global/images/"
        f"{call.path['image']}' was not found",
    )


@handles("compute.regions.get")
def region_get(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    gcp.project(call)
    region = region_of(call)
    return {
        "kind": "compute#region",
        "id": new_id(),
        "name": region,
        "status": "UP",
        "zones": [link(f"zones/{z}") for z in REGIONS[region]],
        "selfLink": link(f"regions/{region}"),
    }


@handles("compute.networks.get")
def network_get(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    gcp.project(call)
    name = call.path["network"]
    if name not in gcp.networks:
        raise ApiError(
            404, f"The resource 'projects/{PROJECT}/global/networks/{name}' was not found"
        )
    return {
        "kind": "compute#network",
        "id": gcp.networks[name]["id"],
        "name": name,
        "autoCreateSubnetworks": True,
        "selfLink": link(f"global/networks/{name}"),
    }


# --- firewalls --------------------------------------------------------------------------


@handles("compute.firewalls.insert")
def firewall_insert(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    gcp.project(call)
    body = dict(call.body)
    name = body.get("name", "")
    if name in gcp.firewalls:
        raise ApiError(
            409, f"The resource 'projects/{PROJECT}/global/firewalls/{name}' already exists"
        )
    network = short(body.get("network") or "default")
    if network not in gcp.networks:
        raise ApiError(400, f"Invalid value for field 'resource.network': '{body.get('network')}'")
    body.update(
        kind="compute#firewall",
        id=new_id(),
        creationTimestamp=now_rfc3339(),
        network=link(f"global/networks/{network}"),
        selfLink=link(f"global/firewalls/{name}"),
    )
    body.setdefault("priority", 1000)
    body.setdefault("direction", "INGRESS")
    gcp.firewalls[name] = body
    return gcp.operation("insert", body["selfLink"])


@handles("compute.firewalls.get")
def firewall_get(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    found = gcp.firewalls.get(call.path["firewall"])
    if found is None:
        raise ApiError(
            404,
            f"The resource 'projects/{PROJECT}/global/firewalls/"
            f"{call.path['firewall']}' was not found",
        )
    return found


@handles("compute.firewalls.list")
def firewall_list(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    gcp.project(call)
    return listing("compute#firewallList", list(gcp.firewalls.values()), call)


@handles("compute.firewalls.delete")
def firewall_delete(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    found = firewall_get(gcp, call)
    del gcp.firewalls[found["name"]]
    return gcp.operation("delete", found["selfLink"])


# --- instance templates -----------------------------------------------------------------


@handles("compute.instanceTemplates.insert")
def template_insert(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    gcp.project(call)
    body = copy.deepcopy(call.body)
    name = body.get("name", "")
    if name in gcp.templates:
        raise ApiError(
            409, f"The resource 'projects/{PROJECT}/global/instanceTemplates/{name}' already exists"
        )
    props = body.get("properties") or {}
    if not props.get("machineType"):
        raise ApiError(400, "Invalid value for field 'resource.properties.machineType': ''")
    for disk in props.get("disks") or []:
        source = (disk.get("initializeParams") or {}).get("sourceImage", "")
        if disk.get("boot") and not _image_exists(gcp, source):
            raise ApiError(
                400,
                f"Invalid value for field 'resource.properties.disks[0]."
                f"initializeParams.sourceImage': '{source}'. The referenced image "
                "resource cannot be found.",
            )
    body.update(
        kind="compute#instanceTemplate",
        id=new_id(),
        creationTimestamp=now_rfc3339(),
        selfLink=link(f"global/instanceTemplates/{name}"),
    )
    gcp.templates[name] = body
    return gcp.operation("insert", body["selfLink"])


def _image_exists(gcp: FakeGcp, source: str) -> bool:
    m = re.search(r"projects/([^/]+)/global/images/(family/)?([^/]+)$", source)
    if not m:
        return False
    project, family, name = m.groups()
    if family:
        return f"{project}/{name}" in gcp.images
    return any(i["name"] == name for images in gcp.images.values() for i in images)


@handles("compute.instanceTemplates.get")
def template_get(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    found = gcp.templates.get(call.path["instanceTemplate"])
    if found is None:
        raise ApiError(
            404,
            f"The resource 'projects/{PROJECT}/global/instanceTemplates/"
            f"{call.path['instanceTemplate']}' was not found",
        )
    return found


@handles("compute.instanceTemplates.list")
def template_list(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    gcp.project(call)
    return listing("compute#instanceTemplateList", list(gcp.templates.values()), call)


@handles("compute.instanceTemplates.delete")
def template_delete(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    found = template_get(gcp, call)
    users = [g.name for g in gcp.groups.values() if short(g.template) == found["name"]]
    if users:
        raise ApiError(
            400,
            f"The instance_template resource '{found['selfLink']}' is already being used by "
            f"'{users[0]}'",
            "resourceInUseByAnotherResource",
        )
    del gcp.templates[found["name"]]
    return gcp.operation("delete", found["selfLink"])


# --- instances --------------------------------------------------------------------------


def instance_api(gcp: FakeGcp, zone: str, name: str) -> dict[str, Any]:
    found = gcp.instances.get(f"{zone}/{name}")
    if found is None:
        raise ApiError(
            404, f"The resource 'projects/{PROJECT}/zones/{zone}/instances/{name}' was not found"
        )
    return found


@handles("compute.instances.get")
def instance_get(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    zone = zone_of(call)
    return public(instance_api(gcp, zone, call.path["instance"]))


@handles("compute.instances.list")
def instance_list(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    zone = zone_of(call)
    items = [public(i) for k, i in sorted(gcp.instances.items()) if k.startswith(f"{zone}/")]
    return listing("compute#instanceList", items, call)


@handles("compute.instances.delete")
def instance_delete(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    zone = zone_of(call)
    found = instance_api(gcp, zone, call.path["instance"])
    from tests.gcp.fake_mig import begin_delete

    begin_delete(gcp, found, "delete")
    return gcp.operation("delete", found["selfLink"], zone=zone)


def public(instance: dict[str, Any]) -> dict[str, Any]:
    """The instance as the API shows it (without the fake's own bookkeeping)."""
    return {k: v for k, v in instance.items() if not k.startswith("_")}


# --- operations -------------------------------------------------------------------------


def _operation(gcp: FakeGcp, call: Call, scope: str) -> dict[str, Any]:
    key = f"{COMPUTE}projects/{PROJECT}/{scope}/operations/{call.path['operation']}"
    found = gcp.operations.get(key)
    if found is None:
        raise ApiError(
            404,
            f"The resource 'projects/{PROJECT}/{scope}/operations/"
            f"{call.path['operation']}' was not found",
        )
    return found


@handles("compute.zoneOperations.get")
@handles("compute.zoneOperations.wait")
def zone_operation(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    return _operation(gcp, call, f"zones/{zone_of(call)}")


@handles("compute.regionOperations.get")
@handles("compute.regionOperations.wait")
def region_operation(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    return _operation(gcp, call, f"regions/{region_of(call)}")


@handles("compute.globalOperations.get")
@handles("compute.globalOperations.wait")
def global_operation(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    return _operation(gcp, call, "global")


@handles("compute.globalOperations.aggregatedList")
def operation_aggregated_list(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    """Every zone's and region's operations, filtered, keyed by scope (as GCE answers)."""
    scopes: dict[str, dict[str, Any]] = {}
    for op in gcp.operations.values():
        if not matches(call.q("filter"), op):
            continue
        where = op.get("zone") or op.get("region") or ""
        scope = where.split(f"projects/{PROJECT}/", 1)[1] if where else "global"
        scopes.setdefault(scope, {"operations": []})["operations"].append(op)
    return {
        "kind": "compute#operationAggregatedList",
        "id": f"projects/{PROJECT}/aggregated/operations",
        "items": scopes,
        "selfLink": f"{COMPUTE}projects/{PROJECT}/aggregated/operations",
    }


@handles("compute.zoneOperations.list")
def zone_operation_list(gcp: FakeGcp, call: Call) -> dict[str, Any]:
    zone = zone_of(call)
    scope = f"{COMPUTE}projects/{PROJECT}/zones/{zone}/operations/"
    items = [op for key, op in gcp.operations.items() if key.startswith(scope)]
    return listing("compute#operationList", items, call)
