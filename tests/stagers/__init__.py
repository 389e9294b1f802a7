"""Tests of the stagers (shared, ssh against real sshd nodes, flux-archive)."""
