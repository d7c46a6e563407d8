"""The names of the built-in forms and losses, and the check of a form name (stdlib only, so that the
command line can list and check them without loading the numerical libraries)."""
from __future__ import annotations

import difflib
import re

FORM_NAMES = ("chinchilla", "power", "kaplan", "broken", "annealing")
LOSSES = ("huber", "mse", "mae")
_IDENTIFIER = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*$")


def check_form_name(form: str) -> None:
    """Raise for a single word that is not a built-in form (it would otherwise be read as an
    expression with no variables), suggesting the closest name."""
    if _IDENTIFIER.match(form) and form.strip() not in FORM_NAMES:
        close = difflib.get_close_matches(form.strip().lower(), FORM_NAMES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"unknown form {form.strip()!r}{hint}; built-in forms: {', '.join(FORM_NAMES)}, "
                         "or an expression such as 'E + A*N**-alpha'")
