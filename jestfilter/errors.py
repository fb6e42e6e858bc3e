"""Errors every layer may raise and the CLI turns into one line and exit status 2."""


class UsageError(Exception):
    """A bad argument or setting: reported as one line, exit status 2."""


class Stopped(KeyboardInterrupt):
    """SIGTERM or Ctrl-C: the run stops where it is (``where`` says at which step and what the
    last checkpoint holds, when known), and the CLI says how to resume. A ``KeyboardInterrupt``,
    so no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.where = ""
