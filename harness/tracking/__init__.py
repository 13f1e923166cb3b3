"""MLflow, behind one package: stores and URLs (stores.py), the run client (client.py), provenance
(provenance.py), and the MLflow server processes (ui.py, server.py). Nothing else in the harness
calls MLflow except the report's reader. Importing this package loads nothing.
"""
