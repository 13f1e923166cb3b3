"""`harness server`: workers log to one MLflow server over PostgreSQL, with served artifacts, and
a study survives the server being restarted under it. Real server, database and workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_ablate_workers import study_file

import harness
from harness.cli import main
from harness.tracking.client import Tracker
from harness.tracking.server import ServerConfig

# Subprocesses run the harness this test imported (the checkout, not a stale installed copy).
SOURCE = Path(harness.__file__).resolve().parent.parent
# MLflow's client retries a refused connection (MLFLOW_HTTP_REQUEST_MAX_RETRIES, default 7) with
# backoff FACTOR * 2**n seconds; factor 1 instead of 2 reaches a restarted server sooner.
RETRY_ENV = {"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
BEAT = ["--heartbeat-interval", "1", "--grace-period", "3"]


def harness_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SOURCE), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ablate(path: Path, cwd: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)  # each worker its own folder, as on its own machine
    return subprocess.Popen([sys.executable, "-m", "harness", "ablate", str(path), "--quiet",
                             *args], cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(workers: list[subprocess.Popen], timeout: float = 300) -> None:
    for worker in workers:
        _, stderr = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, stderr


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, as a scheduler or `kill -- -PGID` sends it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def serve(tmp_path):
    """serve(store, artifacts, port) -> `harness server` running; all stopped afterwards."""
    started: list[subprocess.Popen] = []

    def start(store: str, artifacts: Path, port: int) -> subprocess.Popen:
        log = tmp_path / f"server-{len(started)}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "harness", "server", "--backend-store-uri", store,
                 "--artifacts-destination", str(artifacts), "--port", str(port),
                 "--workers", "1"], cwd=tmp_path, env=harness_env(), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        line = f"workers pass --tracking-uri http://127.0.0.1:{port} "
        deadline = time.monotonic() + 120
        while line not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                pytest.fail(f"harness server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        return process

    yield start
    for process in started:
        stop(process)


def complete_cells(optuna_url: str, name: str) -> list[str]:
    study = optuna.load_study(study_name=name, storage=optuna_url)
    return sorted(t.user_attrs["cell"] for t in study.get_trials()
                  if t.state == TrialState.COMPLETE)


def study_runs(url: str, name: str) -> tuple[list, list]:
    """(parents, children) of a study, read through the server."""
    store = Tracker(url)
    runs = store.runs(name)
    parents = [r for r in runs if r.data.tags.get("harness.role") == "study"]
    children = [r for r in runs if r.data.tags.get("harness.role") == "trial"]
    return parents, children


def test_workers_share_a_server_on_postgresql_with_served_artifacts(tmp_path, tiny_set,
                                                                    make_database, serve):
    optuna_url, store = make_database("optuna"), make_database("mlflow")
    artifacts, port = tmp_path / "served", free_port()
    server = serve(store, artifacts, port)
    url = f"http://127.0.0.1:{port}"
    path = study_file(tmp_path, tiny_set, "served", steps=12, val_every=6,
                      axes={"model.chunk_size": [4, 8]}, seeds=[0, 1])
    args = ["--storage", optuna_url, "--tracking-uri", url, *BEAT]
    workers = [ablate(path, tmp_path / f"worker{i}", *args, env=harness_env())
               for i in range(3)]
    finish(workers)

    cells = [f"chunk_size={c},seed={s}" for c in (4, 8) for s in (0, 1)]
    assert complete_cells(optuna_url, "served") == cells  # each cell exactly once
    parents, children = study_runs(url, "served")
    assert len(parents) == 1 and sorted(r.info.run_name for r in children) == cells
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in [*parents, *children])

    run = children[0]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # uploaded to the server
    copy = Tracker(url).download_artifact(run.info.run_id, "config.yaml", tmp_path / "download")
    assert copy is not None and "memoryformer-nano" in copy.read_text()
    stored = [p for p in artifacts.rglob("config.yaml") if run.info.run_id in p.parts]
    assert len(stored) == 1 and stored[0].read_text() == copy.read_text()
    assert not list(tmp_path.glob("worker*/.harness/artifacts/**/config.yaml"))

    stop(server)  # SIGTERM to `harness server` stops MLflow's whole process group with it
    assert server.returncode == 0 and port_is_free(port)


def test_a_study_survives_a_restart_of_its_tracking_server(tmp_path, tiny_set, make_database,
                                                           serve):
    optuna_url, store = make_database("optuna"), make_database("mlflow")
    artifacts, port = tmp_path / "served", free_port()
    server = serve(store, artifacts, port)
    url = f"http://127.0.0.1:{port}"
    # long enough that both trials are mid-run when the server stops (metrics are written at
    # validations and every 5 s)
    path = study_file(tmp_path, tiny_set, "restarted", steps=600, val_every=40,
                      axes={"model.chunk_size": [4, 8]}, seeds=[0])
    args = ["--storage", optuna_url, "--tracking-uri", url, *BEAT]
    workers = [ablate(path, tmp_path / f"worker{i}", *args, env=harness_env(**RETRY_ENV))
               for i in range(2)]
    running = []
    deadline = time.monotonic() + 180
    while len(running) < 2 and time.monotonic() < deadline:  # both mid-trial, metrics logged
        time.sleep(0.2)
        assert all(w.poll() is None for w in workers), [w.communicate()[1] for w in workers]
        try:
            study = optuna.load_study(study_name="restarted", storage=optuna_url)
        except KeyError:  # not created yet
            continue
        running = [t for t in study.get_trials(states=(TrialState.RUNNING,))
                   if "mlflow_run_id" in t.user_attrs
                   and Tracker(url).run(t.user_attrs["mlflow_run_id"]).data.metrics.get(
                       "train/loss") is not None]
    assert len(running) == 2, "no two trials were running with metrics logged"

    stop(server)
    stopped = time.time() * 1000
    assert server.returncode == 0 and port_is_free(port)
    time.sleep(3)
    assert all(w.poll() is None for w in workers)  # waiting on the server, not failed
    serve(store, artifacts, port)  # the same store and artifacts on the same port
    restarted = time.time() * 1000
    finish(workers)

    assert complete_cells(optuna_url, "restarted") == ["chunk_size=4,seed=0",
                                                       "chunk_size=8,seed=0"]
    study = optuna.load_study(study_name="restarted", storage=optuna_url)
    assert [t.number for t in study.get_trials() if t.state == TrialState.FAIL] == []
    parents, children = study_runs(url, "restarted")
    assert len(parents) == 1 and len(children) == 2
    assert all(r.info.status == "FINISHED" for r in [*parents, *children])
    for run in children:  # every step's loss reached the store, before and after the restart
        history = Tracker(url).metric_entries(run.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == list(range(1, 601))
        times = [m.timestamp for m in history]
        assert min(times) < stopped and max(times) > restarted
        assert Tracker(url).download_artifact(run.info.run_id, "config.yaml",
                                              tmp_path / run.info.run_id) is not None


@pytest.mark.parametrize(("uri", "message"), [
    ("file:///tmp/mlruns", "is a file store, which MLflow 3 no longer supports"),
    ("mlruns", "is a file store"),
    ("http://127.0.0.1:5000", "is a tracking server, not a store"),
    ("postgresql://u:secret@127.0.0.1:1/none",
     "postgresql://u:***@127.0.0.1:1/none is unreachable"),
])
def test_a_bad_backend_store_is_one_line_before_anything_starts(uri, message, tmp_path,
                                                                monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["server", "--backend-store-uri", uri, "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness server: error: backend_store_uri: ")
    assert message in err and "allowed: " in err and err.count("\n") == 1
    assert "secret" not in err and not (tmp_path / ".harness").exists()


def test_a_port_in_use_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["server", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == (f"harness server: error: port: cannot listen on 127.0.0.1:{port} (Address "
                   "already in use); allowed: a free port on an address of this machine\n")


def test_the_command_mlflow_gets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = ServerConfig("sqlite:///x.db", artifacts_destination="served", port=5001)
    command = local.command()
    assert command[command.index("--artifacts-destination") + 1] == str(tmp_path / "served")
    assert "--serve-artifacts" in command and "--allowed-hosts" not in command
    assert local.url == local.local_url == "http://127.0.0.1:5001"

    cluster = ServerConfig("postgresql://postgres@db/mlflow", "s3://bucket/runs", "0.0.0.0")
    command = cluster.command()
    assert command[command.index("--artifacts-destination") + 1] == "s3://bucket/runs"
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    name = socket.gethostname()
    assert {name, f"{name}:*", "127.0.0.1:*", "10.*"} <= set(allowed)  # MLflow's and this host
    assert cluster.url == f"http://{name}:5000" and cluster.local_url == "http://127.0.0.1:5000"
    given = ServerConfig("sqlite:///x.db", host="0.0.0.0", allowed_hosts="mlflow.example.org")
    assert given.command()[-2:] == ["--allowed-hosts", "mlflow.example.org"]
