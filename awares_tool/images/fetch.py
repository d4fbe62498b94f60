"""The one URL fetcher of the package: http(s) from public addresses only, bounded in size and time.

A URL often comes from something that is not trusted (a prompt, a model's tool call), and it could
point at the machine's own network: cloud metadata, an internal service, a port to probe. Every path
that downloads an image goes through :func:`fetch_url` (``open_image`` with ``allow_urls``, hence
``crop_on_demand``, and the adapters' ``ImageService``), and it guarantees:

* **Off unless enabled**: nothing is fetched unless ``ImageLimits.allow_urls`` is true.
* **http and https only, on every hop**: a redirect to any other scheme (``ftp:``, ``file:``, ...) is
  refused before anything is connected; at most :data:`MAX_REDIRECTS` redirects are followed.
* **Vetted before any packet**: on every hop the host is resolved once; if any of its addresses is
  private, loopback, link-local, multicast, reserved or unspecified (IPv4 embedded in IPv6 included),
  the hop is refused before a connection is attempted, with the same text whether or not something
  listens there. Otherwise the connection goes to a vetted address itself, never through a second
  resolution, so DNS rebinding cannot redirect it.
* **TLS verified against the URL's host**: an https hop connects to the vetted IP but sends the host
  name as SNI and checks the certificate and host name against it (the system's trust store).
* **No proxies**: proxy environment variables are ignored (a proxy would make its own connection).
* **One wall-clock deadline**: ``ImageLimits.url_timeout_s`` bounds the whole download: resolution,
  connection, TLS handshake, headers and body of every hop. Every socket operation is given only the
  time left, so a server that drips one byte at a time cannot hold a call past it.
* **Bounded size**: ``min(url_max_bytes, max_bytes)``, checked on ``Content-Length`` and while reading.
* **Typed errors**: a refusal or any transport failure (reset, truncated or malformed response, TLS
  error, timeout) is an :class:`~awares_tool.errors.ImageSourceError`; a size over the cap an
  :class:`~awares_tool.errors.ImageTooLargeError`.

Trusted deployments that must download from their own network (an internal image store) can list
those networks in ``ImageLimits.url_allow_networks`` (empty by default); nothing else is reachable.
Only ``GET`` is sent, without cookies or credentials (user info in a URL is ignored).
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import logging
import socket
import ssl
import string
import threading
import time
import urllib.parse
from typing import Any, Union

from awares_tool.errors import AwaresError, ImageSourceError
from awares_tool.images.limits import ImageLimits, _check_bytes

__all__ = ["fetch_url", "check_public_host", "MAX_REDIRECTS"]

logger = logging.getLogger(__name__)

#: Redirects followed before giving up (each hop is vetted like the first URL).
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else f"{text[:n]}... ({len(text)} chars)"


# ----------------------------------------------------------------------------- address policy
def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo), where there is one."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def _global_unicast(ip: IPAddress) -> bool:
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_unspecified
                                 or getattr(ip, "is_site_local", False))  # fec0::/10 is "global" in 3.11


def _public(ip: IPAddress) -> bool:
    """Whether ``ip`` is a globally routable unicast address (and so is any IPv4 address it embeds)."""
    v4 = _embedded_ipv4(ip)
    if v4 is not None and isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip in _NAT64):
        return _global_unicast(v4)  # the packets go to that IPv4 address
    if v4 is not None and not _global_unicast(v4):  # 6to4, Teredo: relayed to it
        return False
    return _global_unicast(ip)


def _allowed(ip: IPAddress, limits: ImageLimits) -> bool:
    if _public(ip):
        return True
    v4 = _embedded_ipv4(ip)
    return any(a in net for net in limits.url_allow_networks for a in (ip, v4) if a is not None)


class _DeadlinePassed(TimeoutError):
    """The download's wall-clock deadline has passed (a ``TimeoutError``, like a socket timeout)."""


class _Deadline:
    """One wall-clock deadline; :meth:`left` is the time every next blocking step may take."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed
        return left


def _getaddrinfo(host: str, port: int, deadline: _Deadline) -> list[Any]:
    """``socket.getaddrinfo`` within the deadline (the resolver has no timeout of its own, so a thread waits)."""
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    thread = threading.Thread(target=work, name="awares-resolve", daemon=True)
    thread.start()
    thread.join(deadline.left())
    if thread.is_alive():
        raise _DeadlinePassed
    if "error" in out:
        raise out["error"]
    return out["infos"]


def _vetted_addresses(host: str, port: int, limits: ImageLimits, deadline: _Deadline) -> list[IPAddress]:
    """Resolve ``host`` once and return its addresses, or refuse it if any of them is not allowed.

    Every address must pass, not just one: the connection uses one of these, and which one answers
    is up to the network. The refusal names the host only, never the port or whether it answers.
    """
    literal = True
    try:
        ips: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        literal = False
        try:
            infos = _getaddrinfo(host, port, deadline)
        except (OSError, UnicodeError) as e:
            if isinstance(e, TimeoutError):
                raise
            raise ImageSourceError(f"cannot resolve host {host!r}: {e}") from e
        ips = []
        for family, *_, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
                if ip not in ips:
                    ips.append(ip)
    if not ips:
        raise ImageSourceError(f"cannot resolve host {host!r}: it has no IPv4 or IPv6 address")
    for ip in ips:
        if not _allowed(ip, limits):
            logger.info("refused download from %r: %s is not a public address", host, ip)
            raise ImageSourceError(
                f"refusing to download from {host!r}: it {'is' if literal else 'resolves to'} a private, "
                "loopback, link-local or reserved address; only public hosts are allowed (a trusted deployment "
                "can list its own networks in ImageLimits.url_allow_networks)"
            )
    return ips


def check_public_host(host: str, port: int = 443) -> None:
    """Refuse a host that is, or resolves to, a private, loopback, link-local or reserved address.

    Raises:
        ImageSourceError: The host does not resolve, or any of its addresses is not public.
    """
    limits = ImageLimits()
    try:
        _vetted_addresses(host, port, limits, _Deadline(limits.url_timeout_s))
    except TimeoutError as e:
        raise ImageSourceError(f"cannot resolve host {host!r} within {limits.url_timeout_s} s") from e


# ----------------------------------------------------------------------------- transport
class _DeadlineSocket:
    """The part of a socket ``http.client`` uses, each operation given only the time left.

    A socket timeout applies to one operation and starts again with every byte received; setting it
    to the time left before each one makes the deadline hold for the whole exchange. ``close`` is the
    fetcher's job (it owns the socket), so here it does nothing.
    """

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(self._deadline.left())
        self._sock.sendall(data)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def close(self) -> None:
        pass


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._deadline.left())
        return self._sock.recv_into(buffer)


class _PinnedConnection(http.client.HTTPConnection):
    """An ``HTTPConnection`` over a socket already connected (to the vetted address) by the fetcher."""

    def __init__(self, host: str, port: int, sock: _DeadlineSocket) -> None:
        super().__init__(host, port)
        self._pinned = sock

    def connect(self) -> None:
        self.sock = self._pinned


def _connect(ips: list[IPAddress], port: int, deadline: _Deadline) -> socket.socket:
    """A TCP connection to the first vetted address that accepts one."""
    error: OSError | None = None
    for ip in ips:
        sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.left())
            sock.connect((str(ip), port))
            return sock
        except OSError as e:
            sock.close()
            if isinstance(e, TimeoutError):
                raise
            error = e
    assert error is not None
    raise error


def _start_tls(sock: socket.socket, host: str, deadline: _Deadline) -> ssl.SSLSocket:
    """TLS over a connection to the vetted IP, verified against the URL's host (also sent as SNI)."""
    context = ssl.create_default_context()  # per call: picks up trust-store changes (SSL_CERT_FILE)
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    tls.settimeout(deadline.left())
    tls.do_handshake()  # one operation: CPython bounds it by the timeout as a whole
    return tls


def _hop(url: str, limits: ImageLimits, deadline: _Deadline, cap: int, what: str, redirected: bool
         ) -> tuple[int, str | None, bytes]:
    """One request: vet, connect, ask. Returns ``(status, Location, body)``; the body only for 2xx."""
    parts = urllib.parse.urlsplit(url)
    refuse = f"refusing to {'follow a redirect to' if redirected else 'download'} {_short(url)!r}"
    if parts.scheme not in ("http", "https"):
        raise ImageSourceError(f"{refuse}: only http and https URLs are allowed")
    host = parts.hostname
    if not host:
        raise ImageSourceError(f"{refuse}: the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ascii_host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as e:
        raise ImageSourceError(f"{refuse}: {e}") from e
    host_header = (f"[{ascii_host}]" if ":" in ascii_host else ascii_host) + (f":{parts.port}" if parts.port else "")
    ips = _vetted_addresses(host, port, limits, deadline)
    logger.debug("GET %s via %s", _short(url), ips[0] if len(ips) == 1 else ips)
    sock = _connect(ips, port, deadline)
    try:
        if parts.scheme == "https":
            sock = _start_tls(sock, host, deadline)
        conn = _PinnedConnection(host, port, _DeadlineSocket(sock, deadline))
        # Spaces and non-ASCII in a path (often in a Location) are escaped as urllib did; %XX stays as is.
        target = urllib.parse.quote(urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")),
                                    safe=string.punctuation)
        conn.request("GET", target, headers={"Host": host_header, "User-Agent": "awares", "Accept": "image/*",
                                             "Connection": "close"})
        resp = conn.getresponse()
        if resp.status in _REDIRECT_STATUSES:
            return resp.status, resp.getheader("Location"), b""
        if not 200 <= resp.status < 300:
            raise ImageSourceError(f"could not download {_short(url)}: HTTP {resp.status} {resp.reason}")
        declared = resp.getheader("Content-Length", "")
        if declared.isdigit():
            _check_bytes(int(declared), cap, f"download {_short(url)}", what)
        body = bytearray()
        while chunk := resp.read(min(_CHUNK, cap + 1 - len(body))):
            body += chunk
            _check_bytes(len(body), cap, f"download {_short(url)}", what)
        if resp.length:  # read(amt) ends quietly at EOF before Content-Length (Python 3.11), a cut body
            raise ImageSourceError(f"could not download {_short(url)}: the connection closed after {len(body):,} "
                                   f"of the {len(body) + resp.length:,} bytes the server announced")
        return resp.status, None, bytes(body)
    finally:
        sock.close()


def fetch_url(url: str, limits: ImageLimits) -> bytes:
    """Download ``url`` under ``limits``: only when allowed, only http(s) from allowed addresses, bounded.

    The guarantees are listed in this module's docstring: every hop's scheme and addresses are vetted
    before anything is sent to it, the connection goes to the vetted address, proxies are ignored, and
    ``limits.url_timeout_s`` bounds the whole download, ``min(url_max_bytes, max_bytes)`` its size.

    Raises:
        ImageSourceError: URLs are off, the URL or a redirect is refused, the download fails or
            takes longer than ``url_timeout_s``.
        ImageTooLargeError: Over the byte cap (declared or while reading).
    """
    if not limits.allow_urls:
        raise ImageSourceError(f"refusing to download {_short(url)!r}: URLs are off on this server (start it "
                               "with --allow-urls), so pass an image path under an allowed root instead")
    cap = min(limits.url_max_bytes, limits.max_bytes)
    what = "url_max_bytes" if cap == limits.url_max_bytes else "max_bytes"
    deadline = _Deadline(limits.url_timeout_s)
    current = url
    try:
        for hop in range(MAX_REDIRECTS + 1):
            status, location, body = _hop(current, limits, deadline, cap, what, redirected=hop > 0)
            if location is None:
                if status in _REDIRECT_STATUSES:
                    raise ImageSourceError(f"could not download {_short(url)}: HTTP {status} without a Location")
                return body
            current = urllib.parse.urljoin(current, location.strip())
        raise ImageSourceError(f"could not download {_short(url)}: more than {MAX_REDIRECTS} redirects")
    except AwaresError:
        raise
    except TimeoutError as e:  # the socket timeouts are the time left, so any of them is the deadline
        raise ImageSourceError(f"could not download {_short(url)} within url_timeout_s={limits.url_timeout_s} s; "
                               "the server is too slow or does not answer") from e
    except ssl.SSLCertVerificationError as e:
        raise ImageSourceError(f"could not download {_short(url)}: the server's TLS certificate is not valid "
                               f"for it ({e.verify_message})") from e
    except (OSError, ValueError, http.client.HTTPException) as e:  # resets, TLS, truncated or malformed replies
        raise ImageSourceError(f"could not download {_short(url)}: {type(e).__name__}: {e}") from e
