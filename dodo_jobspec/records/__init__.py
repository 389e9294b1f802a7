"""What a run leaves on disk and how it is read back: the state folder, status and logs, and
the webhook outbox.

The engine and the tasks write records through :mod:`state`; the commands read them through
:mod:`status`. Nothing here decides what runs.
"""
