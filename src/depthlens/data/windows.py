"""Fixed, non-overlapping token windows cut from a text, in right-padded batches.

Every model compared on the same text, tokenizer, ``seq_len``, ``max_tokens`` and ``seed``
sees exactly the same windows; the identity (with a sha256 of the token ids) says so.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from depthlens.data.sources import TextSource
from depthlens.errors import DepthlensError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True, eq=False)
class TokenWindows:
    """Token windows of one text: ids and mask of shape (n_windows, seq_len), int64."""

    input_ids: torch.Tensor  # (N, T) int64
    attention_mask: torch.Tensor  # (N, T) int64, 1 = real token
    identity: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_windows(self) -> int:
        """Number of windows (rows)."""
        return len(self)

    @property
    def seq_len(self) -> int:
        """Tokens per window, BOS included."""
        return int(self.input_ids.shape[1])

    @property
    def n_tokens(self) -> int:
        """Number of real (unmasked) tokens over all windows."""
        return int(self.attention_mask.sum())

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able identity (never the tokens)."""
        return dict(self.identity)

    def row_batches(self, batch_size: int, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
        """Window indices in batches of up to ``batch_size``, in order: this rank's share.

        Under ``torchrun`` rank r of a world of size w takes windows r, r + w, r + 2w, …
        """
        if batch_size < 1:
            raise DepthlensError(f"--batch-size must be at least 1, got {batch_size}")
        idx = torch.arange(rank, len(self), world)
        return [idx[k : k + batch_size] for k in range(0, len(idx), batch_size)]

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (input_ids, attention_mask) batches of up to ``batch_size`` windows, in order."""
        for rows in self.row_batches(batch_size):
            yield self.input_ids[rows], self.attention_mask[rows]


def _check_window_args(seq_len: int, max_tokens: int | None, min_windows: int) -> None:
    if seq_len < 2:
        raise DepthlensError(
            f"--seq-len must be at least 2 (a BOS token plus one token to predict), "
            f"got {seq_len}; pass e.g. --seq-len 512"
        )
    if max_tokens is not None and max_tokens < seq_len:
        raise DepthlensError(
            f"--max-tokens {max_tokens} is smaller than one window of --seq-len {seq_len}; "
            "raise --max-tokens or lower --seq-len"
        )
    if min_windows < 1:
        raise DepthlensError(f"min_windows must be at least 1, got {min_windows}")


def _token_stream(docs: tuple[str, ...], tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Tokenize all docs in one batched call and join them with EOS (if any): (n_tokens,)."""
    if not docs:
        return torch.zeros(0, dtype=torch.long)
    from transformers.utils import logging as hf_logging

    # A document longer than the model's context is fine here (it is cut into windows
    # below): transformers' "Token indices sequence length is longer than …" is noise.
    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        ids: list[list[int]] = tokenizer(list(docs), add_special_tokens=False)["input_ids"]
    finally:
        hf_logging.set_verbosity(old)
    eos = tokenizer.eos_token_id
    if eos is None:
        flat = itertools.chain.from_iterable(ids)
    else:
        sep = [int(eos)]
        flat = itertools.chain.from_iterable(
            itertools.chain(sep, d) if i else d for i, d in enumerate(ids)
        )
    return torch.tensor(list(flat), dtype=torch.long)


def _select(n: int, k: int, seed: int) -> torch.Tensor:
    """Pick k of n window indices with a seeded permutation, returned in original order."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:k].sort().values


def _cut(
    stream: torch.Tensor,
    body: int,
    name: str,
    seq_len: int,
    max_tokens: int | None,
    seed: int,
    min_windows: int,
) -> tuple[torch.Tensor, int]:
    """Cut the stream into (N, body) windows, capped by max_tokens; also return N uncapped."""
    n_all = int(stream.numel()) // body
    if n_all == 0:
        raise DepthlensError(
            f"the text {name!r} has {stream.numel()} tokens, fewer than one window of "
            f"--seq-len {seq_len}; use a longer text or a smaller --seq-len"
        )
    windows = stream[: n_all * body].view(n_all, body)  # (n_all, body)
    cap = None if max_tokens is None else max_tokens // seq_len
    if cap is not None and n_all > cap:
        windows = windows[_select(n_all, cap, seed)]  # (cap, body)
    if windows.shape[0] < min_windows:
        fix = "raise --max-tokens" if cap is not None and n_all > cap else "use a longer text"
        raise DepthlensError(
            f"the text {name!r} gives {windows.shape[0]} window(s) of --seq-len {seq_len}, "
            f"fewer than the {min_windows} needed; {fix} or a smaller --seq-len"
        )
    return windows, n_all


def make_windows(
    source: TextSource,
    tokenizer: PreTrainedTokenizerBase,
    *,
    seq_len: int = 512,
    max_tokens: int | None = 16384,
    seed: int = 0,
    add_bos: bool = True,
    min_windows: int = 1,
) -> TokenWindows:
    """Cut ``source`` into non-overlapping windows of ``seq_len`` tokens.

    Docs are tokenized without special tokens and joined by the EOS id; with ``add_bos``
    (and a tokenizer that has a BOS token) each window is ``[bos] + seq_len - 1`` tokens.
    The trailing partial window is dropped. With ``max_tokens``, at most
    ``max_tokens // seq_len`` windows are kept, chosen by a seeded permutation and kept
    in text order.
    """
    _check_window_args(seq_len, max_tokens, min_windows)
    bos = tokenizer.bos_token_id if add_bos else None
    body = seq_len - 1 if bos is not None else seq_len
    stream = _token_stream(source.docs, tokenizer)  # (n_stream,)
    windows, n_all = _cut(stream, body, source.name, seq_len, max_tokens, seed, min_windows)
    if bos is not None:
        bos_col = torch.full((windows.shape[0], 1), int(bos), dtype=torch.long)
        windows = torch.cat([bos_col, windows], dim=1)  # (N, seq_len)
    input_ids = windows.contiguous()
    mask = torch.ones_like(input_ids)
    identity = {
        "source": source.to_dict(),
        "tokenizer": str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__),
        "seq_len": seq_len,
        "max_tokens": max_tokens,
        "seed": seed,
        "add_bos": bos is not None,
        "eos_separator": tokenizer.eos_token_id,
        "n_text_tokens": int(stream.numel()),
        "n_windows_available": n_all,
        "n_windows": int(input_ids.shape[0]),
        "n_tokens": int(mask.sum()),
        "ids_sha256": hashlib.sha256(input_ids.numpy().tobytes()).hexdigest(),
    }
    return TokenWindows(input_ids, mask, identity)


def pad_batch(seqs: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists to one length: (input_ids, attention_mask), each (B, T) int64.

    Right padding keeps position 0 the first real token of every row.
    """
    if not seqs:
        raise DepthlensError("pad_batch needs at least one sequence, got none")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask
