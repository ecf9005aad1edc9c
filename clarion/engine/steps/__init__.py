"""The step types a workflow runs, one module each, listed in `registry.py`."""
