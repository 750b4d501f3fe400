"""Names of the devices ovsbr creates: readable when they fit, always <= 15."""

from __future__ import annotations

import hashlib

from ovsbr.model import IFNAMSIZ


def ifname(prefix: str, base: str, suffix: str = "") -> str:
    """``prefix + base + suffix`` if it fits the kernel's limit.

    Otherwise ``base`` is cut and a 4-hex digest of the whole base appended,
    so two long names that share a beginning still get different devices.
    """
    name = f"{prefix}{base}{suffix}"
    if len(name) <= IFNAMSIZ:
        return name
    digest = hashlib.sha1(base.encode()).hexdigest()[:4]
    room = IFNAMSIZ - len(prefix) - len(suffix) - len(digest)
    return f"{prefix}{base[:max(room, 0)]}{digest}{suffix}"
