"""Who is calling: the client's address, through the proxies the settings trust."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

import falcon

from provisioning.core.config import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in trusted)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(remote: str, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    """The caller's address: the connection's, unless that is a trusted proxy; then the
    nearest address in ``X-Forwarded-For`` that is not one (what a client writes there
    itself, to the left of it, is never believed)."""
    networks = _networks(trusted)
    if not forwarded_for or not _trusted(remote, networks):
        return remote
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else remote


def client_of(req: falcon.Request) -> str:
    return client_address(req.remote_addr or "", req.get_header("X-Forwarded-For"),
                          settings().trusted_proxies)
