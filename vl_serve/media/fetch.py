"""Getting the bytes of one media item without letting a request turn the server against others.

Three sources, each bounded before anything is decoded:

* ``http(s)://``: only public addresses unless ``media.allowed_networks`` /
  ``media.allowed_private_domains`` open others. Host names are resolved by a resolver that drops
  refused addresses, and aiohttp connects to exactly the addresses it returned (no second lookup:
  DNS rebinding cannot swap in another address); IP literals, which aiohttp never resolves, are
  checked before connecting, and the connected peer is checked again. Redirects are refused unless
  ``media.max_redirects`` allows some, and then each hop is checked like the first URL. The body is
  read in chunks and refused as soon as it passes the byte limit (``Content-Length`` is checked
  first); compressed transfer encodings are refused so no decompression bomb is inflated.
  Connect, read and total timeouts apply, and concurrent fetches are capped per process and per
  host, so a slow host fails its own request without holding everyone's slots.
* ``file://`` and bare paths: only below ``media.allowed_local_media_path``; ``.``/``..``
  segments (also percent-encoded) and ``file://host/`` are refused, symlinks are resolved and the
  opened file is checked again through ``/proc/self/fd``, and only regular files are read.
* ``data:`` URLs: base64 only; the decoded size is computed from the text length and refused
  before decoding.

Refusals are :class:`Refusal` exceptions with a short reason naming the limit; they never carry a
URL, a server path, an exception's text or a traceback.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import ipaddress
import os
import re
import socket
import stat
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*$", re.IGNORECASE)
_USER_AGENT = "vl-serve-media-fetcher"
# aiohttp >= 3.11 has a DNS-specific subclass; older ones report a gaierror inside.
_DNS_ERROR: type[Exception] = getattr(aiohttp, "ClientConnectorDNSError", socket.gaierror)
# aiohttp >= 3.10 tells the read (sock_read) and connect (sock_connect) timeouts apart.
_SOCKET_TIMEOUT: type[Exception] = getattr(
    aiohttp, "SocketTimeoutError", aiohttp.ServerTimeoutError
)
_CONNECT_TIMEOUT: type[Exception] | tuple[()] = getattr(aiohttp, "ConnectionTimeoutError", ())


class Refusal(Exception):
    """One media item refused; the caller adds where in the request it is."""

    def __init__(self, reason: str, status: int = 400, code: str = "invalid_media") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code


def mib(n: int) -> str:
    """A byte count as a short human figure (10 MB, 512 KB)."""
    if n >= 1024 * 1024:
        value, unit = n / (1024 * 1024), "MB"
    elif n >= 1024:
        value, unit = n / 1024, "KB"
    else:
        return f"{n} bytes"
    return f"{value:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def too_large(what: str, limit: int, field_name: str) -> Refusal:
    return Refusal(
        f"the {what} is larger than the {mib(limit)} limit (media.{field_name})",
        status=413,
        code="media_too_large",
    )


# --------------------------------------------------------------------------------------------
# Address policy


@dataclass(frozen=True)
class FetchPolicy:
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
        raise _address_refusal()
    return parsed, host


def _address_refusal() -> Refusal:
    return Refusal(
        "the URL points to a loopback, private, link-local or otherwise non-public address, "
        "which media fetches may not reach (open it with media.allowed_networks)",
        code="media_host_not_allowed",
    )


class _AddressRefused(Exception):
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
            raise _AddressRefused()
        return allowed

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


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
    except _AddressRefused:
        raise _address_refusal() from None
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
        raise _address_refusal()


# --------------------------------------------------------------------------------------------
# Local files


def local_path(url_or_path: str, *, is_url: bool) -> str:
    """The decoded path of a file:// URL (or a bare path), refusing host names and dot segments."""
    if is_url:
        try:
            parts = urlsplit(url_or_path)
        except ValueError:
            raise Refusal("the file URL is not valid") from None
        if parts.netloc:
            raise Refusal("file URLs must not name a host; write file:///path/in/the/folder")
        if parts.query or parts.fragment or "?" in url_or_path or "#" in url_or_path:
            raise Refusal("file URLs must not have a query or fragment")
        raw = parts.path
    else:
        raw = url_or_path
    try:
        path = unquote(raw, errors="strict") if is_url else raw
    except UnicodeDecodeError:
        raise Refusal("the file path is not valid UTF-8") from None
    if not path or "\x00" in path or "\\" in path:
        raise Refusal("the file path is not valid")
    if any(seg in (".", "..") for seg in path.split("/")):
        raise Refusal("file paths must not contain '.' or '..' segments")
    return path


def read_local(path: str, root: str | None, max_bytes: int, size_field: str) -> bytes:
    """Read a file below ``root`` (blocking: run it in a thread)."""
    if root is None:
        raise Refusal(
            "local files are not accepted (media.allowed_local_media_path is not set)",
            code="media_host_not_allowed",
        )
    outside = Refusal(
        "the file is outside the allowed folder (media.allowed_local_media_path)",
        code="media_host_not_allowed",
    )
    root_real = os.path.realpath(root)
    candidate = path if path.startswith("/") else os.path.join(root_real, path)
    real = os.path.realpath(candidate)
    if real == root_real or os.path.commonpath([real, root_real]) != root_real:
        raise outside
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except FileNotFoundError:
        raise Refusal("no such file in the allowed folder") from None
    except OSError:
        raise Refusal("the file cannot be read") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refusal("the path is not a regular file")
        proc = f"/proc/self/fd/{fd}"
        if os.path.exists(proc):
            opened = os.readlink(proc)
            if os.path.commonpath([opened, root_real]) != root_real:
                raise outside
        if st.st_size > max_bytes:
            raise too_large("file", max_bytes, size_field)
        buf = bytearray()
        while True:
            chunk = os.read(fd, min(_CHUNK * 16, max_bytes + 1 - len(buf)))
            if not chunk:
                break
            buf += chunk
            if len(buf) > max_bytes:
                raise too_large("file", max_bytes, size_field)
        return bytes(buf)
    except OSError:
        raise Refusal("the file cannot be read") from None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# data: URLs

_WHITESPACE = {ord(c): None for c in " \t\r\n"}


def parse_data_url(url: str) -> tuple[str, int]:
    """(media type, offset of the base64 text) of a ``data:`` URL; nothing is copied or decoded."""
    comma = url.find(",", 5, 5 + 1024)
    if comma < 0:
        raise Refusal("the data URL has no ',' before its data")
    header = url[5:comma]
    if header[-7:].lower() == ";base64" and header.count(";") == 1:  # the usual form
        return header[:-7].strip().lower(), comma + 1
    params = [p.strip().lower() for p in header.split(";")]
    if "base64" not in params[1:]:
        raise Refusal("only base64 data URLs are accepted (data:<type>;base64,<data>)")
    return params[0], comma + 1


def base64_fits(text: str, max_bytes: int, start: int = 0, end: int | None = None) -> bool:
    """Whether base64 text (whitespace aside) decodes to at most ``max_bytes``, without decoding."""
    end = len(text) if end is None else end
    bound = (max_bytes + 2) // 3 * 4  # base64 characters of max_bytes bytes
    if end - start <= bound:
        return True
    spaces = sum(text.count(c, start, end) for c in " \t\r\n")
    return end - start - spaces <= bound


def decode_base64(
    text: str, max_bytes: int, size_field: str, what: str = "item", start: int = 0
) -> bytes:
    """Decode ``text[start:]``, refusing by its length before copying or decoding anything."""
    if not base64_fits(text, max_bytes, start):
        raise too_large(f"decoded base64 {what}", max_bytes, size_field)
    payload = text[start:] if start else text
    if any(c in payload for c in " \t\r\n"):
        payload = payload.translate(_WHITESPACE)
    try:
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise Refusal("the data URL is not valid base64") from None
    if len(data) > max_bytes:
        raise too_large(f"decoded base64 {what}", max_bytes, size_field)
    return data
