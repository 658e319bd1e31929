"""The one exception type a user can cause; the CLI turns it into a message and exit code 1."""


class YolopatchError(Exception):
    """Input that cannot be handled. The message names the place, the problem and the fix."""
