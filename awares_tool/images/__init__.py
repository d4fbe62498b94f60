"""Image input: turn any supported source into one lazily decoded :class:`SourceImage`, and views of it.

Modules, each importing only those above it:

* :mod:`.limits`: :class:`ImageLimits` (pixels, bytes, URL policy) and the checks that enforce them;
* :mod:`.convert`: upright RGB from any Pillow image, and encoding for transport;
* :mod:`.source`: :class:`SourceImage`, decoded lazily and at most once, crops of the original pixels;
* :mod:`.fetch`: the one URL fetcher (public hosts only, every hop vetted, bounded in size and time);
* :mod:`.sources`: one parser per kind of source (path, bytes, base64, data URI, URL, PIL, numpy);
* :mod:`.open`: :func:`open_image`, the entry point that dispatches to the parsers;
* :mod:`.store`: :class:`~awares_tool.images.store.ImageStore`, opened images by id under a memory budget;
* :mod:`.lowres`: the low-resolution view the model sees first, and pixel caps.
"""

from awares_tool.images.convert import encode_image, to_base64, to_data_uri, to_rgb
from awares_tool.images.limits import ImageLimits
from awares_tool.images.open import ImageSource, load_image, open_file, open_image
from awares_tool.images.source import SourceImage

__all__ = [
    "ImageLimits",
    "ImageSource",
    "SourceImage",
    "open_image",
    "open_file",
    "load_image",
    "to_rgb",
    "encode_image",
    "to_base64",
    "to_data_uri",
]
