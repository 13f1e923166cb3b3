"""tracking.py against a real MLflow SQLite store: runs, provenance, redaction, bad URIs."""

from __future__ import annotations

import socket

import pytest

from harness.errors import ConfigError
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker
from harness.tracking.provenance import provenance
from harness.tracking.stores import check_tracking_uri, redact, resolve_tracking_uri


@pytest.mark.parametrize("text, expected", [
    ("postgresql://alice:s3cr3t@db:5432/optuna", "postgresql://alice:***@db:5432/optuna"),
    ("https://bob:pa:ss@mlflow.example/x", "https://bob:***@mlflow.example/x"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ("postgresql://alice@db/optuna", "postgresql://alice@db/optuna"),
    ("a=mysql://u:p@h/d b=postgresql://v:q@i/e", "a=mysql://u:***@h/d b=postgresql://v:***@i/e"),
])
def test_redact_hides_passwords_only(text, expected):
    assert redact(text) == expected


def test_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    expected = f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri(None, Workspace(tmp_path)) == expected
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://server:5000")
    assert resolve_tracking_uri(None, Workspace(tmp_path)) == "http://server:5000"
    assert resolve_tracking_uri("sqlite:///x.db", Workspace(tmp_path)) == "sqlite:///x.db"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("uri, message", [
    (f"http://127.0.0.1:{free_port()}", "is unreachable"),
    ("./mlruns", "file store"),
    ("postgresql://nobody:hunter2@127.0.0.1:1/none", "is unreachable"),
])
def test_unreachable_or_unsupported_tracking_uri_is_refused(uri, message):
    with pytest.raises(ConfigError, match=message) as error:
        check_tracking_uri(uri)
    assert error.value.field == "tracking_uri"
    assert "hunter2" not in str(error.value)


def test_run_round_trip_in_a_real_sqlite_store(tmp_path):
    uri = Workspace(tmp_path).tracking_uri
    check_tracking_uri(uri)
    tracker = Tracker(uri, artifact_root=tmp_path / "artifacts")
    run_id = tracker.start_run("exp", "run-1", {"storage": "postgresql://u:pw@h/db"})
    tracker.log_params(run_id, {f"p{i}": i for i in range(150)})  # more than one batch
    tracker.log_metrics(run_id, {"val/loss": 2.5}, step=10)
    tracker.log_metrics(run_id, {"val/loss": 2.0}, step=20)
    tracker.log_text(run_id, "url: mysql://a:b@c/d\n", "config.yaml")
    tracker.end_run(run_id, "FINISHED")

    run = tracker.run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run-1"
    assert run.data.tags["storage"] == "postgresql://u:***@h/db"
    assert len(run.data.params) == 150 and run.data.metrics["val/loss"] == 2.0
    assert tracker.metric_history(run_id, "val/loss") == [(10, 2.5), (20, 2.0)]
    artifact = tmp_path / "artifacts" / "exp" / run_id / "artifacts" / "config.yaml"
    assert artifact.read_text() == "url: mysql://a:***@c/d\n"


def test_provenance_names_code_versions_and_machine():
    tags = provenance()
    assert len(tags["git.commit"]) == 40 or tags["git.commit"] == "unknown"
    assert tags["git.dirty"] in ("true", "false", "unknown")
    assert tags["version.torch"].startswith("2.") and tags["torch.device"] == "cpu"
    assert int(tags["torch.threads"]) >= 1 and tags["host.name"]
