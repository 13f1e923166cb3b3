"""The workspace: the one folder where the harness keeps what runs write (`.harness/` of the
working directory unless told otherwise), passed as one value instead of a path and a constant.

    .harness/mlflow.db          the embedded MLflow store (runs, params, metrics, tags)
    .harness/artifacts/         artifacts of experiments made in that store
    .harness/optuna.db          the embedded Optuna storage of studies
    .harness/checkpoints/RUN/   each run's checkpoints (`checkpoint_root`: a folder or fsspec URL
                                every worker of a study can read, instead)
    .harness/cache/             downloaded and derived data: BIG-bench tasks, fetched checkpoints
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path(".harness")


@dataclass(frozen=True)
class Workspace:
    root: Path = DEFAULT_ROOT
    checkpoint_root: str | None = None  # None: root/checkpoints

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # a str is welcome too

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def checkpoints(self) -> Path | str:
        """Where runs keep their checkpoints, one folder per run id: a path or an fsspec URL."""
        return self.checkpoint_root or self.root / "checkpoints"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def served_artifacts(self) -> Path:
        """Where `harness server` keeps the artifacts it serves."""
        return self.root / "served-artifacts"

    @property
    def tracking_uri(self) -> str:
        """The embedded MLflow store: an absolute SQLite URL, the same from any folder."""
        return f"sqlite:///{(self.root / 'mlflow.db').resolve()}"

    @property
    def optuna_storage(self) -> str:
        return f"sqlite:///{(self.root / 'optuna.db').resolve()}"
