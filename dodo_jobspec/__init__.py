"""jobspec-do: a Make-style runner for JobSpec files.

The public API is small: ``load(path) -> Spec`` reads, validates and resolves a spec file.
"""

from .errors import JobspecError, Problem, SpecError
from .model import Group, Spec, Task
from .resolve import load

__version__ = "0.1.0"

__all__ = ["Group", "JobspecError", "Problem", "Spec", "SpecError", "Task", "__version__", "load"]
