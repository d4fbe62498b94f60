"""The URL fetcher against hostile servers: every hop vetted before any packet, one deadline, typed errors.

Every server here is started by the test on loopback and stopped by it, and no other address is
contacted. Loopback is private, so the policy would refuse all of them: the autouse fixture patches
the fetcher's one "is this address public" check so that exactly the "public" side, 127.0.0.1, counts
as public. The private side listens on 127.0.0.2 and only counts the connections that reached it
(:class:`Listener`), which is how a test proves that nothing was sent there. Each case runs through
every entry point that downloads (``fetch_url``, ``open_image``, the adapters' ``ImageService``),
since they share one fetcher and one policy.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import ipaddress
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from awares_tool.adapters.common import AdapterConfig, ImageService
from awares_tool.backends.scripted import ScriptedBackend
from awares_tool.episode.loop import crop_on_demand
from awares_tool.errors import ImageSourceError, ImageTooLargeError
from awares_tool.images import ImageLimits, fetch, open_image
from awares_tool.images.fetch import fetch_url

PUBLIC = "127.0.0.1"
PRIVATE = "127.0.0.2"
TLS = Path(__file__).parent / "data" / "tls"
ALLOW = ImageLimits(allow_urls=True, url_timeout_s=5)
REAL_PUBLIC = fetch._public


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 40)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
PNG_ID = open_image(PNG).id


# ----------------------------------------------------------------------------- entry points
def via_fetch_url(url: str, limits: ImageLimits) -> str:
    return open_image(fetch_url(url, limits)).id


def via_open_image(url: str, limits: ImageLimits) -> str:
    return open_image(url, limits=limits).id


def via_service(url: str, limits: ImageLimits) -> str:
    return ImageService(AdapterConfig(limits=limits)).resolve(url).id


ENTRY_POINTS = pytest.mark.parametrize("get", [via_fetch_url, via_open_image, via_service],
                                       ids=["fetch_url", "open_image", "ImageService"])


# ----------------------------------------------------------------------------- servers
@pytest.fixture(autouse=True)
def only_the_public_server_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "_public", lambda ip: str(ip) == PUBLIC)


class Listener:
    """A socket listening on the private side that never answers; :meth:`connections` drains its backlog.

    A TCP connection to a listening socket completes in the kernel whether or not anyone calls
    ``accept``, so after the call under test every connection that reached this port is in the backlog.
    """

    def __init__(self, host: str = PRIVATE, port: int = 0) -> None:
        self.sock = socket.create_server((host, port))
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        self.sock.setblocking(False)
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lis = Listener()
    yield lis
    lis.close()


Route = tuple[int, dict[str, str], bytes] | Callable[[http.server.BaseHTTPRequestHandler], None]


class HTTPServer:
    """A threaded http.server on ``host`` serving ``routes`` {path: (status, headers, body) or handler}."""

    def __init__(self, host: str = PUBLIC, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Host header)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests.append((self.path, self.headers.get("Host")))
                route = outer.routes.get(self.path, (404, {}, b""))
                if callable(route):
                    route(self)
                    return
                status, headers, body = route
                self.send_response(status)
                headers = {"Content-Length": str(len(body)), **headers}
                for k, v in headers.items():
                    if v is not None:
                        self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.base = f"http{'s' if tls else ''}://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        self.routes[path] = (status, {"Location": location, "Content-Length": "0"}, b"")
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    srv = HTTPServer()
    srv.routes["/img.png"] = (200, {"Content-Type": "image/png"}, PNG)
    yield srv
    srv.close()


@contextlib.contextmanager
def raw_server(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A public-side TCP server that answers each connection with ``handle(conn, stop)``; yields its URL."""
    stop = threading.Event()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            _read_request(self.request)
            handle(self.request, stop)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        block_on_close = False

    srv = Server((PUBLIC, 0), Handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://{PUBLIC}:{srv.server_address[1]}/img.png"
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()


def _read_request(conn: socket.socket) -> None:
    """Read the request head, so that closing the socket later sends FIN, not RST (unread data)."""
    data = b""
    conn.settimeout(5)
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk


# ----------------------------------------------------------------------------- policy on every hop
@ENTRY_POINTS
@pytest.mark.parametrize("target", ["ftp://{host}:{port}/x.png", "gopher://{host}:{port}/x.png",
                                    "file:///etc/hostname"])
def test_a_redirect_to_another_scheme_is_refused_without_connecting(get, target, server, listener) -> None:
    url = server.redirect("/go", target.format(host=PRIVATE, port=listener.port))
    with pytest.raises(ImageSourceError, match="only http and https"):
        get(url, ALLOW)
    assert listener.connections() == 0


@ENTRY_POINTS
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_redirect_to_a_private_address_is_refused_before_connecting(get, scheme, server, listener) -> None:
    url = server.redirect("/go", f"{scheme}://{PRIVATE}:{listener.port}/x.png")
    with pytest.raises(ImageSourceError, match=f"refusing to download from '{PRIVATE}'"):
        get(url, ALLOW)
    assert listener.connections() == 0  # no TCP connection, so no ClientHello either


def test_the_refusal_does_not_tell_whether_a_private_port_listens(server, listener) -> None:
    closed = Listener()
    closed_port = closed.port
    closed.close()
    errors = []
    for path, port in (("/open", listener.port), ("/closed", closed_port)):
        with pytest.raises(ImageSourceError) as e:
            fetch_url(server.redirect(path, f"http://{PRIVATE}:{port}/x.png"), ALLOW)
        errors.append(str(e.value))
    assert errors[0] == errors[1]
    assert listener.connections() == 0


def test_dns_rebinding_cannot_reach_the_private_side(server, monkeypatch) -> None:
    """The name resolves to the public server once, then to the private side: only the first answer is used."""
    private = Listener(PRIVATE, server.port)  # same port: a second resolution would land here
    real = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.test":
            asked.append(host)
            host = PUBLIC if len(asked) == 1 else PRIVATE
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        assert via_fetch_url(f"http://rebind.test:{server.port}/img.png", ALLOW) == PNG_ID
        assert private.connections() == 0
    finally:
        private.close()
    assert asked == ["rebind.test"]  # resolved once, then connected to the vetted address
    assert server.requests == [("/img.png", f"rebind.test:{server.port}")]  # the URL's host, not the IP


@ENTRY_POINTS
def test_a_private_url_is_refused_by_every_entry_point(get, listener) -> None:
    with pytest.raises(ImageSourceError, match="refusing to download"):
        get(f"http://{PRIVATE}:{listener.port}/x.png", ALLOW)
    assert listener.connections() == 0


def test_crop_on_demand_downloads_under_the_same_policy(listener) -> None:
    backend = ScriptedBackend(["red"])
    with pytest.raises(ImageSourceError, match="refusing to download"):
        crop_on_demand(f"http://{PRIVATE}:{listener.port}/x.png", "What colour?", backend=backend,
                       image_limits=ALLOW)
    assert listener.connections() == 0 and backend.calls == []


@ENTRY_POINTS
def test_redirects_within_the_policy_are_followed(get, server) -> None:
    url = server.redirect("/a", "/b", 301)
    server.redirect("/b", f"{server.base}/img.png", 307)
    assert get(url, ALLOW) == PNG_ID
    assert [p for p, _ in server.requests] == ["/a", "/b", "/img.png"]


def test_a_redirect_loop_ends_with_a_typed_error(server) -> None:
    server.redirect("/loop", "/loop")
    with pytest.raises(ImageSourceError, match="redirects"):
        fetch_url(server.base + "/loop", ALLOW)
    assert len(server.requests) == fetch.MAX_REDIRECTS + 1


@ENTRY_POINTS
def test_proxy_variables_are_ignored(get, server, monkeypatch) -> None:
    proxy = Listener(PUBLIC)  # public, so only the proxy settings could send the request there
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://{PUBLIC}:{proxy.port}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    try:
        assert get(server.base + "/img.png", ALLOW) == PNG_ID
        assert proxy.connections() == 0
    finally:
        proxy.close()


def test_allowed_networks_open_private_addresses_to_trusted_deployments(monkeypatch) -> None:
    monkeypatch.setattr(fetch, "_public", REAL_PUBLIC)  # the real policy, with the operator's allow-list
    private = HTTPServer(PRIVATE)
    private.routes["/img.png"] = (200, {}, PNG)
    try:
        url = private.base + "/img.png"
        with pytest.raises(ImageSourceError, match="url_allow_networks"):
            fetch_url(url, ALLOW)
        trusted = ImageLimits(allow_urls=True, url_allow_networks=("127.0.0.2/32",))
        assert via_fetch_url(url, trusted) == PNG_ID
        elsewhere = ImageLimits(allow_urls=True, url_allow_networks=("127.0.0.3/32", "10.0.0.0/8"))
        with pytest.raises(ImageSourceError, match="refusing to download"):
            fetch_url(url, elsewhere)
        assert [p for p, _ in private.requests] == ["/img.png"]
    finally:
        private.close()
    with pytest.raises(ValueError, match="url_allow_networks"):
        ImageLimits(url_allow_networks=("10.0.0.1/8",))  # host bits set: say what you mean


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.215.14", True), ("2606:4700::1111", True), ("::ffff:8.8.8.8", True), ("64:ff9b::808:808", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("255.255.255.255", False), ("240.0.0.1", False), ("::1", False), ("::", False), ("fe80::1", False),
    ("fc00::1", False), ("fec0::1", False), ("ff02::1", False), ("::ffff:10.0.0.1", False),
    ("64:ff9b::a9fe:a9fe", False), ("2002:a00:1::", False), ("2001:db8::1", False),
])
def test_which_addresses_count_as_public(address: str, public: bool) -> None:
    """The real check (not the patched one): IPv4 inside IPv6 (mapped, NAT64, 6to4) is judged as IPv4."""
    assert REAL_PUBLIC(ipaddress.ip_address(address)) is public


# ----------------------------------------------------------------------------- https
@pytest.fixture
def tls_server(monkeypatch) -> Iterator[tuple[HTTPServer, list[str]]]:
    """An HTTPS server for ``images.test`` (test CA), the name resolving to the public side; yields it and the SNI seen."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(TLS / "leaf.pem")
    names: list[str] = []
    ctx.sni_callback = lambda sock, name, c: names.append(name)
    srv = HTTPServer(tls=ctx)
    srv.routes["/img.png"] = (200, {}, PNG)
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real(
        PUBLIC if host in ("images.test", "other.test") else host, *a, **k))
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "ca.pem"))  # trust the test CA (OpenSSL reads it per context)
    yield srv, names
    srv.close()


@ENTRY_POINTS
def test_https_verifies_the_url_host_while_connecting_to_the_vetted_address(get, tls_server) -> None:
    srv, names = tls_server
    assert get(f"https://images.test:{srv.port}/img.png", ALLOW) == PNG_ID
    assert names == ["images.test"] and srv.requests == [("/img.png", f"images.test:{srv.port}")]
    with pytest.raises(ImageSourceError, match="certificate"):  # same address, a name the certificate lacks
        get(f"https://other.test:{srv.port}/img.png", ALLOW)
    with pytest.raises(ImageSourceError, match="certificate"):  # the IP is not what the certificate names
        get(f"https://{PUBLIC}:{srv.port}/img.png", ALLOW)


# ----------------------------------------------------------------------------- one deadline
def _drip(phase: str) -> Callable[[socket.socket, threading.Event], None]:
    """One byte every 0.5 s: over 60 s for the whole response, each byte well inside any socket timeout."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 120\r\n\r\n"

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        data = head + b"x" * 120
        if phase == "body":
            conn.sendall(head)
            data = data[len(head):]
        for i in range(len(data)):
            if stop.wait(0.5):
                return
            try:
                conn.sendall(data[i:i + 1])
            except OSError:
                return  # the client gave up: what the test wants

    return handle


@pytest.mark.parametrize(("get", "phase"), [(via_fetch_url, "headers"), (via_fetch_url, "body"),
                                            (via_open_image, "body"), (via_service, "headers")])
def test_a_dripping_server_is_cut_at_the_deadline(get, phase) -> None:
    with raw_server(_drip(phase)) as url:
        start = time.monotonic()
        with pytest.raises(ImageSourceError) as e:
            get(url, ImageLimits(allow_urls=True, url_timeout_s=1))
        # A bound, not a timing: the server needs over 60 s to finish, each byte inside any socket timeout.
        assert time.monotonic() - start < 30
    assert "url_timeout_s=1.0" in str(e.value)


def test_the_deadline_spans_every_hop(server) -> None:
    def slow_hop(n: int) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
        def handle(h: http.server.BaseHTTPRequestHandler) -> None:
            time.sleep(0.4)
            h.send_response(302)
            h.send_header("Location", f"/hop{n + 1}" if n < 4 else "/img.png")
            h.send_header("Content-Length", "0")
            h.end_headers()
        return handle

    for n in range(5):
        server.routes[f"/hop{n}"] = slow_hop(n)
    with pytest.raises(ImageSourceError, match="url_timeout_s"):  # 5 hops of 0.4 s cannot fit in 1 s
        fetch_url(server.base + "/hop0", ImageLimits(allow_urls=True, url_timeout_s=1))


# ----------------------------------------------------------------------------- transport errors
def _send_then_close(data: bytes, reset: bool = False) -> Callable[[socket.socket, threading.Event], None]:
    def handle(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(data)
        if reset:  # SO_LINGER 0: close sends RST
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()

    return handle


_OK = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
TRUNCATED = {
    "chunked-cut": _send_then_close(_OK + b"Transfer-Encoding: chunked\r\n\r\n100\r\n" + PNG[:10]),
    "length-cut": _send_then_close(_OK + b"Content-Length: 1000\r\n\r\n" + PNG[:10]),
    "bad-chunk-size": _send_then_close(_OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
    "not-http": _send_then_close(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    "no-response": _send_then_close(b""),
    "reset-in-body": _send_then_close(_OK + b"Content-Length: 1000\r\n\r\n" + PNG[:10], reset=True),
    "reset-before-response": _send_then_close(b"", reset=True),
}


@ENTRY_POINTS
@pytest.mark.parametrize("case", sorted(TRUNCATED))
def test_transport_errors_are_image_source_errors(get, case) -> None:
    with raw_server(TRUNCATED[case]) as url, pytest.raises(ImageSourceError, match="could not download"):
        get(url, ALLOW)


@ENTRY_POINTS
def test_http_errors_name_the_status(get, server) -> None:
    with pytest.raises(ImageSourceError, match="HTTP 404"):
        get(server.base + "/missing.png", ALLOW)


# ----------------------------------------------------------------------------- size
@ENTRY_POINTS
def test_the_size_cap_holds_declared_and_streamed(get, server) -> None:
    big = PNG + b"\0" * 5000
    server.routes["/declared"] = (200, {}, big)
    server.routes["/streamed"] = (200, {"Content-Length": None, "Connection": "close"}, big)
    limits = ImageLimits(allow_urls=True, url_max_bytes=4096)
    for path in ("/declared", "/streamed"):
        with pytest.raises(ImageTooLargeError, match="url_max_bytes"):
            get(server.base + path, limits)
    assert get(server.base + "/img.png", limits) == PNG_ID
