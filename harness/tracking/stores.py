"""Tracking stores: which one a run uses, whether it can be reached, and URLs made safe to print.

Embedded default: a SQLite file under the workspace (runs/workspace.py). `--tracking-uri` or
MLFLOW_TRACKING_URI point elsewhere (a tracking server, a database).
"""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness.errors import ConfigError
from harness.runs.workspace import Workspace

_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]+:)(?P<secret>[^@\s]+)(?=@)")


def redact(text: str) -> str:
    """Hide the password of every `scheme://user:password@host` in text."""
    return _PASSWORD_IN_URL.sub(r"\g<head>***", text)


def resolve_tracking_uri(uri: str | None, workspace: Workspace | None = None) -> str:
    """The URI given, else MLFLOW_TRACKING_URI, else the workspace's embedded SQLite store."""
    return (uri or os.environ.get("MLFLOW_TRACKING_URI")
            or (workspace or Workspace()).tracking_uri)


def check_tracking_uri(uri: str, patience: float = 0.0) -> None:
    """Fail fast, before any training, when the tracking store cannot be reached.

    `patience`: seconds to keep asking a tracking server that does not answer (a study's trial
    waits out a server restart as MLflow's client does; a user's first command fails at once).
    """
    if uri.startswith(("http://", "https://")):
        deadline = time.monotonic() + patience
        while True:
            try:
                with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
                    if response.status == 200:
                        return
                    reason: object = f"/health answered {response.status}"
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
            if time.monotonic() >= deadline:
                raise ConfigError("tracking_uri", f"{redact(uri)} is unreachable ({reason}); "
                                  "allowed: a running MLflow server, a sqlite:/// path, or a "
                                  "database URL")
            time.sleep(2.0)
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError("tracking_uri", f"cannot create {folder}: {error.strerror}") from None
        return
    if uri.startswith(("file:", "/")) or "://" not in uri:
        raise ConfigError("tracking_uri", f"{redact(uri)} is a file store, which MLflow 3 no "
                          "longer supports; allowed: sqlite:///PATH, http(s)://SERVER, or a "
                          "database URL")
    check_database_reachable("tracking_uri", uri)


def check_database_reachable(field_name: str, url: str) -> None:
    """A TCP connect to a database URL's host and port, with a short timeout.

    MLflow and Optuna retry a dead database for minutes; a user should learn it in seconds.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    default_ports = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
    port = parts.port or default_ports.get(parts.scheme.split("+")[0])
    if not parts.hostname or port is None:
        return  # a socket path or an unknown dialect: let its driver say what is wrong
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as error:
        raise ConfigError(field_name, f"{redact(url)} is unreachable ({error.strerror or error}); "
                          "allowed: a URL of a running database server") from None
