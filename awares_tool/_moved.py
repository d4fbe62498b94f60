"""Old module paths of awares 0.1, kept importable for one release with a ``DeprecationWarning``.

0.2 grouped the modules by concept (``crops/``, ``images/``, ``tokens/``, ``episode/``). Code that still
imports ``awares_tool.lowres`` and the like gets the module's new home, the very same module object, so
``isinstance`` checks and monkeypatches keep working. Remove this file (and its ``install()`` call in
``awares_tool/__init__.py``) in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["MOVED_MODULES", "install"]

#: old dotted path -> new dotted path
MOVED_MODULES: dict[str, str] = {
    "awares_tool.crop_files": "awares_tool.crops.files",
    "awares_tool.crop_mapping": "awares_tool.crops.mapping",
    "awares_tool.overlay": "awares_tool.crops.overlay",
    "awares_tool.image_sources": "awares_tool.images.sources",
    "awares_tool.store": "awares_tool.images.store",
    "awares_tool.lowres": "awares_tool.images.lowres",
    "awares_tool.token_rules": "awares_tool.tokens.rules",
    "awares_tool.result": "awares_tool.episode.result",
    "awares_tool.loop": "awares_tool.episode.loop",
    "awares_tool.adapters.url_policy": "awares_tool.images.fetch",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old path to the module at its new path (warning once per import)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there (the old path goes in the next release)",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported at its new path."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
