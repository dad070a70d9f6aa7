"""The one exception type a user sees: bad input, reported as a single line naming the file."""


class InputError(Exception):
    """Bad user input (missing file, corrupt video, no face, wrong size). The message is one line."""
