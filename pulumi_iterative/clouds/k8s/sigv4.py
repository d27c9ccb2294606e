"""AWS Signature Version 4 for one S3 session key, both ways (stdlib only).

The transfer pod's `rclone serve s3` accepts only requests signed with the session's
key. The API server's pod proxy drops the `Authorization` header (the caller's
bearer token lives there), so a signature reaches the pod only in the query string:
the workstation's forwarder checks the header signature of its own rclone (`verify`),
then signs the request again as a presigned URL (`presign`) for the pod.

Canonical forms follow the S3 flavour of SigV4: the path is not normalized; a
header-signed request's canonical path is the path as sent, a presigned one's is
the decoded path URI-encoded once (what the server recomputes from what it got).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

ALGORITHM = "AWS4-HMAC-SHA256"
REGION = "us-east-1"  # rclone's default for a provider "Other"; serve s3 accepts any
SERVICE = "s3"
UNSIGNED = "UNSIGNED-PAYLOAD"
CLOCK_SKEW = 15 * 60  # seconds a header signature's date may be off, as on S3
PRESIGN_EXPIRES = 300


class SignatureError(Exception):
    """A request whose signature is missing, malformed, stale or wrong."""


@dataclass(frozen=True)
class SessionKey:
    """An access key pair made for one transfer session; never stored."""

    access_key: str
    secret_key: str = field(repr=False)

    @classmethod
    def new(cls) -> SessionKey:
        alphabet = string.ascii_letters + string.digits
        return cls(
            "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20)),
            "".join(secrets.choice(alphabet) for _ in range(40)),
        )

    def serve_value(self) -> str:
        """`rclone serve s3 --auth-key` as RCLONE_AUTH_KEY: one CSV field, quoted (the
        pair holds a comma)."""
        return f'"{self.access_key},{self.secret_key}"'


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """AWS URI encoding: everything but unreserved characters (and '/' in paths)."""
    return urllib.parse.quote(text, safe="-_.~/" if keep_slash else "-_.~")


def canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    encoded = sorted(
        (uri_encode(k, keep_slash=False), uri_encode(v, keep_slash=False)) for k, v in pairs
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_headers(headers: Mapping[str, str], signed: Sequence[str]) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    lines = []
    for name in signed:
        if name not in lower:
            raise SignatureError(f"signed header {name!r} is missing")
        lines.append(f"{name}:{' '.join(lower[name].split())}\n")
    return "".join(lines)


def _signature(
    key: SessionKey,
    stamp: str,
    region: str,
    request: Sequence[str],
) -> str:
    """The signature of a canonical request (method, path, query, headers, signed
    header names, payload hash) at `stamp` (YYYYMMDD'T'HHMMSS'Z')."""
    scope = f"{stamp[:8]}/{region}/{SERVICE}/aws4_request"
    digest = hashlib.sha256("\n".join(request).encode()).hexdigest()
    to_sign = "\n".join((ALGORITHM, stamp, scope, digest))
    signing = ("AWS4" + key.secret_key).encode()
    for part in (stamp[:8], region, SERVICE, "aws4_request"):
        signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
    return hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()


def verify(
    key: SessionKey,
    method: str,
    target: str,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
) -> None:
    """Check a header-signed request (`target`: path and query as sent); SignatureError
    if it is not signed with this key, now."""
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    algorithm, _, rest = auth.partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError("not signed with AWS Signature Version 4")
    fields = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
    credential = fields.get("Credential", "").split("/")
    if len(credential) != 5 or credential[0] != key.access_key:
        raise SignatureError("unknown access key")
    lower = {k.lower(): v for k, v in headers.items()}
    stamp = lower.get("x-amz-date", "")
    try:
        when = time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%SZ")) - time.timezone
    except ValueError as exc:
        raise SignatureError("no valid X-Amz-Date") from exc
    if abs((time.time() if now is None else now) - when) > CLOCK_SKEW:
        raise SignatureError("the request's date is too far from now")
    if credential[1] != stamp[:8]:
        raise SignatureError("the credential's date is not the request's")
    signed = fields.get("SignedHeaders", "").split(";")
    if "host" not in signed:
        raise SignatureError("the host header is not signed")
    path, _, query = target.partition("?")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    request = (
        method,
        path,
        canonical_query(pairs),
        _canonical_headers(lower, signed),
        ";".join(signed),
        lower.get("x-amz-content-sha256", UNSIGNED),
    )
    expected = _signature(key, stamp, credential[2], request)
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        raise SignatureError("the signature does not match")


def presign(
    key: SessionKey,
    method: str,
    host: str,
    target: str,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    expires: int = PRESIGN_EXPIRES,
) -> str:
    """`target` (path and query) with a query-string signature added, for a request
    sent to `host` with these headers; every x-amz-* header among them is signed (the
    server refuses unsigned ones)."""
    path, _, query = target.partition("?")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    lower = {k.lower(): v for k, v in headers.items()}
    lower["host"] = host
    signed = sorted({"host", *(k for k in lower if k.startswith("x-amz-"))})
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    pairs += [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{key.access_key}/{stamp[:8]}/{REGION}/{SERVICE}/aws4_request"),
        ("X-Amz-Date", stamp),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", ";".join(signed)),
    ]
    canonical_path = uri_encode(urllib.parse.unquote(path), keep_slash=True)
    request = (
        method,
        canonical_path,
        canonical_query(pairs),
        _canonical_headers(lower, signed),
        ";".join(signed),
        UNSIGNED,
    )
    pairs.append(("X-Amz-Signature", _signature(key, stamp, REGION, request)))
    return f"{canonical_path}?{canonical_query(pairs)}"
