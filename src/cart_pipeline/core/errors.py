"""The one error type for input a user can fix."""


class InputError(ValueError):
    """Bad input (a manifest, a media file, a configuration value) that the user can fix.

    The CLI prints its message alone, without a traceback: it must say which row, file or
    setting is wrong and why, in one line.
    """
