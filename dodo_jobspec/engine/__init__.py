"""The only package that imports doit: task dicts, the DB backend, the reporter, the run."""
