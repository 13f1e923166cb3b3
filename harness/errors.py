"""Errors shared by every layer of the harness; importing this module loads nothing else."""


class ConfigError(ValueError):
    """A setting that cannot work; the message names the field and the allowed values.

    Raised before any training starts, so a bad value never costs an earlier result.
    """

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
