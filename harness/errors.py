"""Errors shared by every layer of the harness; importing this module loads nothing else."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting that cannot work; the message names the field and the allowed values.

    Raised before any training starts, so a bad value never costs an earlier result.
    """

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message

    def within(self, section: str) -> ConfigError:
        """The same error, its field named inside `section` (`chunk_size` -> `model.chunk_size`)."""
        return ConfigError(f"{section}.{self.field}", self.message)
