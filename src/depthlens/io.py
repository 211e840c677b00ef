"""Atomic writes: a result is either complete at its target path or absent.

Everything depthlens writes goes to a temporary path in the same directory first and is
renamed into place, so an interruption (SIGINT, SIGKILL, disk full) never leaves a
half-written file or checkpoint at the target.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from depthlens.errors import DepthlensError


def check_output_path(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing output path unless ``overwrite``; make sure its parent exists."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise DepthlensError(f"output {p} already exists; pass --overwrite or choose another path")
    if not p.parent.exists():
        raise DepthlensError(f"the folder for output {p} does not exist; create {p.parent} first")
    return p


def disk_error(path: Path, exc: OSError) -> DepthlensError:
    """The one-line error for a failed write (disk full, read-only, permissions)."""
    if exc.errno == errno.ENOSPC:
        return DepthlensError(f"disk full while writing {path}; free space and run again")
    return DepthlensError(f"cannot write {path}: {exc.strerror or exc}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise disk_error(p, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-ordered JSON (deterministic bytes)."""
    text = json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n"
    atomic_write_bytes(path, text.encode())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``final`` only if the block completes."""
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield tmp
        if target.exists():
            if not overwrite:
                raise DepthlensError(f"output {target} already exists; pass --overwrite")
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise disk_error(target, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
