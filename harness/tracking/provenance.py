"""Provenance: where and with what a run ran, from git and the host, as tags on every run."""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = ("harness", "torch", "lightning", "mlflow", "optuna", "numpy", "tokenizers", "fvcore")


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
    source = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"
    return commit, dirty
