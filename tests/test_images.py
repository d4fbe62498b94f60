"""Tests for awares_tool.images: every input is generated here, nothing is downloaded."""

from __future__ import annotations

import base64
import http.server
import io
import random
import struct
import threading
import warnings
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageDraw, ImageFile, ImageOps, ImageStat
from PIL.JpegImagePlugin import JpegImageFile

from awares_tool.errors import (
    ImageDecodeError,
    ImageError,
    ImageNotFoundError,
    ImageSourceError,
    ImageTooLargeError,
)
from awares_tool.images import (
    ImageLimits,
    SourceImage,
    encode_image,
    load_image,
    open_image,
    to_base64,
    to_data_uri,
    to_rgb,
)

np = pytest.importorskip("numpy")

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _encode(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR claims ``width`` x ``height`` (a decompression bomb's header)."""
    data = bytearray(_encode(Image.new("1", (8, 8))))
    struct.pack_into(">II", data, 16, width, height)  # IHDR data starts after signature + length + type
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _split_red_blue(size: tuple[int, int]) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", size, BLUE)
    img.paste(RED, (0, 0, size[0] // 2, size[1]))
    return img


def _mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def _near(pixel, color, tol=40) -> bool:
    return all(abs(p - c) <= tol for p, c in zip(pixel, color))


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory) -> Path:
    """A 4000x3000 document-like JPEG: gradient, mild noise and lines of text."""
    w, h = 4000, 3000
    base = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    img = Image.blend(base, Image.effect_noise((w, h), 20).convert("RGB"), 0.3)
    draw = ImageDraw.Draw(img)
    for y in range(100, h, 150):
        draw.text((100, y), "Invoice total 1234.56 " * 8, fill=(0, 0, 0), font_size=40)
    path = tmp_path_factory.mktemp("big") / "doc.jpg"
    img.save(path, quality=90)
    return path


# ----------------------------------------------------------------------------- sources


def test_path_str_path_bytes_base64_and_data_uri_agree(tmp_path):
    img = _split_red_blue((64, 32))
    data = _encode(img)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    sources = [
        str(path),
        path,
        data,
        bytearray(data),
        base64.b64encode(data).decode(),
        "data:image/png;base64," + base64.b64encode(data).decode(),
        path.as_uri(),
    ]
    opened = [open_image(s) for s in sources]
    assert {o.id for o in opened} == {opened[0].id}
    assert len(opened[0].id) == 16 and int(opened[0].id, 16) >= 0
    for o in opened:
        assert o.size == (64, 32) and o.format == "PNG" and o.nbytes == len(data)
        assert o.image.mode == "RGB" and o.image.getpixel((0, 0)) == RED and o.image.getpixel((63, 0)) == BLUE
    assert opened[0].path == path and opened[1].path == path and opened[2].path is None


def test_base64_with_whitespace_and_urlsafe_alphabet():
    data = _encode(Image.new("RGB", (300, 200), (1, 2, 3)))
    b64 = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert open_image("\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))).size == (300, 200)


def test_different_content_gives_different_id():
    a = open_image(_encode(Image.new("RGB", (8, 8), RED)))
    b = open_image(_encode(Image.new("RGB", (8, 8), BLUE)))
    assert a.id != b.id


def test_source_image_is_returned_as_is():
    src = open_image(Image.new("RGB", (4, 4)))
    assert open_image(src) is src


def test_pil_input_is_copied_and_hashed_by_pixels():
    img = Image.new("RGB", (10, 10), RED)
    src = open_image(img)
    img.paste(BLUE, (0, 0, 10, 10))  # the caller keeps drawing on its image
    assert src.image.getpixel((5, 5)) == RED
    assert open_image(Image.new("RGB", (10, 10), RED)).id == src.id
    assert open_image(Image.new("RGB", (10, 10), BLUE)).id != src.id
    assert src.nbytes is None and src.path is None


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((5, 7), 200, np.uint8), (200, 200, 200)),
        (np.full((5, 7, 1), 9, np.uint8), (9, 9, 9)),
        (np.tile(np.array([10, 20, 30], np.uint8), (5, 7, 1)), (10, 20, 30)),
        (np.zeros((5, 7, 4), np.uint8), WHITE),  # fully transparent -> white
        (np.tile(np.array([255, 0, 0, 255], np.uint8), (5, 7, 1)), RED),
        (np.full((5, 7, 3), 0.5, np.float32), (128, 128, 128)),
        (np.ones((5, 7), bool), WHITE),
    ],
)
def test_numpy_inputs(array, expected):
    src = open_image(array)
    assert src.size == (7, 5) and src.format is None
    assert src.image.mode == "RGB" and src.image.getpixel((3, 2)) == expected


def test_numpy_noncontiguous_keeps_pixels():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    view = rgb[:, ::-1]  # negative strides
    assert np.array_equal(np.asarray(open_image(view).image), view)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((2, 2, 2, 3), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((4, 4), np.int16),
        np.full((4, 4), 2.0),
        np.full((4, 4), np.nan),
    ],
)
def test_numpy_bad_arrays_are_source_errors(array):
    with pytest.raises(ImageSourceError, match="numpy array"):
        open_image(array)


@pytest.mark.parametrize("source", [42, 3.5, None, object(), io.BytesIO(b"x"), ["a.png"]])
def test_unsupported_types_are_source_errors_not_type_errors(source):
    with pytest.raises(ImageSourceError, match="unsupported image source"):
        open_image(source)


def test_urls_are_refused_by_default():
    with pytest.raises(ImageSourceError, match="allow_urls=True"):
        open_image("https://example.com/cat.png")
    with pytest.raises(ImageSourceError, match="scheme"):
        open_image("ftp://example.com/cat.png")


@pytest.fixture
def http_server():
    """A local HTTP server (127.0.0.1, offline) serving ``routes`` {path: bytes}."""
    routes: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (stdlib naming)
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            if not self.path.endswith("nolength"):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", routes
    server.shutdown()
    server.server_close()


def test_url_download_when_allowed(http_server, monkeypatch):
    from awares_tool.images import fetch

    # Loopback is private: count exactly this server's address as public (tests/test_fetch.py has the policy).
    monkeypatch.setattr(fetch, "_public", lambda ip: str(ip) == "127.0.0.1")
    base, routes = http_server
    data = _encode(_split_red_blue((40, 20)))
    routes["/a.png"] = data
    routes["/big-nolength"] = b"\x89PNG" + b"\0" * 5000
    routes["/big"] = routes["/big-nolength"]
    allow = ImageLimits(allow_urls=True, url_max_bytes=4096)
    src = open_image(f"{base}/a.png", limits=allow)
    assert src.size == (40, 20) and src.id == open_image(data).id
    for path in ("/big", "/big-nolength"):  # declared and streamed size limit
        with pytest.raises(ImageTooLargeError, match="url_max_bytes"):
            open_image(base + path, limits=allow)
    with pytest.raises(ImageSourceError, match="404"):
        open_image(f"{base}/missing.png", limits=allow)


# ----------------------------------------------------------------------------- errors


def test_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "photo.jpg"
    for source in (missing, str(missing)):
        with pytest.raises(ImageNotFoundError, match="photo.jpg") as info:
            open_image(source)
        assert isinstance(info.value, FileNotFoundError) and str(missing) in str(info.value)


def test_missing_path_made_of_base64_letters_is_not_decoded_as_base64():
    with pytest.raises(ImageNotFoundError, match="abcdefgh"):
        open_image("abcdefgh")


def test_directory_is_not_found(tmp_path):
    with pytest.raises(ImageNotFoundError, match="directory"):
        open_image(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"just some text, not an image\n",
        random.Random(1).randbytes(4000),
        b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
    ],
    ids=["empty", "text", "random", "corrupt-png-header"],
)
def test_non_images_are_decode_errors(tmp_path, content):
    path = tmp_path / "file.png"
    path.write_bytes(content)
    for source in (path, content):
        with pytest.raises(ImageDecodeError):
            open_image(source).image


def test_bad_base64_and_data_uris():
    with pytest.raises(ImageDecodeError):
        open_image("data:image/png;base64,!!!notbase64!!!")
    with pytest.raises(ImageSourceError, match="data URI"):
        open_image("data:image/png,rawpixels")
    with pytest.raises(ImageDecodeError):
        open_image("data:image/png;base64,")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_raise_decode_error_not_oserror(tmp_path, fmt):
    img = Image.effect_noise((300, 200), 60).convert("RGB")
    data = _encode(img, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    src = open_image(path)  # the header is intact
    assert src.size == (300, 200)
    for use in (lambda s: s.image, lambda s: s.crop((0, 0, 10, 10)), lambda s: s.resized((100, 60))):
        with pytest.raises(ImageDecodeError, match="truncated"):
            use(open_image(path))


def test_decompression_bomb_header_is_refused_before_decoding():
    bomb = _png_declaring(30000, 30000)
    assert len(bomb) < 200
    with pytest.raises(ImageTooLargeError, match=r"900,000,000 pixels.*max_pixels"):
        open_image(bomb)


def test_pillow_bomb_error_is_typed_and_global_limit_untouched():
    before = Image.MAX_IMAGE_PIXELS
    # Over our raised limit's reach but over twice Pillow's own: Pillow refuses at open.
    with pytest.raises(ImageTooLargeError, match="MAX_IMAGE_PIXELS"):
        open_image(_png_declaring(20000, 20000), limits=ImageLimits(max_pixels=10**9))
    assert Image.MAX_IMAGE_PIXELS == before


def test_our_limit_decides_below_pillows_hard_limit():
    # 120 M pixels: over our default 100 M, under Pillow's hard limit (~179 M).
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        open_image(_png_declaring(12000, 10000))
    # 90 M pixels: Pillow would warn, but it is within our limit; no warning leaks out.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_image(_png_declaring(10000, 9000)).size == (10000, 9000)


def test_custom_pixel_and_byte_limits(tmp_path):
    data = _encode(Image.new("RGB", (100, 100)))
    with pytest.raises(ImageTooLargeError, match="100x100"):
        open_image(data, limits=ImageLimits(max_pixels=9999))
    with pytest.raises(ImageTooLargeError, match="max_bytes"):
        open_image(data, limits=ImageLimits(max_bytes=len(data) - 1))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    with pytest.raises(ImageTooLargeError, match="max_bytes"):
        open_image(path, limits=ImageLimits(max_bytes=10))
    with pytest.raises(ImageTooLargeError):
        open_image(Image.new("L", (200, 100)), limits=ImageLimits(max_pixels=100))
    with pytest.raises(ImageTooLargeError):
        open_image(np.zeros((200, 100), np.uint8), limits=ImageLimits(max_pixels=100))
    assert open_image(data, limits=ImageLimits(max_pixels=10000)).size == (100, 100)


def test_limits_are_frozen_and_validated():
    limits = ImageLimits()
    assert limits.max_bytes == 200 * 1024 * 1024 and limits.url_max_bytes == 20 * 1024 * 1024
    with pytest.raises(ValueError):
        limits.max_pixels = 5
    with pytest.raises(ValueError):
        ImageLimits(max_pixels=0)


def test_all_errors_share_the_image_error_base():
    for source in ("/definitely/missing.png", b"nope", 1):
        with pytest.raises(ImageError):
            open_image(source)


# ----------------------------------------------------------------------------- orientation and modes


def test_exif_orientation_6_swaps_size_without_decoding(tmp_path, monkeypatch):
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    _split_red_blue((60, 40)).save(path, quality=95, exif=exif.tobytes())

    def no_decode(self):
        raise AssertionError("open_image and .size must not decode pixels")

    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", no_decode)
        src = open_image(path)
        assert src.size == (40, 60)
    img = src.image
    assert img.size == (40, 60)
    # The stored left (red) half ends up on top after a clockwise quarter turn.
    assert _near(img.getpixel((20, 10)), RED) and _near(img.getpixel((20, 50)), BLUE)
    assert _mean_abs_diff(img, ImageOps.exif_transpose(Image.open(path)).convert("RGB")) < 1


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_open_reads_only_the_header(fmt, monkeypatch):
    data = _encode(_split_red_blue((60, 40)), fmt)

    def no_decode(self):
        raise AssertionError("open_image must not decode pixels")

    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", no_decode)
        m.setattr(type(Image.open(io.BytesIO(data))), "load", no_decode)
        src = open_image(data)
        assert src.size == (60, 40) and src.format == fmt
    assert src.image.size == (60, 40)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_exif_orientation_in_other_formats_is_known_from_the_header(fmt, monkeypatch):
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(_split_red_blue((60, 40)), fmt, exif=exif.tobytes())

    def no_decode(self):
        raise AssertionError("open_image and .size must not decode pixels")

    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", no_decode)
        m.setattr(type(Image.open(io.BytesIO(data))), "load", no_decode)
        src = open_image(data)
        assert src.size == (40, 60)
    assert src.image.size == (40, 60) and src.size == (40, 60)
    assert _near(src.image.getpixel((20, 10)), RED) and _near(src.image.getpixel((20, 50)), BLUE)


def test_exif_orientation_with_draft_resize(tmp_path, monkeypatch):
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    _split_red_blue((400, 200)).save(path, quality=95, exif=exif.tobytes())
    drafted = []
    real_draft = JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        drafted.append(self.size)
        return result

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    low = open_image(path).resized((100, 200))
    assert drafted == [(200, 100)]  # the draft size is asked in stored (unrotated) orientation
    assert low.size == (100, 200)
    assert _near(low.getpixel((50, 40)), RED) and _near(low.getpixel((50, 160)), BLUE)


def test_rgba_transparent_pixels_become_white():
    img = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 0, 0))  # fully transparent black
    img.putpixel((2, 0), (0, 0, 0, 128))  # half transparent black -> mid grey
    out = open_image(_encode(img)).image
    assert out.getpixel((0, 0)) == RED
    assert out.getpixel((1, 0)) == WHITE
    assert 120 <= out.getpixel((2, 0))[0] <= 135


@pytest.mark.parametrize("mode", ["LA", "PA"])
def test_alpha_modes_composite_over_white(mode):
    img = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 0, 255))
    img = img.convert("LA") if mode == "LA" else img.convert("RGB").convert("P").convert("PA")
    if mode == "PA":
        img.putpixel((1, 0), (img.getpixel((0, 0))[0], 0))
    out = to_rgb(img)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((1, 0)) == WHITE


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    assert open_image(_encode(pal)).image.getpixel((1, 0)) == BLUE
    out = open_image(_encode(pal, transparency=1)).image
    assert out.getpixel((0, 0)) == RED and out.getpixel((1, 0)) == WHITE


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_high_bit_depth_is_scaled_by_range_not_clipped(mode):
    img = Image.new(mode, (3, 1))
    for x, v in enumerate((1000, 2000, 3000)):
        img.putpixel((x, 0), v)
    out = to_rgb(img)
    assert [out.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_sixteen_bit_png_file():
    img = Image.new("I;16", (3, 1))
    for x, v in enumerate((0, 30000, 60000)):
        img.putpixel((x, 0), v)
    out = open_image(_encode(img)).image
    assert [out.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_float_and_constant_images():
    f = Image.new("F", (2, 1))
    f.putpixel((0, 0), -3.0)
    f.putpixel((1, 0), 7.5)
    out = to_rgb(f)
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((1, 0)) == WHITE
    assert to_rgb(Image.new("I;16", (2, 2), 40000)).getpixel((0, 0)) == WHITE
    assert to_rgb(Image.new("I;16", (2, 2), 7)).getpixel((0, 0)) == (7, 7, 7)


def test_one_bit_grey_and_cmyk_jpeg():
    bw = Image.new("1", (2, 1))
    bw.putpixel((1, 0), 1)
    out = open_image(_encode(bw)).image
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((1, 0)) == WHITE
    assert open_image(_encode(Image.new("L", (2, 2), 77))).image.getpixel((1, 1)) == (77, 77, 77)
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    src = open_image(_encode(cmyk, "JPEG", quality=95))
    assert src.format == "JPEG" and _near(src.image.getpixel((8, 8)), RED, tol=10)
    assert _near(src.resized((8, 8)).getpixel((4, 4)), RED, tol=10)


def test_multiframe_gif_uses_first_frame():
    frames = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (10, 10), BLUE)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = open_image(buf.getvalue())
    assert out.format == "GIF" and _near(out.image.getpixel((5, 5)), RED, tol=5)


MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(MODES),
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    via_png=st.booleans(),  # PIL input, or encoded bytes
)
def test_random_images_round_trip_to_rgb(mode, width, height, seed, via_png):
    rng = np.random.default_rng(seed)
    if mode == "F":
        img = Image.fromarray(rng.uniform(-1e3, 1e3, (height, width)).astype(np.float32))
    else:
        pixel_bytes = len(Image.new(mode, (1, 1)).tobytes())
        img = Image.frombytes(mode, (width, height), rng.bytes(pixel_bytes * width * height))
    source: object = img
    if via_png:  # PNG cannot store F, CMYK or 32-bit I: those go through TIFF
        source = _encode(img, "TIFF" if mode in ("F", "CMYK", "I") else "PNG")
    src = open_image(source)
    assert src.size == (width, height)
    out = src.image
    assert out.mode == "RGB" and out.size == (width, height)
    assert open_image(source).id == src.id


# ----------------------------------------------------------------------------- views


def test_tiny_and_extreme_aspect_images():
    one = open_image(_encode(Image.new("RGB", (1, 1), RED)))
    assert one.size == (1, 1) and one.crop((0, 0, 1, 1)).getpixel((0, 0)) == RED
    assert one.resized((1, 1)).size == (1, 1) and one.resized((3, 2)).getpixel((2, 1)) == RED
    wide = Image.new("RGB", (20000, 50), RED)
    wide.paste(BLUE, (19990, 0, 20000, 50))
    src = open_image(_encode(wide))
    assert src.size == (20000, 50)
    tail = src.crop((19990, 0, 20000, 50))
    assert tail.size == (10, 50) and tail.getpixel((5, 25)) == BLUE
    assert src.resized((2000, 5)).size == (2000, 5)


def test_crop_is_original_pixels_clipped_to_the_image():
    rgb = np.random.default_rng(3).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    src = open_image(_encode(Image.fromarray(rgb)))
    crop = src.crop((10, 5, 30, 25))
    assert crop.size == (20, 20) and np.array_equal(np.asarray(crop), rgb[5:25, 10:30])
    assert src.crop((-10, -10, 1000, 1000)).size == (80, 50)
    assert np.array_equal(np.asarray(src.crop((70, 40, 99, 99))), rgb[40:, 70:])
    with pytest.raises(ValueError, match="does not overlap"):
        src.crop((100, 0, 120, 10))
    with pytest.raises(ValueError):
        src.resized((0, 10))


def test_jpeg_draft_resize_matches_plain_resize(big_jpeg, monkeypatch):
    calls = []
    real_draft = JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        calls.append((mode, size, self.size))
        return result

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    src = open_image(big_jpeg)
    assert src.size == (4000, 3000) and src.format == "JPEG"
    low = src.resized((2000, 1500))
    assert calls == [("RGB", (2000, 1500), (2000, 1500))]  # libjpeg decoded at half scale
    assert src._rgb is None  # the full-resolution image was never decoded
    plain = Image.open(big_jpeg).convert("RGB").resize((2000, 1500), Image.Resampling.BICUBIC)
    assert low.size == (2000, 1500) and low.mode == "RGB"
    assert _mean_abs_diff(low, plain) < 3.0

    quarter = src.resized((1000, 750))
    assert calls[-1][2] == (1000, 750) and _mean_abs_diff(
        quarter, Image.open(big_jpeg).convert("RGB").resize((1000, 750), Image.Resampling.BICUBIC)
    ) < 3.0
    calls.clear()
    assert src.resized((2500, 1800)).size == (2500, 1800)  # more than half: full decode, no draft
    assert calls == []


def test_png_resize_equals_plain_resize():
    img = Image.effect_noise((300, 200), 50).convert("RGB")
    out = open_image(_encode(img)).resized((150, 100))
    assert _mean_abs_diff(out, img.resize((150, 100), Image.Resampling.BICUBIC)) == 0


def test_resized_returns_a_copy_not_the_cache():
    src = open_image(Image.new("RGB", (10, 10), RED))
    same = src.resized((10, 10))
    same.paste(BLUE, (0, 0, 10, 10))
    assert src.image.getpixel((0, 0)) == RED


def test_concurrent_first_access_decodes_once(monkeypatch):
    src = open_image(_encode(Image.effect_noise((400, 300), 40)))
    decodes = []
    real = SourceImage._decode

    def counting(self, draft_size=None):
        decodes.append(draft_size)
        return real(self, draft_size)

    monkeypatch.setattr(SourceImage, "_decode", counting)
    results = []
    threads = [threading.Thread(target=lambda: results.append(src.image)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(decodes) == 1 and all(r is results[0] for r in results)


# ----------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "jpg", "WEBP"])
def test_encoders_round_trip(fmt):
    img = _split_red_blue((32, 16)).convert("RGBA")
    data = encode_image(img, fmt)
    back = load_image(data)
    assert back.size == (32, 16) and _near(back.getpixel((2, 8)), RED, tol=30)
    assert load_image(to_base64(img, fmt)).size == (32, 16)
    uri = to_data_uri(img, fmt)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "JPG": "image/jpeg", "WEBP": "image/webp"}[fmt.upper()]
    assert uri.startswith(f"data:{mime};base64,") and load_image(uri).size == (32, 16)


def test_encode_unknown_format_is_value_error():
    with pytest.raises(ValueError, match="NOPE"):
        encode_image(Image.new("RGB", (2, 2)), "nope")


def test_png_with_its_exif_orientation_after_the_pixels_reports_the_upright_size():
    """#17: the eXIf chunk after IDAT was missed by the header read: boxes from the unrotated size, then a rotation."""
    import struct
    import zlib

    img = Image.new("RGB", (40, 20), "white")
    img.paste((255, 0, 0), (0, 0, 10, 20))  # a red left edge: after orientation 6 (rotate 90 cw) it is the top
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6
    payload = exif.tobytes()[6:]  # PNG's eXIf holds the TIFF structure without the "Exif\0\0" marker
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    end = data.rindex(b"IEND") - 4
    late = data[:end] + chunk + data[end:]
    assert Image.open(io.BytesIO(late)).info.get("exif") is None  # Pillow's header read does not see it
    src = open_image(late)
    assert src.size == (20, 40)  # known before any decode
    top = src.crop((0, 0, 20, 10))
    assert top.getpixel((10, 5)) == (255, 0, 0) and src.image.size == (20, 40)
