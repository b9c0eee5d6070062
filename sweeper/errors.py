"""The one exception type users see: a message a person can act on, and an exit code."""


class SweeperError(Exception):
    """An error caused by input or environment, reported without a traceback."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class StudyFileError(SweeperError):
    """A study file that cannot be read or does not describe a valid study."""


class DataError(SweeperError):
    """CIFAR-10 could not be found, read or downloaded."""


class StorageError(SweeperError):
    """The study storage could not be reached or used."""

    exit_code = 1
