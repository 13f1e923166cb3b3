"""Ablation studies: study files -> an Optuna study -> one tracked training run per trial."""
