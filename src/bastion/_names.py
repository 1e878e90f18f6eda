"""How an error names what the user could have meant: close matches, then the known names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean", "known_names"]


def known_names(
    wanted: str, known: Iterable[object], *, noun: str = "columns", limit: int = 20
) -> str:
    """The tail of a "not found" message: ``did you mean 'digit'? columns are a, b, ..., y, z
    (65 in all)``.

    Close matches come first (difflib's, as a user mistypes). Up to ``limit`` names are
    listed in full; beyond that the first and the last ones, since the column a user looks for
    (a target, a label) is often the last of a wide table.
    """
    names = [str(n) for n in known]
    if not names:
        return f"there are no {noun}"
    hint = did_you_mean(wanted, names)
    if len(names) <= limit:
        listed = ", ".join(names)
    else:
        tail = min(5, limit // 2)
        listed = (
            f"{', '.join(names[: limit - tail])}, ..., {', '.join(names[-tail:])} "
            f"({len(names)} in all)"
        )
    return f"{hint}{noun} are {listed}"


def did_you_mean(wanted: object, names: Iterable[str]) -> str:
    """``did you mean 'a' or 'b'? `` for the names close to ``wanted`` (difflib's, as a user
    mistypes), or an empty string."""
    # compared without case: 'adv001' is ADV001, and 'dq005' is not MV005 first (a review);
    # names equal but for case are all shown, the one in the asked case first
    by_folded: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        by_folded.setdefault(name.casefold(), []).append(name)
    close = difflib.get_close_matches(str(wanted).casefold(), list(by_folded), n=3, cutoff=0.6)

    def likeness(name: str) -> float:
        return -difflib.SequenceMatcher(None, str(wanted), name).ratio()

    shown = [name for c in close for name in sorted(by_folded[c], key=likeness)]
    return f"did you mean {' or '.join(repr(c) for c in shown)}? " if shown else ""
