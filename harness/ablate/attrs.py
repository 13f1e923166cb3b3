"""The trial user attributes the harness reads and writes: one contract for every module.

A retry copies CARRIED from the attempt it retries, so the cell keeps its MLflow run, its
checkpoint and its counts however often its workers die.
"""

RUN_ID = "mlflow_run_id"  # the trial's MLflow run
CHECKPOINT = "checkpoint"  # where its checkpoint is (a path or an fsspec URL)
CHECKPOINT_STEP = "checkpoint_step"  # the last step a checkpoint was written at
CELL = "cell"  # the readable cell label, e.g. chunk_size=4,seed=0
REASON = "failure_reason"  # why an attempt failed (absent: its worker died)
FINAL = "final"  # a failure that is the cell's result: not retried
SURPLUS = "surplus"  # a trial that found its cell already held, and did nothing
INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM: retried, never final
DEATHS = "worker_deaths"  # attempts of this cell whose worker died (stale heartbeat, SIGKILL)
RAISES = "raised_attempts"  # attempts of this cell that raised an exception

CARRIED = (RUN_ID, CHECKPOINT, CHECKPOINT_STEP, CELL, DEATHS, RAISES)
