"""Azure's Retail Prices API on loopback, strict from its public description.

    GET /api/retail/prices?api-version=2023-01-01-preview&meterRegion='primary'
        &$filter=<field> eq '<value>' and ...

answers `{"BillingCurrency": "USD", "CustomerEntityId": "Default",
"CustomerEntityType": "Retail", "Items": [...], "NextPageLink": <url or null>,
"Count": <items on this page>}`, `page_size` items a page, the next page's address
carrying `$skip` and the port as the real one does ("host:443"). Refused with 400,
as the real API would not understand them: an unknown api-version, a filter clause
other than `<field> eq '<value>'` joined by ` and ` (lower case, as OData has it), a
field the API does not filter on. Filter values are case-sensitive (2023-01-01-preview).
`priceType` filters the items' `type`. Every request is kept (`requests`), and
`down` makes it answer 503; `busy` answers that many requests 429 first.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

API_VERSIONS = ("2021-10-01-preview", "2023-01-01-preview")
# The fields the API documents as filterable (item field of the same name, but priceType).
FILTERABLE = (
    "armRegionName",
    "location",
    "meterId",
    "meterName",
    "productId",
    "skuId",
    "productName",
    "skuName",
    "serviceName",
    "serviceId",
    "serviceFamily",
    "priceType",
    "armSkuName",
)
_CLAUSE = re.compile(r"^(\w+) eq '([^']*)'$")
PATH = "/api/retail/prices"


def meter(
    size: str,
    region: str,
    price: float,
    *,
    sku_suffix: str = "",
    windows: bool = False,
    kind: str = "Consumption",
    since: str = "2024-01-01T00:00:00Z",
    primary: bool = True,
) -> dict[str, Any]:
    """One item as the API returns it (fields from its documented response)."""
    short = size.removeprefix("Standard_").replace("_", " ")
    series = "Virtual Machines Series" + (" Windows" if windows else "")
    return {
        "currencyCode": "USD",
        "tierMinimumUnits": 0.0,
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": region,
        "location": region,
        "effectiveStartDate": since,
        "meterId": f"meter-{size}-{region}-{sku_suffix or 'base'}-{windows}-{kind}",
        "meterName": short + sku_suffix,
        "productId": "DZH318Z0BQ4W",
        "skuId": "DZH318Z0BQ4W/00" + ("1" if windows else "0"),
        "productName": series,
        "skuName": short + sku_suffix,
        "serviceName": "Virtual Machines",
        "serviceId": "DZH313Z7MMC8",
        "serviceFamily": "Compute",
        "unitOfMeasure": "1 Hour",
        "type": kind,
        "isPrimaryMeterRegion": primary,
        "armSkuName": size,
    }


class BadRequest(Exception):
    pass


def parse_filter(text: str) -> dict[str, str]:
    """field -> value of a filter the fake understands (the real API's OData subset we
    use); BadRequest for anything else."""
    out: dict[str, str] = {}
    for clause in text.split(" and "):
        found = _CLAUSE.match(clause.strip())
        if not found:
            raise BadRequest(f"cannot parse filter clause {clause!r}")
        name, value = found.groups()
        if name not in FILTERABLE:
            raise BadRequest(f"cannot filter on {name!r}")
        out[name] = value
    return out


class FakeRetailPrices:
    def __init__(self, items: Iterable[Mapping[str, Any]], page_size: int = 2) -> None:
        self.items = [dict(i) for i in items]
        self.page_size = page_size
        self.requests: list[str] = []
        self.down = False
        self.busy = 0  # answer this many requests with 429 first (the API's throttling)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                status, body = fake.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{PATH}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        if self.down:
            return 503, {"Error": {"Code": "ServiceUnavailable", "Message": "try later"}}
        if self.busy:
            self.busy -= 1
            return 429, {"Error": {"Code": "TooManyRequests", "Message": "slow down"}}
        parts = urlsplit(path)
        if parts.path != PATH:
            return 404, {"Error": {"Code": "NotFound", "Message": parts.path}}
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        version = query.get("api-version")
        if version is not None and version not in API_VERSIONS:
            return 400, _error(f"unknown api-version {version!r}")
        try:
            wanted = parse_filter(query["$filter"]) if "$filter" in query else {}
            skip = int(query.get("$skip", "0"))
        except (BadRequest, ValueError) as exc:
            return 400, _error(str(exc))
        primary = query.get("meterRegion") == "'primary'"
        found = [
            i
            for i in self.items
            if all(i.get("type" if k == "priceType" else k) == v for k, v in wanted.items())
            and (i["isPrimaryMeterRegion"] or not primary)
        ]
        page = found[skip : skip + self.page_size]
        following = None
        if skip + self.page_size < len(found):
            host, port = self.server.server_address[:2]
            following = f"http://{host}:{port}{PATH}?" + urlencode(
                {**query, "$skip": str(skip + self.page_size)}
            )
        return 200, {
            "BillingCurrency": "USD",
            "CustomerEntityId": "Default",
            "CustomerEntityType": "Retail",
            "Items": page,
            "NextPageLink": following,
            "Count": len(page),
        }


def _error(message: str) -> dict[str, Any]:
    return {"Error": {"Code": "BadRequest", "Message": message}}
