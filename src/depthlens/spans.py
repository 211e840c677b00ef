"""One notation for sets of blocks, everywhere: ``12-15`` (inclusive, as ``--blocks`` takes).

The terminal, JSON captions and the HTML report all print block spans through these two
functions, so the same blocks never appear as ``12..15``, ``[12, 16)`` and ``12–15``.
"""

from __future__ import annotations

from collections.abc import Iterable


def span_text(start: int, n: int) -> str:
    """Blocks ``start .. start + n - 1``: ``'12-15'``, or ``'12'`` for one block."""
    return str(start) if n == 1 else f"{start}-{start + n - 1}"


def blocks_text(indices: Iterable[int]) -> str:
    """Sorted indices as runs: ``[3, 5, 12, 13, 14, 15]`` -> ``'3, 5, 12-15'``."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(set(indices)):
        if run and i != run[-1] + 1:
            out.append(span_text(run[0], len(run)))
            run = []
        run.append(i)
    if run:
        out.append(span_text(run[0], len(run)))
    return ", ".join(out)
