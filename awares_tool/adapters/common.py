"""What the LangChain tools and the MCP server share: arguments, image resolution, limits, payloads.

Both adapters expose the same four operations (list the regions, show the low-res view, cut crops,
answer a question) to a model that is not trusted: a tool call can name any path or URL. So the one
:class:`ImageService` here decides what an ``image`` argument may refer to (an id from the store, a
file under an allow-listed root, or, only when enabled, a public http(s) URL) and applies the pixel,
byte and crop-count limits; each adapter only converts its results to its framework's messages.
The argument types (:data:`ImageRef`, :data:`RegionNames`, :data:`Question`) and the result models
are declared once, in :mod:`awares_tool.adapters.schemas`, so both adapters publish the same schemas;
the download policy for URLs is :mod:`awares_tool.images.fetch`. Both are re-exported here,
so an adapter imports everything it needs from this module.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from awares_tool.adapters.schemas import (
    AskImageInput,
    AskResult,
    CropInfo,
    CropsOutput,
    CropsResult,
    EncodedImage,
    GetCropsInput,
    ImageRef,
    McpImageRef,
    Question,
    RegionInfo,
    RegionNames,
    RegionsResult,
    ViewImageInput,
    ViewOutput,
    ViewResult,
)
from awares_tool.adapters.schemas import Size  # noqa: F401  (re-exported)
from awares_tool.images.fetch import _short, check_public_host, fetch_url
from awares_tool.crops import CropSet, get_crop_set
from awares_tool.episode.episode import CropEpisode, tool_request
from awares_tool.errors import (
    AwaresError,
    ImageNotFoundError,
    ImageSourceError,
    MalformedRequestError,
)
from awares_tool.images import ImageLimits, SourceImage, encode_image, open_file, open_image
from awares_tool.images.budget import PixelBudget
from awares_tool.images.lowres import parse_lowres
from awares_tool.protocol import tool_description
from awares_tool.images.store import ImageStore

__all__ = [
    "AdapterConfig", "ImageService", "ImageRef", "McpImageRef", "RegionNames", "Question",
    "ViewImageInput", "GetCropsInput", "AskImageInput",
    "RegionInfo", "RegionsResult", "ViewResult", "CropInfo", "CropsResult", "AskResult",
    "EncodedImage", "ViewOutput", "CropsOutput", "fetch_url", "check_public_host",
]

logger = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[0-9a-f]{16}$")  # SourceImage.id: 16 hex digits of a SHA-256
_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


# ----------------------------------------------------------------------------- configuration
class AdapterConfig(BaseModel):
    """Policy of one adapter instance: where images may come from and how much may be sent back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    roots: tuple[Path, ...] = Field((), description="Folders whose files may be opened; nothing else is.")
    root_names: tuple[str, ...] = Field(
        (), description="What tool descriptions and errors call each root (same order as roots; default: its folder "
                        "name), so a model and its user do not learn the server's file system layout.")
    show_root_paths: bool = Field(False, description="Name roots by their absolute paths instead.")
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
    decode_budget_pixels: int = Field(
        150_000_000, ge=1, description="Pixels decoded at once over all concurrent calls (about 3 bytes each); a call "
                                       "waits until its image fits. An image larger than this still runs, alone.")


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
            a model is slow and many agents never call ``ask_image``. A spec is checked at once and
            loaded through the process-wide backend cache (shared with everything else that names it).
    """

    def __init__(self, config: AdapterConfig | None = None, *, store: ImageStore | None = None,
                 backend: Any = None) -> None:
        self.config = config or AdapterConfig()
        self.roots: tuple[Path, ...] = tuple(_check_root(r) for r in self.config.roots)
        names = list(self.config.root_names) + [r.name or str(r) for r in self.roots[len(self.config.root_names):]]
        self.root_names: tuple[str, ...] = tuple(str(r) for r in self.roots) if self.config.show_root_paths \
            else tuple(names[: len(self.roots)])
        self.store = store if store is not None else ImageStore(limits=self.config.limits)
        self.crop_set: CropSet = get_crop_set(self.config.crop_set)
        self._lowres = parse_lowres(self.config.lowres)
        if isinstance(backend, str) or backend is None:
            from awares_tool.backends.spec import parse_backend_spec

            parse_backend_spec(backend)  # a malformed spec fails when the server starts, not at the first ask
        self.decode_budget = PixelBudget(self.config.decode_budget_pixels)
        self._backend_spec = backend

    # -- descriptions shared by the adapters
    def describe(self, tool: str) -> str:
        """The description a model reads for ``tool`` (``list_regions``, ``view_image``, ...)."""
        where = "an image id from view_image or a path under " + (
            ", ".join(self.root_names) if self.roots else "(no folders are allowed)"
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
                image = self._open_path(path)
            else:
                raise ImageSourceError(f"unsupported image reference {_short(ref)!r}: use an image id, a path "
                                       "under an allowed root, or (when the server allows URLs) an http(s) URL")
        else:
            try:
                image = self._open_path(ref)
            except ImageNotFoundError as e:
                if _ID_RE.match(ref):
                    raise ImageNotFoundError(f"unknown image id {ref!r} (evicted or never opened); call "
                                             "view_image again with the image's path") from e
                raise
        self.store.put(image)
        return image

    def resolve_path(self, ref: str) -> Path:
        """The real path of ``ref`` if it lies under an allowed root (see :meth:`_resolve_path`).

        Raises:
            ImageSourceError: Also for every ``OSError`` of the lookup (a name too long, a permission denied),
                with the reason.
        """
        try:
            return self._resolve_path(ref)
        except AwaresError:
            raise
        except OSError as e:
            raise ImageSourceError(f"cannot use image path {_short(ref)!r}: {e.strerror or e}") from e

    def _resolve_path(self, ref: str) -> Path:
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

    def _open_path(self, ref: str) -> SourceImage:
        """Open ``ref`` under the roots: the checked path is opened once, without following a symlink swapped in
        since the check, and the file the descriptor refers to must still lie under a root."""
        real = self.resolve_path(ref)

        def under_roots(opened: Path) -> None:
            if not any(opened.is_relative_to(root) for root in self.roots):
                raise ImageSourceError(f"image path {_short(ref)!r} changed while it was opened and now points "
                                       f"outside the allowed roots ({self._roots_text()})")

        return open_file(real, limits=self.config.limits, no_symlinks=True, check_opened=under_roots,
                         label=ref if not self.config.show_root_paths else None)

    def _roots_text(self) -> str:
        return ", ".join(self.root_names) or "none"

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
        with self.decode_budget.hold(src.size):
            view = self._episode(src).first_view()
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

        The request is checked before the image is opened, so a bad one costs no decode or download.

        Raises:
            MalformedRequestError: ``regions`` is not a non-empty list of strings.
            TooManyCropsError: More than ``max_crops`` distinct regions.
            UnknownRegionError: A name the crop set does not have (the message lists the valid ones).
        """
        request = tool_request(regions, self.crop_set, self.config.max_crops)
        src = self.resolve(ref)
        with self.decode_budget.hold(src.size):
            turn = self._episode(src).fetch(request)
        infos: list[CropInfo] = []
        images: list[EncodedImage] = []
        for name, box, crop in zip(turn.names, turn.boxes, turn.images):
            info = CropInfo(region=name, box=box, size=crop.size, tokens=self._tokens(*crop.size))
            infos.append(info)
            tokens = f", {info.tokens} visual tokens" if info.tokens is not None else ""
            caption = f"Crop '{name}' of image {src.id}: box {box}, sent at {crop.width}x{crop.height}{tokens}."
            images.append(self._encode(crop, caption))
        counts = [i.tokens for i in infos]
        result = CropsResult(
            image_id=src.id, image_size=src.size, crops=infos,
            tokens=None if None in counts else sum(c for c in counts if c is not None),
            full_tokens=self._tokens(*src.size), token_family=self.config.token_family,
        )
        return CropsOutput(result, images)

    def ask(self, ref: str, question: str) -> AskResult:
        """Answer ``question`` with :func:`~awares_tool.episode.loop.crop_on_demand` on the configured backend."""
        from awares_tool.episode.loop import crop_on_demand

        if not isinstance(question, str) or not question.strip():
            raise MalformedRequestError("`question` must be a non-empty string")
        src = self.resolve(ref)
        with self.decode_budget.hold(src.size):
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
        """The backend for :meth:`ask`, loaded on first use (None means the embedded default model).

        Not kept here: the process-wide cache of :func:`~awares_tool.backends.resolve_backend` holds it, so
        ``awares_tool.backends.clear_cache()`` releases it and the next ``ask_image`` loads it again.
        """
        from awares_tool.backends import resolve_backend

        return resolve_backend(self._backend_spec)

    # -- helpers
    def _episode(self, src: SourceImage) -> CropEpisode:
        """A one-call episode: tools are stateless, the image travels by id."""
        family = self._family()
        return CropEpisode(src, crop_set=self.crop_set, lowres=self._lowres, max_crops=self.config.max_crops,
                           max_image_pixels=self.config.max_image_pixels,
                           model_max_pixels=getattr(family, "max_pixels", None))

    def _family(self) -> Any:
        if not self.config.token_family:
            return None
        from awares_tool.tokens import get_family

        try:
            return get_family(self.config.token_family)
        except AwaresError as e:
            logger.warning("unknown token family %r: %s", self.config.token_family, e)
            return None

    def _tokens(self, width: int, height: int) -> int | None:
        family = self._family()
        if family is None:
            return None
        try:
            return family.count(width, height)
        except AwaresError as e:
            logger.warning("no token count for %dx%d: %s", width, height, e)
            return None

    def _encode(self, img: Any, caption: str) -> EncodedImage:
        fmt = self.config.image_format
        return EncodedImage(encode_image(img, fmt.upper()), f"image/{fmt}", caption)
