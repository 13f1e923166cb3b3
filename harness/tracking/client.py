"""MLflow: stores, runs, provenance and redaction. The one module of the harness that calls MLflow
(besides the report's reader).

Embedded default: a SQLite backend store and an explicit artifact folder under `.harness/` in the
working directory. `--tracking-uri` or `MLFLOW_TRACKING_URI` point elsewhere (a tracking server).
"""

from __future__ import annotations

import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

HOME = Path(".harness")  # everything a run writes under the working directory
_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]+:)(?P<secret>[^@\s]+)(?=@)")
_PACKAGES = ("harness", "torch", "lightning", "mlflow", "optuna", "numpy", "tokenizers", "fvcore")


def redact(text: str) -> str:
    """Hide the password of every `scheme://user:password@host` in text."""
    return _PASSWORD_IN_URL.sub(r"\g<head>***", text)


def default_tracking_uri(home: Path = HOME) -> str:
    return f"sqlite:///{(home / 'mlflow.db').resolve()}"


def resolve_tracking_uri(uri: str | None, home: Path = HOME) -> str:
    """The URI given, else MLFLOW_TRACKING_URI, else the embedded SQLite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(home)


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


@dataclass
class Tracker:
    """A tracking store with its artifact folder; thin verbs over MlflowClient."""

    uri: str
    artifact_root: Path | None = None  # for new experiments in a local store

    @cached_property
    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.uri)

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        # A tracking server places artifacts itself (served artifacts, mlflow-artifacts:/...);
        # a local folder here would send every worker's artifacts to its own disk.
        if self.artifact_root is not None and not self.uri.startswith(("http://", "https://")):
            location = (self.artifact_root.resolve() / name).as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def start_run(self, experiment: str, run_name: str, tags: dict[str, str],
                  parent_run_id: str | None = None) -> str:
        tags = {k: redact(str(v)) for k, v in tags.items()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, redact(str(v))) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(run_id, params=items[start:start + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[start:start + 1000])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, redact(str(value)))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, redact(text), artifact_file)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
        """Every file under `folder`, kept in its layout, under `artifact_path` of the run."""
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    def end_run(self, run_id: str, status: str) -> None:
        """status: FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status)

    def reopen_run(self, run_id: str) -> None:
        """Mark a run RUNNING again: a resumed trial, or a study continued by another worker."""
        self.client.update_run(run_id, status="RUNNING")

    def discard_run(self, run_id: str, reason: str) -> None:
        """End a run that holds nothing of value KILLED with the reason, and delete it."""
        self.set_tags(run_id, {"stop_reason": reason})
        self.end_run(run_id, "KILLED")
        self.client.delete_run(run_id)

    def find_runs(self, experiment: str, tags: dict[str, str]) -> list:
        """The experiment's active runs carrying every one of `tags`, oldest first."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return []
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([found.experiment_id], filter_string=query,
                                       max_results=1000)
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    def logged_steps(self, run_id: str) -> dict[str, int]:
        """metric -> the last step it was logged at in this run."""
        keys = self.client.get_run(run_id).data.metrics
        return {key: max(m.step for m in self.client.get_metric_history(run_id, key))
                for key in keys}

    def run(self, run_id: str):
        return self.client.get_run(run_id)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def find_run(self, run_id: str):
        """The run, or None when the store has no run with this id (get_run raises instead)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def download_artifact(self, run_id: str, artifact_path: str, destination: Path) -> Path | None:
        """Copy one artifact of a run into `destination`; None when the run has no such file."""
        folder = artifact_path.rpartition("/")[0]
        listed = {a.path for a in self.client.list_artifacts(run_id, folder or None)}
        if artifact_path not in listed:
            return None
        destination.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, artifact_path, str(destination)))


def provenance() -> dict[str, str]:
    """Where and with what a run ran: tags on every run (lm-evaluation-harness style)."""
    import torch

    commit, dirty = _git_state()
    tags = {
        "git.commit": commit,
        "git.dirty": dirty,
        "host.name": socket.gethostname(),
        "host.platform": platform.platform(),
        "host.python": platform.python_version(),
        "torch.threads": str(torch.get_num_threads()),
        "torch.device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    for package in _PACKAGES:
        tags[f"version.{package}"] = _version(package)
    return tags


def _version(package: str) -> str:
    name = "memoryformer-harness" if package == "harness" else package
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_state() -> tuple[str, str]:
    """(commit, dirty) of the harness source checkout; 'unknown' outside a git checkout."""
    source = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"
    return commit, dirty


def start_ui(uri: str, host: str = "127.0.0.1", port: int = 5000) -> subprocess.Popen:
    """`mlflow server` over the store, in its own process group (it starts child workers)."""
    if uri.startswith("sqlite:///"):
        check_tracking_uri(uri)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    return subprocess.Popen(command, start_new_session=True)


def wait_until_up(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Poll `url`/health until it answers; raise if the server died or never answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the MLflow server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer /health within {timeout:.0f} s")


def stop_ui(process: subprocess.Popen) -> None:
    """Stop the server and all its workers: signal the whole process group."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
