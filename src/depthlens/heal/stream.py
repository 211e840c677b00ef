"""Healing text as an endless, resumable stream of token windows.

:class:`TextStream` tokenizes one document at a time (any amount of text, never all of it
at once), visits the documents in a seeded order that changes each epoch, joins them with
EOS and cuts ``[bos] + seq_len - 1``-token windows. :class:`FixedStream` cycles over given
:class:`~depthlens.data.windows.TokenWindows` instead (tests, in-process callers). Where a
stream stands is a :class:`Cursor`, a function of nothing but (seed, windows read): a run
resumed from a saved cursor reads exactly the windows an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch

from depthlens.data.sources import TextSource
from depthlens.data.windows import TokenWindows
from depthlens.errors import DepthlensError

Batch = tuple[torch.Tensor, torch.Tensor]  # input_ids, attention_mask: (B, T) int64


@dataclass(frozen=True)
class Cursor:
    """The next window starts at token ``offset`` of the ``doc``-th document of ``epoch``."""

    epoch: int = 0
    doc: int = 0
    offset: int = 0

    def to_dict(self) -> dict[str, int]:
        """Plain JSON form."""
        return asdict(self)


class HealData(Protocol):
    """What healing reads: batches from a cursor, and an identity for the record."""

    identity: dict[str, Any]

    def batches(self, batch_size: int, start: Cursor) -> Iterator[tuple[Batch, Cursor]]:
        """Endless (batch, cursor after it) from ``start``."""
        ...


def _order(n: int, seed: int, epoch: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return [int(i) for i in torch.randperm(n, generator=gen)]


class TextStream:
    """Windows of ``seq_len`` tokens streamed from ``source``, epoch after epoch."""

    def __init__(self, source: TextSource, tokenizer: Any, seq_len: int, seed: int = 0) -> None:
        if not source.docs or source.n_chars == 0:
            raise DepthlensError(f"the healing text {source.name!r} is empty; pass --data")
        self.source, self.tokenizer, self.seq_len, self.seed = source, tokenizer, seq_len, seed
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        self.identity = {
            "source": source.to_dict(),
            "tokenizer": str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__),
            "seq_len": seq_len,
            "seed": seed,
            "order": "documents in a seeded order per epoch, joined by EOS, cut into "
            "[bos] + seq_len - 1 token windows",
        }

    def _doc_tokens(self, i: int) -> list[int]:
        ids = list(self.tokenizer(self.source.docs[i], add_special_tokens=False)["input_ids"])
        return ids + ([int(self.eos)] if self.eos is not None else [])

    def windows(self, start: Cursor) -> Iterator[tuple[list[int], Cursor]]:
        """Endless (window token ids, cursor after it) from ``start``."""
        body = self.seq_len - (1 if self.bos is not None else 0)
        head = [int(self.bos)] if self.bos is not None else []
        epoch, k, off = start.epoch, start.doc, start.offset
        buf: list[int] = []
        while True:
            order = _order(len(self.source.docs), self.seed, epoch)
            while k < len(order):
                toks = self._doc_tokens(order[k])
                while off < len(toks):
                    take = toks[off : off + body - len(buf)]
                    buf.extend(take)
                    off += len(take)
                    if len(buf) == body:
                        yield head + buf, Cursor(epoch, k, off)
                        buf = []
                k, off = k + 1, 0
            epoch, k = epoch + 1, 0

    def batches(self, batch_size: int, start: Cursor) -> Iterator[tuple[Batch, Cursor]]:
        """Endless (batch, cursor after it) from ``start``."""
        rows: list[list[int]] = []
        for ids, cur in self.windows(start):
            rows.append(ids)
            if len(rows) == batch_size:
                t = torch.tensor(rows, dtype=torch.long)  # (B, T)
                yield (t, torch.ones_like(t)), cur
                rows = []


class FixedStream:
    """Cycle over fixed windows, in a seeded order that changes each epoch."""

    def __init__(self, windows: TokenWindows, seed: int = 0) -> None:
        if len(windows) == 0:
            raise DepthlensError("no healing windows; use a longer text or a smaller --seq-len")
        self.w, self.seed = windows, seed
        self.identity = {**windows.identity, "seed": seed, "order": "seeded per epoch"}

    def batches(self, batch_size: int, start: Cursor) -> Iterator[tuple[Batch, Cursor]]:
        """Endless (batch, cursor after it) from ``start`` (``doc`` = window index)."""
        epoch, k = start.epoch, start.doc
        rows: list[int] = []
        while True:
            order = _order(len(self.w), self.seed, epoch)
            while k < len(order):
                rows.append(order[k])
                k += 1
                if len(rows) == batch_size:
                    idx = torch.tensor(rows)
                    cur = Cursor(epoch, k, 0) if k < len(order) else Cursor(epoch + 1, 0, 0)
                    yield (self.w.input_ids[idx], self.w.attention_mask[idx]), cur
                    rows = []
            epoch, k = epoch + 1, 0
