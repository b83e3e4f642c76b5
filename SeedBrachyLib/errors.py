"""Errors raised for bad user input: each message names the value and what is allowed."""


class InputError(ValueError):
    """Bad input (value out of range, empty structure, malformed file, ...)."""


class Cancelled(RuntimeError):
    """A long operation was cancelled through its progress callback."""


def require_range(what, value, unit="", minimum=None, maximum=None, above_minimum=False):
    """``value`` as a float if it is a finite number (not a bool) with minimum <= value <= maximum
    (``above_minimum``: minimum < value); otherwise InputError naming ``what``, the value, its unit and the
    allowed range. None for ``minimum`` or ``maximum``: no bound."""
    import math

    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if number and minimum is not None:
        number = value > minimum if above_minimum else value >= minimum
    if number and maximum is not None:
        number = value <= maximum
    if not number:
        low = None if minimum is None else f"{'>' if above_minimum else '>='} {minimum:g}"
        high = None if maximum is None else f"<= {maximum:g}"
        allowed = " and ".join(b for b in (low, high) if b)
        raise InputError(f"{what} = {value!r} {unit} invalid: need a finite number {allowed} {unit}".replace("  ", " ")
                         .rstrip())
    return float(value)
