"""`python -m dodo_jobspec.cli ...` is the `jobspec-do` command."""

from .app import console

console()
