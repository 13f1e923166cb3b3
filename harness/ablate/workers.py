"""More local workers on one study: `harness ablate --jobs N`, callable from Python too.

Each worker is a separate `harness ablate` process given every setting of this one (stores,
heartbeat, devices, strategy, checkpoint location, seeds), so all of them run cells alike.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.ablate.runner import Settings


def worker_command(study_file: Path, settings: Settings,
                   seeds: tuple[int, ...] | None = None) -> list[str]:
    """The command line of one more worker with exactly these settings."""
    command = [sys.executable, "-m", "harness", "ablate", str(study_file),
               "--storage", settings.storage, "--tracking-uri", settings.tracking_uri,
               "--heartbeat-interval", str(settings.heartbeat.interval),
               "--grace-period", str(settings.heartbeat.grace), "--quiet"]
    if settings.devices is not None:
        command += ["--devices", str(settings.devices)]
    if settings.strategy is not None:
        command += ["--strategy", settings.strategy]
    if settings.checkpoint_dir is not None:
        command += ["--checkpoint-dir", settings.checkpoint_dir]
    if seeds:
        command += ["--seeds", *map(str, seeds)]
    return command


def spawn_workers(study_file: Path, settings: Settings, count: int,
                  seeds: tuple[int, ...] | None = None) -> list[subprocess.Popen]:
    """`count` worker processes on the study (run_study in this process makes one more)."""
    return [subprocess.Popen(worker_command(study_file, settings, seeds)) for _ in range(count)]
