"""`mlflow server` as a child process: started over a store, waited for, stopped with all its
workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from harness.tracking.stores import check_tracking_uri

# MLflow 3.17's UI opens in its GenAI mode (traces, evaluations) unless told otherwise; this
# query opens an experiment on its runs table, the view of training runs.
TRAINING_VIEW = "workflowType=machine_learning"

# A study's runs table with its trials grouped by cell (mean over seeds in each group's row).
# The UI opens nested trials collapsed under their parent run and takes no URL to expand them;
# a view shared through an experiment tag can set the grouping, so each study carries one.
STUDY_VIEW = "harness-cells"
_SHARED_VIEW_TAG = "mlflow.sharedViewState."  # MLflow's own prefix, read by its UI


def study_view_tags(group_tag: str) -> dict[str, str]:
    """The experiment tag of STUDY_VIEW: runs grouped by the tag `group_tag`."""
    state = {"groupBy": {"aggregateFunction": "average",
                         "groupByKeys": [{"mode": "tag", "groupByData": group_tag}]}}
    return {_SHARED_VIEW_TAG + STUDY_VIEW: json.dumps(state)}


def experiment_page(url: str, experiment_id: str, experiment_tags: dict[str, str] | None = None
                    ) -> str:
    """The UI's page of one experiment's runs; a study's (its tags hold STUDY_VIEW) opens with
    its trials grouped by cell."""
    page = f"{url.rstrip('/')}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"
    if _SHARED_VIEW_TAG + STUDY_VIEW in (experiment_tags or {}):
        page += f"&viewStateShareKey={STUDY_VIEW}"
    return page


def start_ui(uri: str, host: str = "127.0.0.1", port: int = 5000) -> subprocess.Popen:
    """`mlflow server` over the store, in its own process group (it starts child workers)."""
    if uri.startswith("sqlite:///"):
        check_tracking_uri(uri)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    # no usage telemetry sent from a researcher's machine, and no banner asking about it
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           # its own dependencies' deprecation notices are not the user's to act on
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    return subprocess.Popen(command, start_new_session=True, env=env)


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
