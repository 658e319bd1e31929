"""The one exception type a user can cause; the CLI turns it into a message and exit code 1."""


class YolopatchError(Exception):
    """Input that cannot be handled. The message names the place, the problem and the fix."""


class OptionError(YolopatchError):
    """A bad value for a command-line option: the CLI reports it as a usage error (exit 2) on `option`."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option
