"""Bursters: other places a burstable task can run when the primary cannot take it."""
