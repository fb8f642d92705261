"""Where media bytes may come from: local files under one folder, public addresses only."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.media_hosts import MediaHost
from tests.helpers.media_requests import (
    LOOPBACK,
    MB,
    PNG,
    chat,
    decode_data_url,
    image_part,
    part_of,
    refused,
    run,
    settings,
)
from vl_serve.config import MediaConfig
from vl_serve.media import policy as media_policy
from vl_serve.media.errors import Refusal
from vl_serve.media.policy import FetchPolicy, GuardedResolver, address_allowed

# ------------------------------------------------------------------------------------------
# Local files


@pytest.fixture()
def media_root(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "img.png").write_bytes(PNG)
    (root / "sub" / "img.png").write_bytes(PNG)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "secret.png").write_bytes(PNG)
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "linkdir").symlink_to(outside)
    (root / "media2").mkdir()
    os.mkfifo(root / "fifo.png")
    (tmp_path / "media-evil").mkdir()
    (tmp_path / "media-evil" / "x.png").write_bytes(PNG)
    return root


def test_file_urls(media_root: Path) -> None:
    st = settings(allowed_local_media_path=str(media_root))
    r = str(media_root)
    good = [f"file://{r}/img.png", f"file://{r}/sub/img.png", f"file:{r}/img.png"]
    for url in good:
        body = chat(image_part(url))
        run(body, st)
        assert decode_data_url(part_of(body)["image_url"]["url"]) == PNG, url
    bad = [
        (f"file://{r}/../secret/secret.png", "'..' segments"),
        (f"file://{r}/%2e%2e/secret/secret.png", "'..' segments"),
        (f"file://{r}/sub/%2E%2E/%2E%2E/secret/secret.png", "'..' segments"),
        (f"file://{r}/sub/..%2F..%2Fsecret/secret.png", "'..' segments"),
        (f"file://{r}/./img.png", "'..' segments"),
        (f"file://{r}/link.png", "outside the allowed folder"),
        (f"file://{r}/linkdir/secret.png", "outside the allowed folder"),
        (f"file://{r}-evil/x.png", "outside the allowed folder"),
        ("file:///etc/passwd", "outside the allowed folder"),
        (f"file://{r}", "outside the allowed folder"),
        (f"file://{r}/media2", "not a regular file"),
        (f"file://{r}/fifo.png", "not a regular file"),
        (f"file://{r}/missing.png", "no such file"),
        (f"file://localhost{r}/img.png", "must not name a host"),
        (f"file://evil.example.com{r}/img.png", "must not name a host"),
        (f"file://{r}/img.png%00.txt", "not valid"),
        (f"file://{r}/img.png?x=1", "query"),
    ]
    for url, fragment in bad:
        t0 = time.monotonic()
        err = refused(chat(image_part(url)), st)
        assert time.monotonic() - t0 < 2, url  # a FIFO must not block the read
        assert fragment in err.message, (url, err.message)
        assert r not in err.message


def test_file_size_limit(media_root: Path) -> None:
    (media_root / "big.bin").write_bytes(b"\0" * (2 * MB))
    st = settings(allowed_local_media_path=str(media_root), max_item_bytes=MB)
    err = refused(chat(image_part(f"file://{media_root}/big.bin")), st)
    assert err.status == 413 and "(media.max_item_bytes)" in err.message


# ------------------------------------------------------------------------------------------
# Address rules, resolver and DNS


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "198.18.0.1",
        "::",
        "::1",
        "fe80::1",
        "fe80::1%1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a00:1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::1",
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not address_allowed(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address)


def test_allowed_domains(server: MediaHost) -> None:
    body = chat(image_part(server.url("img.png")))
    run(body, settings(allowed_domains=["127.0.0.1"], **LOOPBACK))
    assert decode_data_url(part_of(body)["image_url"]["url"]) == PNG
    policy = FetchPolicy.from_config(MediaConfig(allowed_domains=["xn--e1afmkfd.xn--p1ai"]))
    assert media_policy.check_url("https://пример.рф/a.png", policy)[1] == "xn--e1afmkfd.xn--p1ai"
    with pytest.raises(Refusal):
        media_policy.check_url("https://example.com/a.png", policy)


def test_networks_open_addresses() -> None:
    nets = FetchPolicy.from_config(MediaConfig(allowed_networks=["10.0.0.0/8"])).networks
    assert address_allowed("10.9.9.9", nets)
    assert address_allowed("::ffff:10.9.9.9", nets)
    assert not address_allowed("11.0.0.1", ()) or address_allowed("11.0.0.1")
    assert not address_allowed("192.168.0.1", nets)
    assert not address_allowed("127.0.0.1", nets)


class FakeResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, Any]]:
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        pass


def test_resolver_drops_refused_addresses() -> None:
    fake = FakeResolver({"mixed.test": ["10.0.0.1", "93.184.215.14", "::1"], "priv.test": ["::1"]})
    policy = FetchPolicy.from_config(MediaConfig())
    resolver = GuardedResolver(policy, inner=fake)  # type: ignore[arg-type]
    answers = asyncio.run(resolver.resolve("mixed.test", 80))
    assert [a["host"] for a in answers] == ["93.184.215.14"]
    with pytest.raises(media_policy.AddressRefused):
        asyncio.run(resolver.resolve("priv.test", 80))
    policy = FetchPolicy.from_config(MediaConfig(allowed_private_domains=["priv.test"]))
    private_ok = GuardedResolver(policy, inner=fake)  # type: ignore[arg-type]
    assert asyncio.run(private_ok.resolve("priv.test", 80))[0]["host"] == "::1"


def test_connection_goes_to_the_checked_address(
    server: MediaHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name is resolved once, by the guarded resolver, and that answer is what gets connected.

    ``media.test`` exists only in the fake resolver: the fetch succeeds only because aiohttp
    connected to the address the guard returned, and is refused when that address is loopback
    and loopback is not allowed (the DNS-rebinding case: the name answers loopback at use time).
    """
    fake = FakeResolver({"media.test": ["127.0.0.1"]})
    monkeypatch.setattr(media_policy, "ThreadedResolver", lambda: fake)
    url = server.url("img.png", "media.test")
    err = refused(chat(image_part(url)), settings())
    assert "non-public address" in err.message
    body = chat(image_part(url))
    run(body, settings(allowed_networks=["127.0.0.1/32"]))
    assert decode_data_url(part_of(body)["image_url"]["url"]) == PNG
    body = chat(image_part(url))
    run(body, settings(allowed_private_domains=["media.test"]))
    assert decode_data_url(part_of(body)["image_url"]["url"]) == PNG
