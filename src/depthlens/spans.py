"""One notation for sets of blocks, everywhere: ``12-15`` (inclusive, as ``--blocks`` takes).

The terminal, JSON captions and the HTML report all print block spans through these two
functions, so the same blocks never appear as ``12..15``, ``[12, 16)`` and ``12–15``;
:func:`parse_blocks` reads the notation back (``--blocks``, ``--draft skip:…``).
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


def parse_blocks(text: str, *, strict: bool = False) -> tuple[int, ...]:
    """``'3,5,12-15'`` -> (3, 5, 12, 13, 14, 15): the inverse of :func:`blocks_text`.

    Order and repeats are kept, so a caller can name them when it refuses them. ``strict``
    also refuses an empty or reversed range (``3-``, ``5-2``), which the lenient form reads
    as ``3`` and as no block. Raises ``ValueError`` saying which part is wrong.
    """
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if hi or (sep and strict) else a
        except ValueError:
            raise ValueError(f"{part!r} is not a block index or range a-b") from None
        if strict and b < a:
            raise ValueError(f"range {part!r} is empty or negative")
        out.extend(range(a, b + 1))
    return tuple(out)
