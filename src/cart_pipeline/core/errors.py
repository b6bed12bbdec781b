"""The error for input a user can fix, and the interruption no handler may take for one."""


class InputError(ValueError):
    """Bad input (a manifest, a media file, a configuration value) that the user can fix.

    The CLI prints its message alone, without a traceback: it must say which row, file or
    setting is wrong and why, in one line.
    """


class RunInterrupted(Exception):  # noqa: N818 - it is what happened, not an error in the code
    """SIGINT or SIGTERM arrived during a `kedro run` (raised by the run's signal handler,
    `hooks.InterruptedRunsHook`).

    An Exception, not a BaseException, so that Kedro's `on_pipeline_error` runs and MLflow
    ends the run FAILED. Code that turns any exception into a verdict on its input (a media
    decoder calling a file corrupt) must re-raise it: an interrupt is not a bad file.
    """

    # the signal's name once one arrived: a library that was running when it did (e.g. an
    # MLflow call) may re-raise the exception as its own, so the CLI asks this instead
    received: str | None = None
