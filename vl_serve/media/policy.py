"""What a media fetch may reach: the fetch policy, URL and address checks, a guarded resolver.

Only public addresses are allowed unless ``media.allowed_networks`` /
``media.allowed_private_domains`` open others. IPv6 forms that embed an IPv4 address (mapped,
NAT64, 6to4, Teredo, compatible) are judged by that address too. Host names are resolved by
:class:`GuardedResolver`, which drops refused addresses; aiohttp connects to exactly the addresses
it returned (no second lookup: DNS rebinding cannot swap in another address). IP literals, which
aiohttp never resolves, are checked by :func:`check_url` before connecting.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from vl_serve.media.errors import Refusal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*$", re.IGNORECASE)


@dataclass(frozen=True)
class FetchPolicy:
    """The ``media`` settings a fetch obeys: hosts and networks, redirects, timeouts, caps."""

    allowed_domains: frozenset[str] | None
    private_domains: frozenset[str]
    networks: tuple[IPNetwork, ...]
    max_redirects: int
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    max_concurrent: int
    max_per_host: int

    @classmethod
    def from_config(cls, media: Any) -> FetchPolicy:
        return cls(
            allowed_domains=(
                None if media.allowed_domains is None else frozenset(media.allowed_domains)
            ),
            private_domains=frozenset(media.allowed_private_domains),
            networks=tuple(ipaddress.ip_network(n, strict=False) for n in media.allowed_networks),
            max_redirects=media.max_redirects,
            connect_timeout=media.connect_timeout_s,
            read_timeout=media.read_timeout_s,
            total_timeout=media.fetch_timeout_s,
            max_concurrent=media.max_concurrent_fetches,
            max_per_host=media.max_fetches_per_host,
        )


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo, compatible)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if int(ip) >> 32 == 0:  # deprecated IPv4-compatible ::a.b.c.d (also :: and ::1)
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(address: str | IPAddress, networks: tuple[IPNetwork, ...] = ()) -> bool:
    """Whether a fetch may connect to this address.

    Public (globally routable, not multicast) addresses are allowed; loopback, private,
    link-local (169.254.169.254 included), multicast, unspecified, reserved, shared and
    documentation ranges, and IPv6 forms embedding any of these, only when listed in ``networks``.
    """
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = embedded_ipv4(ip)
        if v4 is not None:
            candidates.append(v4)
    for net in networks:
        if any(c.version == net.version and c in net for c in candidates):
            return True
    return all(c.is_global and not c.is_multicast for c in candidates)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_url(url: str | URL, policy: FetchPolicy) -> tuple[URL, str]:
    """Check an http(s) URL before connecting; returns (the parsed URL to request, its host).

    The URL is parsed once, with yarl, and that same object is what aiohttp requests: the host
    checked here is the host connected to (no parser differential).
    """
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        port = parsed.port  # raises on a bad port
        raw_host = parsed.raw_host  # what aiohttp resolves and connects to (IDNA-encoded)
        shown_host = parsed.host
    except (ValueError, TypeError):
        raise Refusal("the URL is not valid") from None
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refusal("only http, https, data and file URLs are accepted")
    if parsed.user is not None or parsed.password is not None:
        raise Refusal("URLs with a user name or password are not accepted")
    host = (raw_host or "").lower().rstrip(".")
    if not host or not parsed.is_absolute():
        raise Refusal("the URL has no host")
    del port
    names = {host, (shown_host or "").lower().rstrip(".")}
    if policy.allowed_domains is not None and not names & policy.allowed_domains:
        raise Refusal(
            "the URL's host is not one of the allowed media hosts (media.allowed_domains)",
            code="media_host_not_allowed",
        )
    ip = _ip_literal(host)
    if ip is None and _NUMERIC_HOST.match(host):
        # 127.1, 2130706433, 0x7f.1, 0177.0.0.1: legacy forms a resolver maps onto addresses.
        raise Refusal("IP addresses in URLs must be written in canonical dotted-decimal form")
    if ip is not None and not address_allowed(ip, policy.networks):
        raise address_refusal()
    return parsed, host


def address_refusal() -> Refusal:
    """The refusal for a URL, a resolved name or a peer at an address the policy does not allow."""
    return Refusal(
        "the URL points to a loopback, private, link-local or otherwise non-public address, "
        "which media fetches may not reach (open it with media.allowed_networks)",
        code="media_host_not_allowed",
    )


class AddressRefused(Exception):
    """Raised from the resolver; deliberately not an OSError so aiohttp passes it through."""


class GuardedResolver(AbstractResolver):
    """A resolver that only ever returns addresses the policy allows.

    aiohttp connects to the addresses a resolver returns, so filtering here closes DNS rebinding:
    the checked address is the connected address.
    """

    def __init__(self, policy: FetchPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        infos = await self._inner.resolve(host, port, family)
        if host.lower().rstrip(".") in self._policy.private_domains:
            return infos
        allowed = [info for info in infos if address_allowed(info["host"], self._policy.networks)]
        if not allowed:
            raise AddressRefused()
        return allowed

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
