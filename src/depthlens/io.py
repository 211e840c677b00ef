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

# Outputs claimed without --overwrite: their final rename must not replace anything, so
# two runs writing the same path cannot both "succeed" (the check before the work and the
# rename after it are minutes apart).
_EXCLUSIVE: set[Path] = set()


def _key(p: Path) -> Path:
    return Path(os.path.abspath(p))


def check_output_path(path: str | Path, overwrite: bool, option: str = "-o") -> Path:
    """Refuse an existing output unless ``overwrite``; check that it can be created, now.

    Called before any work: the folder must exist and accept a new file (a read-only or
    unwritable location fails here, not after the run). Without ``overwrite`` the path is
    claimed: the write at the end refuses to replace a file that appeared meanwhile.
    ``option`` names the flag the messages point to (``--gguf`` for export).
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise DepthlensError(f"output {p} already exists; pass --overwrite or choose another path")
    if not p.parent.exists():
        raise DepthlensError(f"the folder for output {p} does not exist; create {p.parent} first")
    if not p.parent.is_dir():
        raise DepthlensError(
            f"the folder for output {p} is a file: {p.parent}; choose another path"
        )
    check_writable(p, option)
    if overwrite:
        _EXCLUSIVE.discard(_key(p))
    else:
        _EXCLUSIVE.add(_key(p))
    return p


def check_writable(p: Path, option: str = "-o") -> None:
    """Create and remove a probe file next to ``p``: the folder takes new files."""
    try:
        fd, probe = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DepthlensError(
            f"cannot write output {p}: {exc.strerror or exc} in {p.parent}; choose a "
            f"writable folder with {option}"
        ) from exc


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask_(path: str | Path) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the modes the umask asks for.

    Some writers ignore the umask: ``mkstemp`` and safetensors create files 0600,
    ``mkdtemp`` folders 0700. An output must read like any file the user makes (0644 and
    0755 at umask 022), so it is set once, before it is published.
    """
    mask = _umask()
    p = Path(path)
    if p.is_symlink():
        return
    if not p.is_dir():
        os.chmod(p, 0o666 & ~mask)
        return
    for root, dirs, files in os.walk(p):
        os.chmod(root, 0o777 & ~mask)
        for f in files:
            fp = os.path.join(root, f)
            if not os.path.islink(fp):
                os.chmod(fp, 0o666 & ~mask)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]


def _publish_file(tmp: str, p: Path) -> None:
    """Move ``tmp`` to ``p``; never over an existing file when ``p`` was claimed."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs follow the umask
    if _key(p) not in _EXCLUSIVE:
        os.replace(tmp, p)
        return
    try:
        os.link(tmp, p)  # atomic: fails if p exists (create-exclusive)
    except FileExistsError:
        raise DepthlensError(
            f"output {p} already exists (another run wrote it meanwhile); pass --overwrite "
            f"or choose another path"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if p.exists():  # no hard links on this file system: the next best check
            raise DepthlensError(f"output {p} already exists; pass --overwrite") from None
        os.replace(tmp, p)
        return
    finally:
        _EXCLUSIVE.discard(_key(p))
    os.unlink(tmp)


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
        _publish_file(tmp, p)
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


def json_msg(exc: json.JSONDecodeError) -> str:
    """The decoder's message without its own trailing "at" (else: "… character at at line 2")."""
    return exc.msg.removesuffix(" at")


def parse_json_object(text: str, where: str, fix: str) -> dict[str, Any]:
    """``text`` as a JSON object, or a one-line error saying which file (``where``) and ``fix``."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"column {exc.colno}" if exc.lineno == 1 else f"line {exc.lineno}, column {exc.colno}"
        raise DepthlensError(f"{where} is not valid JSON ({json_msg(exc)} at {at}); {fix}") from exc
    if not isinstance(obj, dict):
        raise DepthlensError(f"{where} is a JSON {type(obj).__name__}, not an object; {fix}")
    return obj


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
        follow_umask_(tmp)  # mkdtemp makes 0700, safetensors 0600; outputs follow the umask
        if target.exists() or target.is_symlink():
            if not overwrite:
                raise DepthlensError(f"output {target} already exists; pass --overwrite")
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            _rename_noreplace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise disk_error(target, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(p: Path) -> None:
    """Remove a file, a link or a folder (the old output replaced with --overwrite)."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            p.unlink()


def _rename_noreplace(tmp: Path, target: Path) -> None:
    """Rename a folder into place unless something appeared there meanwhile."""
    try:
        os.rename(tmp, target)  # onto a non-empty folder or a file this fails
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise DepthlensError(
                f"output {target} already exists (another run wrote it meanwhile); pass "
                f"--overwrite or choose another path"
            ) from None
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file beside it and a rename.

    For resumable run states: a kill at any moment leaves the previous state or the new
    one, never half of one.
    """
    import torch  # here, not at the top: the other writers of this module need no torch

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_torch_state(
    path: Path, identity: dict[str, Any], what: str, fix: str, other_run: str
) -> dict[str, Any] | None:
    """The state :func:`atomic_torch_save` wrote at ``path`` for run ``identity``; None if none.

    A file torch cannot read is "cannot read {what} {path} (error); {fix}"; a state saved
    by a run of another ``identity`` raises ``other_run`` (resuming it would mix two runs).
    """
    import torch

    if not path.is_file():
        return None
    try:
        blob: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file is the user's to remove
        raise DepthlensError(f"cannot read {what} {path} ({type(exc).__name__}); {fix}") from exc
    if blob.get("identity") != identity:
        raise DepthlensError(other_run)
    return blob
