"""`harness server`: one MLflow tracking server that every worker of a study logs to.

Workers on many machines cannot share the embedded SQLite store (one file on one disk), and each
would keep its artifacts on its own disk. A server over a shared database (PostgreSQL on a
cluster) with served artifacts gives them one `--tracking-uri http://HOST:PORT` for both.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from harness.runs.workspace import Workspace
from harness.tracking.stores import check_tracking_uri, redact
from harness.tracking.ui import stop_ui, wait_until_up

ALL_INTERFACES = ("0.0.0.0", "::", "")
# Defaults for the server's environment (the caller's own settings win). No telemetry: the
# server often runs where there is no internet (a cluster's service node). No job execution:
# MLflow 3 otherwise starts a GenAI job runner with about seven huey consumer processes, which
# the harness never uses and which take tens of seconds to stop.
SERVER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass(frozen=True)
class ServerConfig:
    """What `mlflow server` is started with; `check()` validates it before anything starts."""

    backend_store_uri: str = field(default_factory=lambda: Workspace().tracking_uri)
    # a folder or fsspec/s3 URL
    artifacts_destination: str = field(default_factory=lambda: str(Workspace().served_artifacts))
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    allowed_hosts: str | None = None  # Host headers MLflow accepts; see allowed_host_headers()

    @property
    def url(self) -> str:
        """The URL workers pass as `--tracking-uri`: this machine's name when bound to all."""
        host = socket.gethostname() if self.host in ALL_INTERFACES else self.host
        return f"http://{_bracketed(host)}:{self.port}"

    @property
    def local_url(self) -> str:
        """Where this machine reaches the server (to wait until it is up)."""
        host = "127.0.0.1" if self.host in ALL_INTERFACES else self.host
        return f"http://{_bracketed(host)}:{self.port}"

    @property
    def artifacts_location(self) -> str:
        """The destination as MLflow gets it: a URL as given, a folder made absolute.

        Relative to the server's working directory would differ between one start and the next.
        """
        if "://" in self.artifacts_destination:
            return self.artifacts_destination
        return str(Path(self.artifacts_destination).expanduser().resolve())

    def check(self) -> None:
        """Raise ConfigError (field and allowed values) for input that cannot give a server."""
        check_backend_store_uri(self.backend_store_uri)
        if not 1 <= self.port <= 65535:
            raise ConfigError("port", f"{self.port} is out of range; allowed: 1 to 65535")
        if self.workers < 1:
            raise ConfigError("workers", f"{self.workers}; allowed: 1 or more")
        if "://" not in self.artifacts_destination:
            folder = Path(self.artifacts_location)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ConfigError("artifacts_destination", f"cannot create {folder}: "
                                  f"{error.strerror}; allowed: a writable folder or an "
                                  "fsspec URL such as s3://BUCKET/PATH") from None
        _check_port_free(self.host, self.port)

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "mlflow", "server",
                   "--backend-store-uri", self.backend_store_uri,
                   "--serve-artifacts", "--artifacts-destination", self.artifacts_location,
                   "--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]
        allowed = self.allowed_host_headers()
        return command + (["--allowed-hosts", allowed] if allowed else [])

    def allowed_host_headers(self) -> str | None:
        """None keeps MLflow's default (localhost and private IPs). Bound to all interfaces, the
        printed URL names this machine, which MLflow would reject: add its names to the default.
        """
        if self.allowed_hosts or self.host not in ALL_INTERFACES:
            return self.allowed_hosts
        from mlflow.server.security_utils import get_default_allowed_hosts

        names = dict.fromkeys((socket.gethostname(), socket.getfqdn()))
        return ",".join([*get_default_allowed_hosts(), *names, *(f"{n}:*" for n in names)])


def check_backend_store_uri(uri: str) -> None:
    """A backend store must be a database: SQLite on one machine, PostgreSQL for a cluster."""
    allowed = ("allowed: sqlite:///PATH (one machine) or a database URL such as "
               "postgresql://USER@HOST:5432/DB")
    if uri.startswith(("http://", "https://")):
        raise ConfigError("backend_store_uri", f"{redact(uri)} is a tracking server, not a "
                          f"store; {allowed}")
    if uri.startswith(("file:", "/")) or "://" not in uri:
        raise ConfigError("backend_store_uri", f"{redact(uri)} is a file store, which MLflow 3 "
                          f"no longer supports; {allowed}")
    try:
        check_tracking_uri(uri)  # sqlite: its folder can be made; a database: it answers
    except ConfigError as error:
        raise ConfigError("backend_store_uri", error.message) from None


def _check_port_free(host: str, port: int) -> None:
    """A port in use fails here in one line, not as a server log minutes later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError("port", f"cannot listen on {host}:{port} ({error.strerror}); "
                              "allowed: a free port on an address of this machine") from None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def start_server(config: ServerConfig, timeout: float = 120.0) -> subprocess.Popen:
    """Check the config, start `mlflow server` in its own process group, return once it answers.

    Its own group because it starts worker processes: `stop_server` signals them all. A server
    that exits or never answers is stopped and the error raised (RuntimeError, TimeoutError).
    """
    config.check()
    env = {**SERVER_ENV, **os.environ}  # the caller's environment wins
    process = subprocess.Popen(config.command(), env=env, start_new_session=True)
    try:
        wait_until_up(config.local_url, timeout=timeout, process=process)
    except BaseException:
        stop_server(process)
        raise
    return process


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its workers finish their requests), then SIGKILL."""
    stop_ui(process)
