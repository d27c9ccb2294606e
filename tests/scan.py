"""Scanning what a cloud stores for secrets: every base64-looking string is decoded,
recursively (user data is base64, and so is the bootstrap's payload inside it)."""

from __future__ import annotations

import base64
import binascii
import re

B64 = re.compile(r"[A-Za-z0-9+/=_-]{16,}")


def texts(blob: str, depth: int = 0) -> list[str]:
    """blob plus every decodable base64 string in it, recursively."""
    out = [blob]
    if depth > 4:
        return out
    for candidate in set(B64.findall(blob)):
        padded = candidate + "=" * (-len(candidate) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(padded).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            if decoded.isprintable() or "\n" in decoded:
                out += texts(decoded, depth + 1)
            break
    return out


def leaked(blob: str, secrets: tuple[str, ...] | list[str]) -> list[str]:
    """The secrets found in blob or in anything base64-decoded from it."""
    every = "\n".join(texts(blob))
    return [s for s in secrets if s and s in every]
