"""Numbers from annotation text files, with errors that name the file and line."""

from __future__ import annotations

import math

from kpnet_edge.errors import KpnetError


def parse_number(text: str, where: str, what: str = "number") -> float:
    """float(text), finite; KpnetError "where: 'text' is not a (finite) <what>" otherwise.

    where is "file:LINE"; what names the field in the finite-check message ("coordinate", ...).
    """
    try:
        value = float(text)
    except ValueError:
        raise KpnetError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise KpnetError(f"{where}: {text!r} is not a finite {what}")
    return value
