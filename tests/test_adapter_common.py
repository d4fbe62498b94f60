"""ImageService: what an adapter's `image` argument may reach, the limits, and the payloads."""

from __future__ import annotations

import http.server
import io
import os
import struct
import threading
import zlib
from pathlib import Path

import pytest
from PIL import Image

from awares_tool.images import fetch as url_policy
from awares_tool.adapters.common import AdapterConfig, ImageService, check_public_host, fetch_url
from awares_tool.backends.scripted import ScriptedBackend
from awares_tool.errors import (
    AwaresError,
    ImageNotFoundError,
    ImageSourceError,
    ImageTooLargeError,
    MalformedRequestError,
    TooManyCropsError,
    UnknownRegionError,
)
from awares_tool.images import ImageLimits

QUADRANT_COLORS = {"0": (255, 0, 0), "1": (0, 255, 0), "2": (0, 0, 255), "3": (255, 255, 0)}


def quadrant_image(w: int = 400, h: int = 300) -> Image.Image:
    """Each quarter a flat colour, so a crop's pixels tell which region it came from."""
    img = Image.new("RGB", (w, h))
    for name, (x, y) in {"0": (0, 0), "1": (1, 0), "2": (0, 1), "3": (1, 1)}.items():
        img.paste(QUADRANT_COLORS[name], (x * w // 2, y * h // 2, (x + 1) * w // 2, (y + 1) * h // 2))
    return img


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """An allowed root with images and links, and a secret file outside it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    quadrant_image().save(root / "quad.png")
    quadrant_image(64, 48).save(root / "sub" / "small.png")
    (root / "bomb.png").write_bytes(png_header_only(30000, 30000))
    outside = tmp_path / "outside"
    outside.mkdir()
    quadrant_image(10, 10).save(outside / "secret.png")
    os.symlink(outside / "secret.png", root / "escape.png")
    os.symlink(root / "quad.png", root / "inside_link.png")
    return root, outside


@pytest.fixture
def service(roots: tuple[Path, Path]) -> ImageService:
    return ImageService(AdapterConfig(roots=(roots[0],)))


def test_view_and_crops_cut_the_original_pixels(service: ImageService) -> None:
    view = service.view("quad.png")
    assert view.result.image_size == (400, 300)
    assert view.result.view_size == (200, 150)  # the official low-res view: half of each side
    assert Image.open(io.BytesIO(view.image.data)).size == (200, 150)
    assert view.result.full_tokens is not None and view.result.view_tokens < view.result.full_tokens

    out = service.crops(view.result.image_id, ["3", "0"])
    assert [c.region for c in out.result.crops] == ["3", "0"]
    assert out.result.crops[0].box == (200, 150, 400, 300)
    for info, enc in zip(out.result.crops, out.images):
        img = Image.open(io.BytesIO(enc.data)).convert("RGB")
        assert img.size == info.size == (200, 150)
        assert img.getpixel((100, 75)) == QUADRANT_COLORS[info.region]
        assert info.region in enc.caption and enc.mime_type == "image/png"
    assert out.result.tokens == sum(c.tokens for c in out.result.crops)


def test_paths_resolve_under_roots_only(service: ImageService, roots: tuple[Path, Path]) -> None:
    root, outside = roots
    assert service.resolve_path("sub/small.png") == root / "sub" / "small.png"
    assert service.resolve_path(str(root / "quad.png")) == root / "quad.png"
    assert service.resolve_path("inside_link.png") == root / "quad.png"  # a link that stays inside is fine
    for bad, words in [
        ("../../etc/passwd", "contains '..'"),
        ("sub/../../outside/secret.png", "contains '..'"),
        ("escape.png", "outside the allowed roots"),
        (str(outside / "secret.png"), "outside the allowed roots"),
        ("/etc/passwd", "outside the allowed roots"),
    ]:
        with pytest.raises(ImageSourceError, match=words):
            service.view(bad)
    with pytest.raises(ImageNotFoundError, match="no image file 'missing.png'"):
        service.view("missing.png")
    with pytest.raises(ImageSourceError, match="NUL"):
        service.view("quad.png\x00.txt")


def test_second_root_and_file_urls(tmp_path: Path, roots: tuple[Path, Path]) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    quadrant_image(20, 20).save(extra / "other.png")
    svc = ImageService(AdapterConfig(roots=(roots[0], extra)))
    assert svc.view("other.png").result.image_size == (20, 20)
    assert svc.view((roots[0] / "quad.png").as_uri()).result.image_size == (400, 300)
    with pytest.raises(ImageSourceError, match="outside"):
        svc.view((roots[1] / "secret.png").as_uri())
    with pytest.raises(ImageSourceError, match="unsupported image reference"):
        svc.view("ftp://example.com/a.png")


def test_no_roots_refuses_paths() -> None:
    with pytest.raises(ImageSourceError, match="--root"):
        ImageService().view("quad.png")
    with pytest.raises(ValueError, match="not an existing folder"):
        ImageService(AdapterConfig(roots=(Path("/no/such/folder"),)))


def test_ids_survive_and_expire(service: ImageService) -> None:
    image_id = service.view("quad.png").result.image_id
    assert service.crops(image_id, ["4"]).result.image_id == image_id
    service.store.clear()
    with pytest.raises(ImageNotFoundError, match="call view_image again"):
        service.crops(image_id, ["4"])


def test_limits(service: ImageService) -> None:
    with pytest.raises(ImageTooLargeError, match="900,000,000 pixels"):
        service.view("bomb.png")
    (service.roots[0] / "big.png").write_bytes(png_header_only(8000, 8000))
    with pytest.raises(ImageTooLargeError, match="8000x8000 = 64,000,000 pixels, over the limit of 50,000,000"):
        service.view("big.png")
    with pytest.raises(TooManyCropsError, match="1000 regions requested, but at most 4"):
        service.crops("quad.png", [f"r{i}" for i in range(1000)])
    with pytest.raises(UnknownRegionError, match="unknown region.*'nine'.*valid regions: '0'"):
        service.crops("quad.png", ["nine"])
    for garbage in ([], "3", [3], None):
        with pytest.raises(MalformedRequestError, match="non-empty list of region names"):
            service.crops("quad.png", garbage)  # type: ignore[arg-type]
    assert len(service.crops("quad.png", ["3", "3", "3"]).images) == 1  # duplicates count once


def test_sent_images_are_capped(roots: tuple[Path, Path]) -> None:
    svc = ImageService(AdapterConfig(roots=(roots[0],), max_image_pixels=10_000, image_format="jpeg"))
    out = svc.crops("quad.png", ["all"])
    w, h = out.result.crops[0].size
    assert w * h <= 10_000 and out.result.crops[0].box == (0, 0, 400, 300)
    assert out.images[0].mime_type == "image/jpeg"
    assert Image.open(io.BytesIO(out.images[0].data)).size == (w, h)


def test_ask_runs_the_loop_with_the_backend(service: ImageService) -> None:
    backend = ScriptedBackend(["GET_CROPS: ['3']", "yellow"])
    service = ImageService(service.config, backend=backend)
    res = service.ask("quad.png", "What colour is the bottom-right?")
    assert res.answer == "yellow" and res.answered and res.regions == ["3"]
    assert res.tokens_spent is not None and res.full_tokens is not None and 0 < res.rtr < 1
    second_turn_images = backend.calls[1][-1].images
    assert second_turn_images[0].getpixel((10, 10)) == QUADRANT_COLORS["3"]
    with pytest.raises(MalformedRequestError):
        service.ask("quad.png", "  ")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "::1",
                                  "::ffff:127.0.0.1", "0.0.0.0", "192.168.0.1", "100.64.0.1"])
def test_private_hosts_are_refused(host: str) -> None:
    with pytest.raises(ImageSourceError, match="refusing to download"):
        check_public_host(host)


class _ImageHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_image_url():
    buf = io.BytesIO()
    quadrant_image(32, 32).save(buf, "PNG")
    _ImageHandler.body = buf.getvalue()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/img.png"
    httpd.shutdown()
    httpd.server_close()


def test_urls(roots: tuple[Path, Path], local_image_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    off = ImageService(AdapterConfig(roots=(roots[0],)))
    with pytest.raises(ImageSourceError, match="URLs are off"):
        off.view(local_image_url)
    on = ImageService(AdapterConfig(roots=(roots[0],), limits=ImageLimits(allow_urls=True)))
    with pytest.raises(ImageSourceError, match="refusing to download from '127.0.0.1'"):
        on.view(local_image_url)
    # Counted as public, the same server is reached (redirects, DNS rebinding, deadlines: tests/test_fetch.py).
    monkeypatch.setattr(url_policy, "_public", lambda ip: str(ip) == "127.0.0.1")
    assert on.view(local_image_url).result.image_size == (32, 32)
    assert fetch_url(local_image_url, ImageLimits(allow_urls=True)) == _ImageHandler.body


def _swap_after_check(service: ImageService, monkeypatch, swap) -> None:
    """Run ``swap`` between the path check and the read: the race an attacker with write access would win."""
    original = ImageService.resolve_path

    def checked_then_swapped(self: ImageService, ref: str) -> Path:
        real = original(self, ref)
        swap(real)
        return real

    monkeypatch.setattr(ImageService, "resolve_path", checked_then_swapped)


def test_a_symlink_swapped_in_after_the_check_is_not_followed(tmp_path: Path, monkeypatch) -> None:
    """#17: the file was opened again by name after the check, following a symlink put there in between."""
    root, outside = tmp_path / "root", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    Image.new("RGB", (64, 64), "red").save(outside / "secret.png")
    Image.new("RGB", (64, 64), "white").save(root / "pic.png")
    svc = ImageService(AdapterConfig(roots=(root,)))

    def to_symlink(real: Path) -> None:
        real.unlink()
        real.symlink_to(outside / "secret.png")

    _swap_after_check(svc, monkeypatch, to_symlink)
    with pytest.raises(ImageSourceError, match="symbolic link"):
        svc.view("pic.png")


def test_a_folder_swapped_for_a_symlink_is_caught_on_the_open_file(tmp_path: Path, monkeypatch) -> None:
    root, outside = tmp_path / "root", tmp_path / "secret"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (64, 64), "red").save(outside / "pic.png")
    Image.new("RGB", (64, 64), "white").save(root / "sub" / "pic.png")
    svc = ImageService(AdapterConfig(roots=(root,)))

    def parent_to_symlink(real: Path) -> None:
        (real.parent / "pic.png").unlink()
        real.parent.rmdir()
        real.parent.symlink_to(outside)

    _swap_after_check(svc, monkeypatch, parent_to_symlink)
    with pytest.raises(ImageSourceError, match="outside the allowed roots"):
        svc.view("sub/pic.png")


def test_a_file_that_grows_after_its_size_check_is_refused(tmp_path: Path) -> None:
    """#17: stat() then read_bytes(): a file growing in between passed max_bytes. Now at most max_bytes+1 are read."""
    from awares_tool.errors import ImageTooLargeError
    from awares_tool.images import open_file

    path = tmp_path / "pic.png"
    Image.new("RGB", (64, 64), "white").save(path)
    cap = path.stat().st_size + 10

    def grow(opened: Path) -> None:  # runs after fstat, before the read
        with opened.open("ab") as fh:
            fh.write(b"\0" * 1000)

    with pytest.raises(ImageTooLargeError, match="over the limit"):
        open_file(path, limits=ImageLimits(max_bytes=cap), check_opened=grow)


def test_pixel_budget_makes_decodes_wait_and_lets_a_huge_one_run_alone() -> None:
    """#17: concurrent decodes were bounded only per image; now by a shared pixel budget."""
    import threading

    from awares_tool.images.budget import PixelBudget

    budget = PixelBudget(100)
    first_in, release_first, second_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with budget.hold((10, 6)):  # 60 of 100
            first_in.set()
            release_first.wait(10)

    def second() -> None:
        with budget.hold((10, 6)):  # another 60: must wait for the first
            second_in.set()

    a = threading.Thread(target=first)
    a.start()
    assert first_in.wait(10)
    b = threading.Thread(target=second)
    b.start()
    assert not second_in.wait(0.3) and budget.in_use == 60  # still waiting (no timing is asserted, only order)
    release_first.set()
    assert second_in.wait(10)
    a.join()
    b.join()
    with budget.hold((1000, 1000)):  # larger than the whole budget: runs when nothing else does
        assert budget.in_use == 100
    assert budget.in_use == 0


def test_service_decodes_under_its_budget(tmp_path: Path) -> None:
    Image.new("RGB", (400, 300), "white").save(tmp_path / "pic.png")
    svc = ImageService(AdapterConfig(roots=(tmp_path,), decode_budget_pixels=1000))  # far below one image
    assert svc.view("pic.png").result.view_size == (200, 150) and svc.decode_budget.in_use == 0


def test_roots_are_named_not_shown(tmp_path: Path) -> None:
    """#17: tool descriptions and errors carried the server's absolute root paths."""
    root = tmp_path / "deep" / "private" / "images"
    root.mkdir(parents=True)
    Image.new("RGB", (300, 200), "white").save(root / "pic.png")
    svc = ImageService(AdapterConfig(roots=(root,), root_names=("photos",)))
    texts = [svc.describe(t) for t in ("get_crops", "view_image", "ask_image")]
    for bad in ("missing.png", "/etc/passwd", "../x.png", "n" * 300 + ".png"):
        with pytest.raises(AwaresError) as err:
            svc.view(bad)
        texts.append(str(err.value))
    assert all(str(tmp_path) not in text for text in texts), texts
    assert "photos" in texts[0] and "photos" in texts[3]
    default = ImageService(AdapterConfig(roots=(root,)))
    assert "images" in default.describe("view_image") and str(tmp_path) not in default.describe("view_image")
    shown = ImageService(AdapterConfig(roots=(root,), show_root_paths=True))
    assert str(root.resolve()) in shown.describe("view_image")


def test_mcp_root_aliases_from_the_command_line(tmp_path: Path) -> None:
    from awares_tool.adapters.mcp_server import _parser, service_from_args

    args = _parser().parse_args(["--root", f"scans={tmp_path}", "--root", str(tmp_path)])
    assert service_from_args(args).root_names == ("scans", tmp_path.name)


def test_mcp_url_flags_reach_the_fetcher_limits(capsys) -> None:
    from awares_tool.adapters.mcp_server import _parser, main, service_from_args

    args = _parser().parse_args(["--allow-urls", "--allow-url-network", "10.1.0.0/16", "--url-timeout", "3"])
    limits = service_from_args(args).config.limits
    assert limits.allow_urls and limits.url_timeout_s == 3.0
    assert [str(n) for n in limits.url_allow_networks] == ["10.1.0.0/16"]
    assert main(["--allow-urls", "--allow-url-network", "10.1.0.1/16"]) == 2  # host bits set: refused, one line
    assert "url_allow_networks" in capsys.readouterr().err
