"""What every layer above shares about a run: its config and checkpoint format, where the harness
keeps its files (workspace.py), and the names its MLflow records use (records.py). Importing this
package loads nothing.
"""
