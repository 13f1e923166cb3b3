"""`harness ui` in a real browser: headless Chromium renders the study's runs from the store."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from harness.ablate.runner import run_study
from harness.ablate.study_file import load_study
from harness.tracking.client import Tracker
from harness.tracking.ui import experiment_page, start_ui, stop_ui, wait_until_up

QUICKSTART = Path(__file__).parent.parent / "ablations" / "quickstart.yaml"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--virtual-time-budget=20000"]


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Debian's chromium is missing; .ci/run installs it")
        pytest.skip("no chromium (apt-get install chromium) to test the UI in a browser")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rendered(chromium: str, url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The DOM after the page's scripts ran: what a person would see, as text; with
    `screenshot`, the page as a PNG too (1400 x 900)."""
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             "--dump-dom", url], capture_output=True, text=True, timeout=120,
                            check=False)
    if screenshot is not None:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                        "--window-size=1400,900", f"--screenshot={screenshot}", url],
                       capture_output=True, timeout=120, check=False)
    return result.stdout


def test_the_ui_lists_a_study_and_each_trial_page_shows_it(chromium, shrink, settings, tmp_path):
    study = shrink(load_study(QUICKSTART))
    cells = run_study(study, settings)
    tracker = Tracker(settings.tracking_uri)
    experiment = tracker.experiment_id(study.name)
    port = free_port()
    server = start_ui(settings.tracking_uri, port=port)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, process=server)
        shot = tmp_path / "experiment.png"
        page = experiment_page(base, experiment, tracker.experiment_tags(experiment))
        assert "viewStateShareKey=" in page  # a study opens on its own view
        listing = rendered(chromium, page, tmp_path / "p1", shot)
        # the training view: its runs table, not the GenAI overview of traces
        assert ">Runs<" in listing and "Run Name" in listing
        assert ">Overview<" not in listing and "Detect Issues" not in listing
        assert f"<strong>{1 + len(cells)}</strong> matching runs" in listing  # parent + trials
        # the trials grouped by cell, each trial's row shown (not collapsed under the parent)
        assert "Group by: harness.group" in listing and "Additional runs" in listing
        for cell in cells:
            assert f">{cell.trial.user_attrs['cell']}<" in listing
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        assert tracker.experiments()[0] == (study.name, experiment)
        kind = tracker._client.get_experiment(experiment).tags
        assert kind["mlflow.experimentKind"] == "custom_model_development"
        trial = cells[0].trial  # one trial's own page (each page costs Chromium ~20 s here)
        page = rendered(chromium, f"{base}/#/experiments/{experiment}/runs/"
                        f"{trial.user_attrs['mlflow_run_id']}", tmp_path / "p2")
        assert trial.user_attrs["cell"] in page  # the trial's run name
        assert study.name in page and "val/loss" in page  # its parent and its metrics
    finally:
        stop_ui(server)
    assert server.poll() is not None
