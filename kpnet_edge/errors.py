"""The one exception type users see: a clear, single-line message naming the file and the problem."""


class KpnetError(Exception):
    """Bad input or a failed step, worded for the user; the CLI prints it and exits with code 2."""
