"""Errors raised for bad user input: each message names the value and what is allowed."""


class InputError(ValueError):
    """Bad input (value out of range, empty structure, malformed file, ...)."""


class Cancelled(RuntimeError):
    """A long operation was cancelled through its progress callback."""
