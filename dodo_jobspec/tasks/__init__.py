"""Actions behind doit tasks: running units (unit.py) and their steps (steps.py)."""
