"""Reading a spec: its text, YAML, schema, legacy translation and the resolved model.

Nothing here runs anything or writes outside the parse cache: ``resolve.load(path)`` turns a
file into a :class:`model.Spec`, or raises a SpecError naming file, line and spec path.
"""
