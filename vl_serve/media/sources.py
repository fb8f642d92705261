"""Getting the bytes of one media item from its source, each source bounded before decoding.

* ``http(s)://``: downloaded by :mod:`vl_serve.media.fetch` under the fetch policy.
* ``file://`` URLs, and bare paths in qwen-vl-utils forms (absolute, or relative to the folder:
  ``./clip.mp4``): only below ``media.allowed_local_media_path``; ``..`` segments, ``.`` segments
  in URLs (also percent-encoded) and ``file://host/`` are refused, symlinks are resolved and the
  opened file is checked again through ``/proc/self/fd``, and only regular files are read.
* ``data:`` URLs: base64 only; the decoded size is computed from the text length and refused
  before decoding.

Checked bytes go back to vLLM as ``data:`` URLs (:func:`data_url`), so vLLM itself never fetches
a user's URL or reads a user's path.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from typing import Any
from urllib.parse import unquote, urlsplit

from vl_serve.media.errors import Refusal, too_large
from vl_serve.media.fetch import fetch_http
from vl_serve.media.settings import Context
from vl_serve.media.workers import in_thread
from vl_serve.server import metrics

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_READ_CHUNK = 1024 * 1024
_WHITESPACE = {ord(c): None for c in " \t\r\n"}


async def load(
    source: Any, ctx: Context, *, bare_paths: bool, max_bytes: int, size_field: str
) -> tuple[bytes, str]:
    """(bytes, declared media type or '') of one URL / path, within ``max_bytes``."""
    if not isinstance(source, str) or not source[:64].strip():
        raise Refusal("the media item has no URL")
    if source[:5].lower() != "data:":  # data: URLs stay uncopied until their size is known
        source = source.strip()
    lower = source[:8].lower()
    if lower.startswith("data:"):
        mime, start = parse_data_url(source)
        data = await in_thread(decode_base64, source, max_bytes, size_field, "item", start)
        return data, mime
    if lower.startswith(("http://", "https://")):
        with metrics.MEDIA_FETCH_SECONDS.time():
            data = await fetch_http(source, ctx.policy, max_bytes, size_field)
        metrics.MEDIA_FETCH_BYTES.observe(len(data))
        return data, ""
    if lower.startswith("file:"):
        path = local_path(source, is_url=True)
    elif bare_paths and not _SCHEME.match(source):
        path = local_path(source, is_url=False)
    else:
        raise Refusal("only http, https, data and file URLs are accepted")
    root = ctx.cfg.allowed_local_media_path
    return await in_thread(read_local, path, root, max_bytes, size_field), ""


def source_kind(source: Any) -> str:
    """The ``source`` label of an item in ``vl_serve:media_items_total``."""
    if isinstance(source, list):
        return "frames"
    if not isinstance(source, str):
        return "other"
    lower = source[:8].lstrip().lower()
    if lower.startswith("data:"):
        return "data"
    if lower.startswith(("http://", "https://")):
        return "http"
    return "file"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def data_url(mime: str, data: bytes) -> str:
    """``data:<mime>;base64,...`` of ``data`` (large ones encoded in a worker thread)."""
    encoded = await in_thread(b64, data) if len(data) > 256 * 1024 else b64(data)
    return f"data:{mime};base64,{encoded}"


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
    if not is_url:
        # qwen-vl-utils' plain paths: "./clip.mp4" is relative to the allowed folder.
        path = "/".join(seg for seg in path.split("/") if seg != ".") if "." in path else path
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
            chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - len(buf)))
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
