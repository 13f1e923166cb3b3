"""Hugging Face `datasets` corpora, for users with a network (or a filled HF cache).

`datasets` is not a dependency of the harness: it is imported here only, when an hf: corpus is
asked for. Offline, set HF_DATASETS_OFFLINE=1 (or HF_HUB_OFFLINE=1) so that a dataset missing from
the local cache fails at once instead of after the hub's connection timeouts.
"""

from __future__ import annotations

from typing import Any

from harness.data.documents import ALLOWED, HF_PREFIX, Document
from harness.errors import ConfigError


def hf_documents(name_config: str) -> list[Document]:
    """Rows of the train split of NAME[:CONFIG], one document each, from its text column."""
    name, _, config = name_config.partition(":")
    spec = f"{HF_PREFIX}{name_config}"
    try:
        import datasets
    except ImportError:
        raise ConfigError("corpus", f"{spec!r} needs the Hugging Face `datasets` package, which is "
                          f"not installed (pip install datasets); {ALLOWED}") from None
    try:
        rows = datasets.load_dataset(name, config or None, split="train")
    except Exception as error:  # the hub raises many types: offline, not found, gated, timeout
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError("corpus", f"{spec!r} could not be loaded (no network, not in the local "
                          f"cache, or no such dataset): {reason}") from error
    column = text_column(rows, spec)
    return [Document(f"{name}/{i}", text) for i, text in enumerate(rows[column])]


def text_column(rows: Any, spec: str) -> str:
    """The "text" column, else the first column of strings."""
    features = dict(getattr(rows, "features", {}) or {})
    if "text" in features:
        return "text"
    for column, feature in features.items():
        if getattr(feature, "dtype", None) in ("string", "large_string"):
            return column
    raise ConfigError("corpus", f"{spec!r} has no text column (columns: {', '.join(features)}); "
                      "allowed: a dataset with a column of strings")
