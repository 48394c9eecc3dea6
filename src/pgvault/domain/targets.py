"""Where pgvault may connect and write on an API user's word: the servers it protects, the S3 endpoints it
writes to (``PGVAULT_ALLOWED_TARGETS``), and the folders of local destinations (``PGVAULT_LOCAL_ROOTS``).

Registering an instance or a plan makes the service itself open a connection or a folder, with its own
network position and rights: without bounds, anyone who may call the API can make pgvault reach into the
network it sits in (server-side request forgery) or create folders anywhere its user may. The host check
never resolves a name (no DNS lookup on the caller's behalf): an IP literal must lie in an allowed network,
a name must match an allowed name (``*.rds.aliyuncs.com`` matches any subdomain).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TargetPolicy:
    networks: tuple[Network, ...] = ()
    names: tuple[str, ...] = ()  # lower case; "*.example.com" or "db.example.com"

    @classmethod
    def parse(cls, text: str) -> TargetPolicy:
        """``"127.0.0.0/8, 10.1.0.0/16, *.rds.aliyuncs.com, db.internal"``; empty: any target. Raises
        ValueError naming an entry that is neither a network nor a host name."""
        networks: list[Network] = []
        names: list[str] = []
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry.lower()
            bare = name.removeprefix("*.")
            if not bare or not all(part.replace("-", "").isalnum() for part in bare.split(".")):
                raise ValueError(f"{entry!r} is neither a network (CIDR) nor a host name")
            names.append(name)
        return cls(tuple(networks), tuple(names))

    @property
    def open(self) -> bool:
        return not self.networks and not self.names

    def allows(self, host: str) -> bool:
        if self.open:
            return True
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            name = host.lower().rstrip(".")
            return any(name == n or (n.startswith("*.") and name.endswith(n[1:])) for n in self.names)
        return any(address in net for net in self.networks)

    def describe(self) -> str:
        return ", ".join([*(str(n) for n in self.networks), *self.names])


def within(path: Path, roots: tuple[Path, ...]) -> bool:
    """Whether ``path`` (absolute) is one of ``roots`` or below one, after resolving ``..`` and links."""
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in (r.resolve() for r in roots))
