"""URL policy of the adapters: download an image only from a public host, bounded in size and time.

A tool call comes from a model that is not trusted, and a URL in it could point at the machine's own
network (cloud metadata, an internal service). So downloads are off unless enabled, and then every
host is checked before the request and every connection, redirects included, after it connects,
against the address it actually reached. The one fetcher of the package: :func:`awares_tool.images.open_image` and the adapters both use it.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from awares_tool.errors import AwaresError, ImageSourceError
from awares_tool.images.limits import ImageLimits

__all__ = ["fetch_url", "check_public_host"]


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else f"{text[:n]}... ({len(text)} chars)"


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_public_host(host: str, port: int = 443) -> None:
    """Refuse a host that is, or resolves to, a private, loopback, link-local or reserved address.

    Raises:
        ImageSourceError: The host does not resolve, or any of its addresses is not public.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise ImageSourceError(f"cannot resolve host {host!r}: {e}") from e
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not _public(ip):
            raise ImageSourceError(
                f"refusing to download from {host!r}: it resolves to {ip}, a private, loopback, link-local or "
                "reserved address; only public hosts are allowed"
            )


def _check_peer(sock: socket.socket, host: str) -> None:
    ip = ipaddress.ip_address(str(sock.getpeername()[0]).split("%")[0])
    if not _public(ip):  # catches DNS rebinding between the check and the connection
        sock.close()
        raise ImageSourceError(f"refusing to download from {host!r}: connected to non-public address {ip}")


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _check_peer(self.sock, self.host)


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _check_peer(self.sock, self.host)


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_GuardedHTTPConnection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_GuardedHTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


def fetch_url(url: str, limits: ImageLimits) -> bytes:
    """Download ``url`` under ``limits``: only when allowed, only public hosts, bounded size and time.

    Every connection (redirects included) is checked against the address it actually reached, and
    proxies from the environment are ignored, so neither a redirect nor DNS rebinding can reach a
    private address. ``limits.url_timeout_s`` bounds the whole download, ``url_max_bytes`` its size.
    """
    if not limits.allow_urls:
        raise ImageSourceError(f"refusing to download {_short(url)!r}: URLs are off on this server (start it "
                               "with --allow-urls), so pass an image path under an allowed root instead")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageSourceError(f"unsupported URL {_short(url)!r}; only http(s) URLs with a host are allowed")
    check_public_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    cap = min(limits.url_max_bytes, limits.max_bytes)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _GuardedHTTPHandler(),
                                         _GuardedHTTPSHandler())
    deadline = time.monotonic() + limits.url_timeout_s
    buf = bytearray()
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "awares"}),
                         timeout=limits.url_timeout_s) as resp:
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise ImageSourceError(f"{_short(url)} declares {int(declared):,} bytes, over the {cap:,} limit")
            while chunk := resp.read(64 * 1024):
                buf += chunk
                if len(buf) > cap:
                    raise ImageSourceError(f"{_short(url)} is larger than the {cap:,}-byte download limit")
                if time.monotonic() > deadline:
                    raise ImageSourceError(f"{_short(url)} took longer than {limits.url_timeout_s} s to download")
    except AwaresError:
        raise
    except (OSError, ValueError, urllib.error.URLError) as e:
        reason = getattr(e, "reason", None)
        if isinstance(reason, AwaresError):  # our peer check, wrapped by urllib
            raise reason from e
        raise ImageSourceError(f"could not download {_short(url)}: {e}") from e
    return bytes(buf)
