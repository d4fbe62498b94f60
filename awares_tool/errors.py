"""The exception tree of awares.

Every error a user can cause (a bad image, a malformed crop request, a backend that is down or
missing) derives from :class:`AwaresError`, so one ``except AwaresError`` catches them all. Each
message names the bad value and, where there is one, the fix. Programmer mistakes (wrong argument
types, impossible settings) stay plain ``TypeError`` / ``ValueError``.

    AwaresError
    ├── ImageError                 the input image cannot be used
    │   ├── ImageNotFoundError     path does not exist (also a FileNotFoundError)
    │   ├── ImageDecodeError       empty, truncated, corrupt or not an image at all
    │   ├── ImageTooLargeError     over the pixel or byte limit (decompression bombs too)
    │   └── ImageSourceError       unsupported source type, URL refused or failed
    ├── RequestError               the model's crop request cannot be honoured
    │   ├── UnknownRegionError     a region name that the crop set does not have
    │   ├── TooManyCropsError      more crops than allowed in one request
    │   └── MalformedRequestError  a tool call that cannot be parsed
    ├── CropSetError               a crop-set spec or file that cannot be used
    ├── TokenCountError            the token accounting cannot count this image for this family
    ├── BackendError               the model backend failed
    │   ├── BackendUnavailableError  server down, model missing
    │   │   └── BackendSpecError     a backend spec or option that cannot be used (also a ValueError)
    │   └── BackendTimeoutError      no answer in time
    └── MissingExtraError          an optional dependency is not installed (also an ImportError)
"""

from __future__ import annotations

__all__ = [
    "AwaresError",
    "ImageError",
    "ImageNotFoundError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "ImageSourceError",
    "RequestError",
    "UnknownRegionError",
    "TooManyCropsError",
    "MalformedRequestError",
    "CropSetError",
    "TokenCountError",
    "BackendError",
    "BackendUnavailableError",
    "BackendSpecError",
    "BackendTimeoutError",
    "MissingExtraError",
    "require_extra",
]


class AwaresError(Exception):
    """Base class of every error raised on purpose by awares."""


class ImageError(AwaresError):
    """The input image cannot be used."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """The image path does not exist or is not a file."""


class ImageDecodeError(ImageError):
    """The bytes are empty, truncated, corrupt, or not an image format Pillow can read."""


class ImageTooLargeError(ImageError):
    """The image is over the configured pixel or byte limit (this includes decompression bombs)."""


class ImageSourceError(ImageError):
    """The image source has an unsupported type, or a URL was refused or failed to download."""


class RequestError(AwaresError):
    """A crop request from the model cannot be honoured as given."""


class UnknownRegionError(RequestError, KeyError):
    """A region name that the crop set does not define."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class TooManyCropsError(RequestError):
    """More crops requested in one turn than ``max_crops`` allows."""


class MalformedRequestError(RequestError):
    """A tool call whose syntax or arguments cannot be parsed."""


class CropSetError(AwaresError, ValueError):
    """A crop-set name, spec string or definition file that cannot be used."""


class TokenCountError(AwaresError, ValueError):
    """The visual-token count is undefined for this image size and model family."""


class BackendError(AwaresError):
    """The model backend failed to produce a reply."""


class BackendUnavailableError(BackendError):
    """The backend cannot be reached or loaded (server down, model path missing)."""


class BackendSpecError(BackendUnavailableError, ValueError):
    """A backend spec string or option that cannot be used: unknown kind, unknown option, bad value.

    A kind of :class:`BackendUnavailableError` (the backend cannot be built from it), so code that catches
    that keeps working. ``key`` is the offending option (None for the spec's form or kind), ``value`` what
    was given, ``valid`` the accepted option names or values, to show the user.
    """

    def __init__(self, message: str, *, key: str | None = None, value: object = None,
                 valid: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.key = key
        self.value = value
        self.valid = valid


class BackendTimeoutError(BackendError, TimeoutError):
    """The backend did not answer within the time limit."""


class MissingExtraError(AwaresError, ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def require_extra(module: str, extra: str, *, package: str | None = None):
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that provides it.

    Heavy backends (torch, transformers, llama-cpp-python, langchain, mcp, trl) are imported through
    this helper at the point of use, so that ``import awares_tool`` needs only pillow and pydantic.

    Args:
        module: Dotted module name to import, e.g. ``"transformers"``.
        extra: The awares extra that installs it, e.g. ``"hf"``.
        package: The distribution name to mention when it differs from ``module``.

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        name = package or module.split(".")[0]
        raise MissingExtraError(
            f"{name} is required for this feature but is not installed: pip install 'awares[{extra}]'"
        ) from e
