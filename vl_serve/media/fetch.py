"""Downloading one http(s) media URL without letting a request turn the server against others.

The URL and every address are checked under :mod:`vl_serve.media.policy`, and the connected peer
is checked again. Redirects are refused unless ``media.max_redirects`` allows some, and then each
hop is checked like the first URL. The body is read in chunks and refused as soon as it passes
the byte limit (``Content-Length`` is checked first); compressed transfer encodings are refused so
no decompression bomb is inflated. Connect, read and total timeouts apply, and concurrent fetches
are capped per process and per host, so a slow host fails its own request without holding
everyone's slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from vl_serve.media.errors import Refusal, too_large
from vl_serve.media.policy import (
    AddressRefused,
    FetchPolicy,
    GuardedResolver,
    address_allowed,
    address_refusal,
    check_url,
)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_USER_AGENT = "vl-serve-media-fetcher"
# aiohttp >= 3.11 has a DNS-specific subclass; older ones report a gaierror inside.
_DNS_ERROR: type[Exception] = getattr(aiohttp, "ClientConnectorDNSError", socket.gaierror)
# aiohttp >= 3.10 tells the read (sock_read) and connect (sock_connect) timeouts apart.
_SOCKET_TIMEOUT: type[Exception] = getattr(
    aiohttp, "SocketTimeoutError", aiohttp.ServerTimeoutError
)
_CONNECT_TIMEOUT: type[Exception] | tuple[()] = getattr(aiohttp, "ConnectionTimeoutError", ())


# --------------------------------------------------------------------------------------------
# Concurrency caps: one set per event loop (asyncio primitives belong to one loop).


@dataclass
class _HostSlot:
    sem: asyncio.Semaphore
    users: int = 0


@dataclass
class _Slots:
    total: asyncio.Semaphore
    per_host_limit: int
    hosts: dict[str, _HostSlot] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        slot = self.hosts.get(host)
        if slot is None:
            slot = self.hosts[host] = _HostSlot(asyncio.Semaphore(self.per_host_limit))
        slot.users += 1
        try:
            # The host's own slot first: requests queued behind a slow host hold no global slot.
            async with slot.sem, self.total:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                self.hosts.pop(host, None)


_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, int], _Slots]] = (
    weakref.WeakKeyDictionary()
)


def _slots(policy: FetchPolicy) -> _Slots:
    loop = asyncio.get_running_loop()
    per_loop = _SLOTS.setdefault(loop, {})
    key = (policy.max_concurrent, policy.max_per_host)
    if key not in per_loop:
        per_loop[key] = _Slots(asyncio.Semaphore(policy.max_concurrent), policy.max_per_host)
    return per_loop[key]


# --------------------------------------------------------------------------------------------
# HTTP


def _session(policy: FetchPolicy) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy),
        use_dns_cache=False,
        force_close=True,
        limit=0,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=policy.connect_timeout, sock_read=policy.read_timeout
        ),
        auto_decompress=False,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
    )


async def fetch_http(url: str, policy: FetchPolicy, max_bytes: int, size_field: str) -> bytes:
    """Download one http(s) URL under the policy; at most ``max_bytes`` are ever held."""
    parsed, host = check_url(url, policy)
    try:
        async with asyncio.timeout(policy.total_timeout):
            async with _slots(policy).hold(host), _session(policy) as session:
                return await _fetch_following(session, parsed, host, policy, max_bytes, size_field)
    except TimeoutError as exc:  # aiohttp's socket timeouts are TimeoutErrors too: say which
        if isinstance(exc, _CONNECT_TIMEOUT):
            reason = (
                f"could not connect to the media host within {policy.connect_timeout:g} s "
                "(media.connect_timeout_s)"
            )
        elif isinstance(exc, _SOCKET_TIMEOUT):
            reason = (
                f"the media host sent nothing for {policy.read_timeout:g} s (media.read_timeout_s)"
            )
        else:
            reason = (
                f"the media host did not deliver within {policy.total_timeout:g} s "
                "(media.fetch_timeout_s)"
            )
        raise Refusal(reason, code="media_fetch_timeout") from None
    except AddressRefused:
        raise address_refusal() from None
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc, _DNS_ERROR) or isinstance(exc.os_error, socket.gaierror):
            reason = "the media host's name could not be resolved"
        else:
            reason = "could not connect to the media host"
        raise Refusal(reason, code="media_fetch_failed") from None
    except aiohttp.InvalidURL:
        raise Refusal("the URL is not valid") from None
    except (aiohttp.ClientError, OSError):
        raise Refusal("the media download failed", code="media_fetch_failed") from None


async def _fetch_following(
    session: aiohttp.ClientSession,
    url: URL,
    host: str,
    policy: FetchPolicy,
    max_bytes: int,
    size_field: str,
) -> bytes:
    current = url
    for hop in range(policy.max_redirects + 1):
        if hop:
            current, host = check_url(current, policy)
        async with session.get(current, allow_redirects=False) as resp:
            _check_peer(resp, host, policy)
            if resp.status in _REDIRECTS:
                location = resp.headers.get("Location")
                if policy.max_redirects == 0:
                    raise Refusal(
                        "the media URL redirects, and redirects are not followed "
                        "(media.max_redirects is 0)",
                        code="media_redirect_refused",
                    )
                if not location:
                    raise Refusal("the media host sent a redirect without a location")
                try:
                    current = current.join(URL(location))
                except (ValueError, TypeError):
                    raise Refusal("the media host sent a redirect to an invalid URL") from None
                continue
            if resp.status != 200:
                raise Refusal(
                    f"the media host answered HTTP {resp.status}", code="media_fetch_failed"
                )
            encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise Refusal(
                    "the media host sent a compressed body (Content-Encoding), which is not "
                    "accepted",
                    code="media_fetch_failed",
                )
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise too_large("download", max_bytes, size_field)
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(_CHUNK):
                if len(buf) + len(chunk) > max_bytes:
                    raise too_large("download", max_bytes, size_field)
                buf += chunk
            return bytes(buf)
    raise Refusal(
        f"the media URL redirects more than {policy.max_redirects} times (media.max_redirects)",
        code="media_redirect_refused",
    )


def _check_peer(resp: aiohttp.ClientResponse, host: str, policy: FetchPolicy) -> None:
    """Belt and braces: the socket really is connected to an allowed address."""
    if host in policy.private_domains:
        return
    conn = resp.connection
    transport = conn.transport if conn is not None else None
    peer = transport.get_extra_info("peername") if transport is not None else None
    if peer and not address_allowed(str(peer[0]), policy.networks):
        raise address_refusal()
