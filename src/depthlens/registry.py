"""``Registry[T]``: named records of one kind, found by name with a did-you-mean.

Metrics, cut methods, residual schemes, exit rules and packaged models are each one
``Registry`` of frozen records. A record is declared once, where its behaviour lives, with
:meth:`Registry.register` (or the decorator form :meth:`Registry.decorator`); everything else
(CLI choices, errors, JSON, docs tables) reads the registry.

The registry reads like a read-only ``dict`` of name -> record (``name in reg``,
``reg[name]``, ``list(reg)`` gives the names, ``reg.values()`` the records), except that a
missing name is a user error with a suggestion, not a ``KeyError``.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from depthlens.errors import DepthlensError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: One column of a docs table: its header and the cell text of a record.
Column = tuple[str, Callable[[Any], str]]


class UnknownChoiceError(DepthlensError):
    """A name that is not in a registry (or a fixed set of choices); the message suggests one."""


def unknown_choice(what: str, got: str, choices: Iterable[str]) -> str:
    """``unknown WHAT 'x'; did you mean 'y'? (choose one of: …)`` (one line)."""
    choices = list(choices)
    close = difflib.get_close_matches(got, choices, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {what} '{got}'{hint} (choose one of: {', '.join(sorted(choices))})"


def _name_of(record: Any) -> str:
    return str(record.name)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


class Registry(Generic[T]):
    """Records of one kind by name, in registration order.

    ``what``: how errors name the choice (``"--method"``, ``"metric"``…). ``load``: called
    before every lookup to import the modules that declare records (for registries whose
    records live in optional modules); ``columns``: the docs table of :meth:`markdown`.
    """

    def __init__(
        self,
        what: str,
        *,
        key: Callable[[T], str] = _name_of,
        load: Callable[[], None] | None = None,
        columns: Sequence[Column] = (),
        check: Callable[[T], None] | None = None,
    ) -> None:
        self.what = what
        self._key = key
        self._load = load
        self._check = check
        self.columns: tuple[Column, ...] = tuple(columns)
        self._records: dict[str, T] = {}

    # -- declaring -------------------------------------------------------------------

    def register(self, record: T) -> T:
        """Add ``record`` and return it; a second, different record of the same name is a bug."""
        name = self._key(record)
        old = self._records.get(name)
        if old is not None and old != record:
            raise RuntimeError(f"{self.what} {name!r} is registered twice")
        if self._check is not None:
            self._check(record)
        self._records[name] = record
        return record

    def decorator(self, make: Callable[[F], T]) -> Callable[[F], F]:
        """Decorator form: register ``make(fn)`` for the decorated ``fn``; ``fn`` is unchanged.

        ``@CUT_METHODS.decorator(lambda f: CutMethod("last", "…", "baseline", select=f))``
        """

        def wrap(fn: F) -> F:
            self.register(make(fn))
            return fn

        return wrap

    @contextlib.contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Records registered inside the block are gone after it (for tests and examples)."""
        self._ensure_loaded()
        saved = dict(self._records)
        try:
            yield self
        finally:
            self._records = saved

    # -- reading ---------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._load is not None:
            self._load()

    def get(self, name: str) -> T:
        """The record called ``name``, or an :class:`UnknownChoiceError` with a did-you-mean."""
        self._ensure_loaded()
        if name not in self._records:
            raise UnknownChoiceError(unknown_choice(self.what, name, self._records))
        return self._records[name]

    __getitem__ = get

    def names(self) -> list[str]:
        """Every name, in registration order."""
        self._ensure_loaded()
        return list(self._records)

    def values(self) -> list[T]:
        """Every record, in registration order."""
        self._ensure_loaded()
        return list(self._records.values())

    def items(self) -> list[tuple[str, T]]:
        """(name, record) pairs, in registration order."""
        self._ensure_loaded()
        return list(self._records.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._records)

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._records

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._records)})"

    # -- documenting -----------------------------------------------------------------

    def markdown(self, records: Iterable[T] | None = None) -> str:
        """A markdown table of ``records`` (default: all) with this registry's columns."""
        if not self.columns:
            raise RuntimeError(f"the {self.what} registry declares no docs columns")
        rows = self.values() if records is None else list(records)
        lines = [
            "| " + " | ".join(h for h, _ in self.columns) + " |",
            "|" + "---|" * len(self.columns),
        ]
        lines += ["| " + " | ".join(_cell(f(r)) for _, f in self.columns) + " |" for r in rows]
        return "\n".join(lines)
