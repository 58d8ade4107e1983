"""The adapter methods, one folder each (config, adapter, search space, per-task defaults).

Importing this package registers every method in :mod:`increlora.registry`, in the order of the lines
below (the order the CLIs list them in); adding a method is one folder plus one line here.
"""

from __future__ import annotations

from increlora.methods import increlora  # noqa: F401, I001  (each import registers its method)
from increlora.methods import lora  # noqa: F401
from increlora.methods import adalora  # noqa: F401
from increlora.methods import dora  # noqa: F401
from increlora.registry import REGISTRY

METHODS: tuple[str, ...] = tuple(REGISTRY)
