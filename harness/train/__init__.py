"""Training: the LightningModule, its callbacks, the MLflow logger and the `train` entry point."""
