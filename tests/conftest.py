"""Test configuration: real-service fixtures (Slurm, sshd) live in tests/services.py."""

pytest_plugins = ["tests.services"]
