"""Who the client is, and whether it spoke HTTPS, when a load balancer stands in between.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are headers anyone can send. They are believed
only from a peer (``REMOTE_ADDR``, the socket's address) inside ``TRUSTED_PROXY_CIDRS``
(empty by default: nobody; behind an AWS load balancer, the VPC's range). Then:

- the client is the rightmost address of ``X-Forwarded-For`` that is not in those ranges
  (each trusted proxy appends the address it saw, so everything left of the first untrusted
  one is the client's own claim); ``REMOTE_ADDR`` becomes that address, so that the metrics
  allow-list, the rate limits and the logs see the real client;
- ``X-Forwarded-Proto`` is kept, and Django's ``SECURE_PROXY_SSL_HEADER`` (set only when
  proxies are configured) reads it for HTTPS detection.

From any other peer ``X-Forwarded-Proto`` is dropped, so Django never believes it, and in
every case ``X-Forwarded-For`` is removed once read: nothing downstream (DRF's throttles read
it when present) can trust the raw header.

Why not a library: django-xff trusts a fixed *number* of proxies and never checks their
addresses; django-ipware / python-ipware pick an address from a list of headers (prefix
matching, no CIDR ranges) and leave ``REMOTE_ADDR`` and the HTTPS header alone. This is
the whole rule, in one middleware placed first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from django.conf import settings
from django.http import HttpRequest, HttpResponse

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks_parse(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """``TRUSTED_PROXY_CIDRS`` as networks; raises ValueError on an entry that is not one."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def address_parse(value: str) -> Address | None:
    """An address as a proxy writes it (``10.0.0.5``, ``2001:db8::1``, ``[2001:db8::1]:443``,
    ``10.0.0.5:443``), IPv4-mapped IPv6 as IPv4; None when it is not an address."""
    text = value.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _inside(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(*, peer: str, forwarded_for: str, networks: Sequence[Network]) -> str:
    """The client's address: ``peer`` itself unless it is a trusted proxy; then, walking
    ``forwarded_for`` from the right, the first address that is not a trusted proxy.

    If every address is a trusted proxy, the leftmost one is the client (an internal caller,
    e.g. a health check through the load balancer). An entry that is not an address stops
    the walk at the last trusted address before it.
    """
    peer_address = address_parse(peer)
    if peer_address is None or not _inside(peer_address, networks):
        return peer
    client = peer_address
    for entry in reversed(forwarded_for.split(",") if forwarded_for else []):
        address = address_parse(entry)
        if address is None:
            break
        client = address
        if not _inside(address, networks):
            break
    return str(client)


class TrustedProxyMiddleware:
    """Applies the module's rule to ``request.META``. Must come first in MIDDLEWARE."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.networks = networks_parse(settings.TRUSTED_PROXY_CIDRS)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        forwarded_for = meta.pop("HTTP_X_FORWARDED_FOR", "")
        peer = meta.get("REMOTE_ADDR", "")
        peer_address = address_parse(peer) if self.networks else None
        if peer_address is not None and _inside(peer_address, self.networks):
            meta["REMOTE_ADDR"] = client_address(
                peer=peer, forwarded_for=forwarded_for, networks=self.networks
            )
        else:
            meta.pop("HTTP_X_FORWARDED_PROTO", None)
        return self.get_response(request)
