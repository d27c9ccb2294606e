"""A bucket's rclone on-the-fly remote, `:<backend>:<bucket>/<prefix>`, and object keys.

Every cloud's names module spells its own remote with these (`:s3:`, `:gcs:`,
`:azureblob:`), so building one and reading it back cannot drift apart.
"""

from __future__ import annotations


def root(backend: str, bucket: str, prefix: str) -> str:
    """`:<backend>:<bucket>/<prefix>`, or `:<backend>:<bucket>` for no prefix."""
    return f":{backend}:{bucket}/{prefix}" if prefix else f":{backend}:{bucket}"


def split(root: str, backend: str, kind: str) -> tuple[str, str]:
    """`:<backend>:bucket/pre/fix` -> ("bucket", "pre/fix"); ValueError naming `kind`
    (say "an S3 remote") for a root of another backend."""
    head = f":{backend}:"
    if not root.startswith(head):
        raise ValueError(f"{root!r} is not {kind}")
    bucket, _, prefix = root[len(head) :].partition("/")
    return bucket, prefix.strip("/")


def key(prefix: str, *parts: str) -> str:
    """The object key of parts under prefix: joined by "/", empty parts left out."""
    return "/".join(p.strip("/") for p in (prefix, *parts) if p)
