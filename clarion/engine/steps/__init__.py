"""The step types a workflow runs, one module each; `result.py` is what every step hands back."""
