"""The single error type raised for every data problem."""


class DatasetError(ValueError):
    """A one-line, user-facing description of a dataset problem."""
