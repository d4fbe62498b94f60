"""What the LangChain tools and the MCP server share: arguments, image resolution, limits, payloads.

Both adapters expose the same four operations (list the regions, show the low-res view, cut crops,
answer a question) to a model that is not trusted: a tool call can name any path or URL. So the one
:class:`ImageService` here decides what an ``image`` argument may refer to (an id from the store, a
file under an allow-listed root, or, only when enabled, a public http(s) URL) and applies the pixel,
byte and crop-count limits; each adapter only converts its results to its framework's messages.
The argument types (:data:`ImageRef`, :data:`RegionNames`, :data:`Question`) and the result models
are declared once here, so both adapters publish the same schemas.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from awares_tool.crops import CropSet, get_crop_set
from awares_tool.errors import (
    AwaresError,
    ImageNotFoundError,
    ImageSourceError,
    MalformedRequestError,
    TooManyCropsError,
    UnknownRegionError,
)
from awares_tool.images import ImageLimits, SourceImage, encode_image, open_image
from awares_tool.lowres import cap_pixels, make_lowres_view, parse_lowres
from awares_tool.protocol import GetCropsArgs, tool_description
from awares_tool.store import ImageStore

__all__ = [
    "AdapterConfig", "ImageService", "ImageRef", "RegionNames", "Question",
    "ViewImageInput", "GetCropsInput", "AskImageInput",
    "RegionInfo", "RegionsResult", "ViewResult", "CropInfo", "CropsResult", "AskResult",
    "EncodedImage", "ViewOutput", "CropsOutput", "fetch_url", "check_public_host",
]

logger = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[0-9a-f]{16}$")  # SourceImage.id: 16 hex digits of a SHA-256
_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")

# ----------------------------------------------------------------------------- argument types
ImageRef = Annotated[str, Field(
    min_length=1, max_length=4096,
    description="The image: an image id returned by view_image, or the path of an image file inside one of "
    "the allowed folders (relative to it, or absolute).",
)]
RegionNames = Annotated[list[str], GetCropsArgs.model_fields["regions"]]
Question = Annotated[str, Field(min_length=1, max_length=4000, description="The question about the image.")]


class ViewImageInput(BaseModel):
    """Arguments of ``view_image``."""

    model_config = ConfigDict(extra="forbid")
    image: ImageRef


class GetCropsInput(GetCropsArgs):
    """Arguments of ``get_crops`` in the adapters: the protocol's ``regions`` plus which image."""

    image: ImageRef


class AskImageInput(BaseModel):
    """Arguments of ``ask_image``."""

    model_config = ConfigDict(extra="forbid")
    image: ImageRef
    question: Question


# ----------------------------------------------------------------------------- results
Size = tuple[int, int]


class RegionInfo(BaseModel):
    name: str
    description: str


class RegionsResult(BaseModel):
    """The crop set a server offers (``list_regions``)."""

    crop_set: str
    regions: list[RegionInfo]
    max_crops: int = Field(description="Most regions one get_crops call may ask for.")


class ViewResult(BaseModel):
    """What ``view_image`` returns beside the low-res image."""

    image_id: str = Field(description="Pass this as `image` to get_crops / ask_image.")
    image_size: Size = Field(description="(width, height) of the original image.")
    view_size: Size = Field(description="(width, height) of the low-res view sent.")
    view_tokens: int | None = Field(None, description="Visual tokens of the view for the configured model family.")
    full_tokens: int | None = Field(None, description="Visual tokens of the whole image at native resolution.")
    crop_set: str
    regions: list[str]


class CropInfo(BaseModel):
    region: str
    box: tuple[int, int, int, int] = Field(description="(left, top, right, bottom) in original pixels.")
    size: Size = Field(description="(width, height) of the crop image sent (after the pixel cap).")
    tokens: int | None = Field(None, description="Visual tokens of this crop.")


class CropsResult(BaseModel):
    """What ``get_crops`` returns beside the crop images."""

    image_id: str
    image_size: Size
    crops: list[CropInfo]
    tokens: int | None = Field(None, description="Visual tokens of all crops together.")
    full_tokens: int | None = Field(None, description="Visual tokens of the whole image at native resolution.")
    token_family: str | None = None


class AskResult(BaseModel):
    """The answer of ``ask_image`` and what it cost."""

    image_id: str
    answer: str
    answered: bool
    regions: list[str] = Field(description="Regions the model fetched at full resolution.")
    tokens_spent: int | None = Field(None, description="Visual tokens processed (low-res view + crops).")
    full_tokens: int | None = None
    rtr: float | None = Field(None, description="tokens_spent / full_tokens (retained token ratio).")
    pixel_ratio: float
    backend: str
    wall_s: float


@dataclass(frozen=True)
class EncodedImage:
    """An image ready for a message: encoded bytes, MIME type and a caption."""

    data: bytes
    mime_type: str
    caption: str


@dataclass(frozen=True)
class ViewOutput:
    result: ViewResult
    image: EncodedImage


@dataclass(frozen=True)
class CropsOutput:
    result: CropsResult
    images: list[EncodedImage]


# ----------------------------------------------------------------------------- configuration
class AdapterConfig(BaseModel):
    """Policy of one adapter instance: where images may come from and how much may be sent back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    roots: tuple[Path, ...] = Field((), description="Folders whose files may be opened; nothing else is.")
    limits: ImageLimits = Field(
        ImageLimits(max_pixels=50_000_000, max_bytes=64 * 1024 * 1024),
        description="Pixel/byte limits checked on the header, and the URL policy (off by default).",
    )
    max_crops: int = Field(4, ge=1, le=64, description="Most regions per get_crops call.")
    max_image_pixels: int = Field(
        1_605_632, ge=784, description="Downscale every image sent back (view, crops) to at most this many "
        "pixels; the default is Qwen2.5-VL's own max_pixels, so nothing the model could use is lost.",
    )
    crop_set: str = "awares9"
    lowres: str | float | None = Field(None, description="Low-res policy spec; None halves each side.")
    token_family: str | None = Field("qwen2.5-vl", description="Family used to report token costs.")
    image_format: Literal["png", "jpeg", "webp"] = "png"


def _check_root(root: Path) -> Path:
    real = Path(root).expanduser().resolve()
    if not real.is_dir():
        raise ValueError(f"allowed root {str(root)!r} is not an existing folder; pass a folder of images")
    return real


class ImageService:
    """The four adapter operations over a store, a crop set and the allowed roots.

    Args:
        config: Roots, limits and output settings.
        store: Where opened images are kept by id (a new bounded store by default).
        backend: Backend (object or spec string) for :meth:`ask`; resolved on first use, since loading
            a model is slow and many agents never call ``ask_image``.
    """

    def __init__(self, config: AdapterConfig | None = None, *, store: ImageStore | None = None,
                 backend: Any = None) -> None:
        self.config = config or AdapterConfig()
        self.roots: tuple[Path, ...] = tuple(_check_root(r) for r in self.config.roots)
        self.store = store if store is not None else ImageStore(limits=self.config.limits)
        self.crop_set: CropSet = get_crop_set(self.config.crop_set)
        self._lowres = parse_lowres(self.config.lowres)
        self._backend_spec = backend
        self._backend: Any = None
        self._backend_lock = threading.Lock()

    # -- descriptions shared by the adapters
    def describe(self, tool: str) -> str:
        """The description a model reads for ``tool`` (``list_regions``, ``view_image``, ...)."""
        where = "an image id from view_image or a path under " + (
            ", ".join(str(r) for r in self.roots) if self.roots else "(no folders are allowed)"
        )
        if tool == "get_crops":
            return (f"{tool_description(self.crop_set)}\n`image` is {where}. At most {self.config.max_crops} "
                    "regions per call. Returns each crop as an image with its pixel box and token cost.")
        if tool == "view_image":
            return ("Open an image and return a cheap low-resolution view of it plus its image id. Look at the "
                    f"view first; call get_crops with the id only for detail you cannot read. `image` is {where}.")
        if tool == "ask_image":
            return ("Answer a question about an image with a vision model that looks at a low-resolution view "
                    f"and fetches high-resolution crops only where needed. `image` is {where}. Returns the "
                    "answer and its visual-token cost.")
        if tool == "list_regions":
            return f"List the named regions get_crops accepts (crop set '{self.crop_set.name}')."
        raise ValueError(f"unknown tool {tool!r}")

    # -- image resolution
    def resolve(self, ref: str) -> SourceImage:
        """The image an ``image`` argument names: a stored id, a file under a root, or an allowed URL.

        Raises:
            ImageNotFoundError: Unknown id, or no such file under the roots.
            ImageSourceError: A path outside the roots, a refused URL or scheme.
            ImageTooLargeError: Over the pixel or byte limits.
        """
        if not isinstance(ref, str) or not ref.strip():
            raise ImageSourceError("`image` must be a non-empty string: an image id or a path under an allowed root")
        ref = ref.strip()
        if _ID_RE.match(ref) and ref in self.store:
            return self.store.get(ref)
        m = _SCHEME_RE.match(ref)
        if m and len(m.group(1)) > 1:  # a one-letter "scheme" is a Windows drive
            scheme = m.group(1).lower()
            if scheme in ("http", "https"):
                data = fetch_url(ref, self.config.limits)
                image = open_image(data, limits=self.config.limits)
            elif scheme == "file":
                path = urllib.request.url2pathname(urllib.parse.urlparse(ref).path)
                image = open_image(self.resolve_path(path), limits=self.config.limits)
            else:
                raise ImageSourceError(f"unsupported image reference {_short(ref)!r}: use an image id, a path "
                                       "under an allowed root, or (when the server allows URLs) an http(s) URL")
        else:
            try:
                image = open_image(self.resolve_path(ref), limits=self.config.limits)
            except ImageNotFoundError as e:
                if _ID_RE.match(ref):
                    raise ImageNotFoundError(f"unknown image id {ref!r} (evicted or never opened); call "
                                             "view_image again with the image's path") from e
                raise
        self.store.put(image)
        return image

    def resolve_path(self, ref: str) -> Path:
        """The real path of ``ref`` if it lies under an allowed root (after following every symlink).

        A relative path is tried under each root in order. ``..`` is refused outright; symlinks are
        allowed only when their target is inside a root too.
        """
        if not self.roots:
            raise ImageSourceError("this server allows no image folders, so file paths are refused; start it "
                                   "with --root DIR (or pass roots=[...]) to allow a folder")
        if "\x00" in ref:
            raise ImageSourceError("image path contains a NUL byte")
        path = Path(ref)
        if ".." in path.parts:
            raise ImageSourceError(f"image path {_short(ref)!r} contains '..'; give a path inside an allowed "
                                   f"root ({self._roots_text()})")
        candidates = [path] if path.is_absolute() else [root / path for root in self.roots]
        for candidate in candidates:
            try:
                real = candidate.resolve(strict=False)
            except (OSError, RuntimeError) as e:  # symlink loops
                raise ImageSourceError(f"cannot resolve image path {_short(ref)!r}: {e}") from e
            if not any(real.is_relative_to(root) for root in self.roots):
                raise ImageSourceError(f"image path {_short(ref)!r} is outside the allowed roots "
                                       f"({self._roots_text()}); only files inside them can be opened")
            if real.exists():
                return real
        raise ImageNotFoundError(f"no image file {_short(ref)!r} under the allowed roots ({self._roots_text()})")

    def _roots_text(self) -> str:
        return ", ".join(str(r) for r in self.roots) or "none"

    # -- operations
    def regions(self) -> RegionsResult:
        """The crop set's regions and the per-call crop limit."""
        return RegionsResult(
            crop_set=self.crop_set.name,
            regions=[RegionInfo(name=r.name, description=r.description) for r in self.crop_set.regions],
            max_crops=self.config.max_crops,
        )

    def view(self, ref: str) -> ViewOutput:
        """Open ``ref`` and return its low-res view (the model's cheap first look) and its id."""
        src = self.resolve(ref)
        view = self._fit(make_lowres_view(src, self._lowres))
        result = ViewResult(
            image_id=src.id, image_size=src.size, view_size=view.size,
            view_tokens=self._tokens(*view.size), full_tokens=self._tokens(*src.size),
            crop_set=self.crop_set.name, regions=self.crop_set.region_names(),
        )
        w, h = src.size
        caption = f"Low-resolution view ({view.width}x{view.height}) of image {src.id} ({w}x{h})."
        return ViewOutput(result, self._encode(view, caption))

    def crops(self, ref: str, regions: list[str]) -> CropsOutput:
        """Cut the named regions of ``ref`` from the original pixels.

        Raises:
            MalformedRequestError: ``regions`` is not a non-empty list of strings.
            TooManyCropsError: More than ``max_crops`` distinct regions.
            UnknownRegionError: A name the crop set does not have (the message lists the valid ones).
        """
        names = self._check_regions(regions)
        src = self.resolve(ref)
        w, h = src.size
        infos: list[CropInfo] = []
        images: list[EncodedImage] = []
        for name in names:
            box = self.crop_set.box(name, w, h)
            crop = self._fit(src.crop(box))
            info = CropInfo(region=name, box=box, size=crop.size, tokens=self._tokens(*crop.size))
            infos.append(info)
            tokens = f", {info.tokens} visual tokens" if info.tokens is not None else ""
            caption = f"Crop '{name}' of image {src.id}: box {box}, sent at {crop.width}x{crop.height}{tokens}."
            images.append(self._encode(crop, caption))
        counts = [i.tokens for i in infos]
        result = CropsResult(
            image_id=src.id, image_size=src.size, crops=infos,
            tokens=None if None in counts else sum(c for c in counts if c is not None),
            full_tokens=self._tokens(w, h), token_family=self.config.token_family,
        )
        return CropsOutput(result, images)

    def ask(self, ref: str, question: str) -> AskResult:
        """Answer ``question`` with :func:`~awares_tool.loop.crop_on_demand` on the configured backend."""
        from awares_tool.loop import crop_on_demand

        if not isinstance(question, str) or not question.strip():
            raise MalformedRequestError("`question` must be a non-empty string")
        src = self.resolve(ref)
        res = crop_on_demand(
            src, question, backend=self.backend, crop_set=self.crop_set, lowres=self._lowres,
            max_crops=self.config.max_crops, crop_max_pixels=self.config.max_image_pixels,
            image_limits=self.config.limits,
        )
        return AskResult(
            image_id=src.id, answer=res.answer, answered=res.answered, regions=res.regions,
            tokens_spent=res.tokens.spent, full_tokens=res.tokens.full, rtr=res.tokens.rtr,
            pixel_ratio=res.tokens.pixel_ratio, backend=res.backend, wall_s=res.wall_s,
        )

    @property
    def backend(self) -> Any:
        """The backend for :meth:`ask`, built on first use (None means the embedded default model)."""
        with self._backend_lock:
            if self._backend is None:
                from awares_tool.backends import resolve_backend

                self._backend = resolve_backend(self._backend_spec)
            return self._backend

    # -- helpers
    def _check_regions(self, regions: Any) -> list[str]:
        if not isinstance(regions, (list, tuple)) or not regions or not all(isinstance(r, str) for r in regions):
            raise MalformedRequestError(
                f"`regions` must be a non-empty list of region names such as ['3'] or ['0', '5'], got "
                f"{_short(repr(regions))}; valid names: {', '.join(self.crop_set.region_names())}"
            )
        names = list(dict.fromkeys(regions))
        if len(names) > self.config.max_crops:
            raise TooManyCropsError(
                f"{len(names)} regions requested, but at most {self.config.max_crops} are allowed per call; "
                "ask for the fewest regions that contain the evidence"
            )
        unknown = [n for n in names if not self.crop_set.has(n)]
        if unknown:
            raise UnknownRegionError(
                f"unknown region {_short(unknown[0])!r} for crop set {self.crop_set.name!r}; valid regions: "
                + ", ".join(repr(n) for n in self.crop_set.region_names())
            )
        return names

    def _fit(self, img: Any) -> Any:
        return cap_pixels(img, max_pixels=self.config.max_image_pixels)

    def _tokens(self, width: int, height: int) -> int | None:
        if not self.config.token_family:
            return None
        from awares_tool.tokens import get_family

        try:
            return get_family(self.config.token_family).count(width, height)
        except AwaresError as e:
            logger.warning("no token count for %dx%d: %s", width, height, e)
            return None

    def _encode(self, img: Any, caption: str) -> EncodedImage:
        fmt = self.config.image_format
        return EncodedImage(encode_image(img, fmt.upper()), f"image/{fmt}", caption)


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else f"{text[:n]}... ({len(text)} chars)"


# ----------------------------------------------------------------------------- URL policy
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
