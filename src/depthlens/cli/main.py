"""The ``depthlens`` command: a thin argparse shell over the Python API.

Each subcommand lives in its own module with ``register(subparsers)``; this module only
parses, dispatches, and turns :class:`DepthlensError` into one line on stderr + exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from depthlens._version import __version__
from depthlens.errors import DepthlensError

EPILOG = """examples:
  depthlens profile smollm2-135m --data wiki-calib -o out/profile.json
  depthlens report out/profile.json -o out/report.html
  depthlens plan smollm2-135m --method replaceme-ls --remove 4
  depthlens prune smollm2-135m --method replaceme-ls --remove 4 -o out/pruned
  depthlens compare smollm2-135m out/pruned --data wiki-eval
"""

_COMMAND_MODULES = (
    "depthlens.cli.profile_cmd",
    "depthlens.cli.cut_cmd",
    "depthlens.cli.eval_cmd",
    "depthlens.cli.report_cmd",
    "depthlens.cli.causal_cmd",
    "depthlens.cli.demo_cmd",
    "depthlens.cli.metrics_cmd",
    "depthlens.cli.lens_cmd",
    "depthlens.cli.train_cmd",
    "depthlens.cli.repr_cmd",
    "depthlens.cli.heal_cmd",
    "depthlens.cli.export_cmd",
    "depthlens.cli.generate_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every available subcommand registered."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="depthlens",
        description="Measure how a pretrained network uses its depth, cut what it does not "
        "use, and measure what the cut costs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"depthlens {__version__}")
    parser.add_argument(
        "--debug",
        dest="debug_global",
        action="store_true",
        help="show tracebacks (also after the subcommand)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that subcommand is not part of this build
                continue
            raise
        mod.register(sub)
    _add_shared_flags(sub)
    return parser


def _add_shared_flags(sub: argparse._SubParsersAction) -> None:
    """Every subcommand takes --quiet and --debug, whether or not its module adds them."""
    for p in set(sub.choices.values()):
        if "--quiet" not in p._option_string_actions:
            p.add_argument("--quiet", action="store_true", help="no progress bars")
        if "--debug" not in p._option_string_actions:
            p.add_argument("--debug", action="store_true", help="show tracebacks")


def _check_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """'did you mean …?' for a mistyped subcommand at any level (``lens trian``).

    argparse only lists the choices; each level whose first positional is a subcommand
    is checked in turn, following the words the user typed.
    """
    from depthlens.registry import unknown_choice

    rest, typed = list(argv), list[str]()
    while (sub := _subcommands(parser)) is not None:
        first = next((a for a in rest if not a.startswith("-")), None)
        if first is None:
            return
        if first not in sub.choices:
            what = f"'{' '.join(typed)}' subcommand" if typed else "command"
            raise DepthlensError(unknown_choice(what, first, sorted(sub.choices)))
        parser = sub.choices[first]
        typed.append(first)
        rest = rest[rest.index(first) + 1 :]


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    """The parser's subcommands when they are its first positional argument, else None."""
    positionals = [a for a in parser._actions if not a.option_strings]
    first = positionals[0] if positionals else None
    return first if isinstance(first, argparse._SubParsersAction) else None


def _unexpected(exc: BaseException) -> str:
    """One line for a failure that is not the user's input: what failed and how to see more."""
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" in {tb.tb_frame.f_code.co_name} ({Path(tb.tb_frame.f_code.co_filename).name})"
    msg = " ".join(str(exc).split())[:300] or "no message"
    if isinstance(exc, ImportError):
        return (
            f"a dependency failed to import: {type(exc).__name__}: {msg}; reinstall with "
            f"scripts/setup.sh (rerun with --debug for the traceback)"
        )
    return f"unexpected {type(exc).__name__}{where}: {msg} (rerun with --debug for the traceback)"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Inside: SIGTERM raises KeyboardInterrupt, as Ctrl-C (SIGINT) already does.

    So a `kill` (or a scheduler's stop) unwinds through the same ``finally`` blocks that
    remove temporary files and hooks. SIGINT itself is left to Python. The previous
    SIGTERM handler is restored on exit; outside the main thread (where handlers cannot
    be installed) this does nothing.
    """

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    usable = hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, handler) if usable else None
    try:
        yield
    finally:
        if usable:
            signal.signal(signal.SIGTERM, old)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("DEPTHLENS_DEBUG"))
    try:
        parser = build_parser()
        _check_command(parser, argv)
    except DepthlensError as exc:
        print(f"depthlens: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a broken install must not end in a traceback either
        if debug:
            raise
        print(f"depthlens: error: {_unexpected(exc)}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    debug = debug or bool(getattr(args, "debug", False))
    from depthlens.dist import process_group
    from depthlens.progress import set_quiet

    set_quiet(bool(getattr(args, "quiet", False)))

    try:
        # process_group is a no-op unless started by torchrun with WORLD_SIZE > 1
        with _sigterm_as_interrupt(), process_group():
            return int(args.func(args) or 0)
    except DepthlensError as exc:
        if debug:
            raise
        print(f"depthlens: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("depthlens: interrupted; nothing partial was written", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"depthlens: error: {_unexpected(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
