"""Errors every layer may raise and the CLI turns into one line and exit status 2."""


class UsageError(Exception):
    """A bad argument or setting: reported as one line, exit status 2."""
