"""`python -m dodo_jobspec.cli ...` is the `jobspec-do` command."""

from .quick import console

console()
