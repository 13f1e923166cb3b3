"""Study reports: MLflow runs -> pandas -> tables (Markdown, LaTeX, CSV), seaborn figures and an
index.md. Entry point: `harness.report.build.build_report`; only `reader.py` talks to MLflow, and
nothing here imports the model or training code, so a report runs from the tracking store alone.
"""
