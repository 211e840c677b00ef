"""Reading a local text file: UTF-8 (or a one-line error saying how to convert it), or JSONL.

Every way a file can be unusable (a directory, binary, not UTF-8, empty, a JSONL line
that is no object or lacks the text field) is a :class:`DepthlensError` with the fix.
"""

from __future__ import annotations

from pathlib import Path

from depthlens.errors import DepthlensError
from depthlens.io import parse_json_object

_ENCODING_FIX = "convert it to UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`"


def read_text_file(path: Path) -> str:
    """Read a file as UTF-8 text, with an actionable error for every way that fails."""
    if path.is_dir():
        raise DepthlensError(f"data path is a directory: {path}; pass a .txt or .jsonl file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DepthlensError(
            f"cannot read data file {path}: {e.strerror or e}; check that it exists and is readable"
        ) from e
    if b"\x00" in raw:
        raise DepthlensError(
            f"data file {path} looks binary (it contains NUL bytes); pass a UTF-8 text or "
            f".jsonl file (if it is UTF-16 text, {_ENCODING_FIX.replace('latin1', 'utf-16')})"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DepthlensError(
            f"data file {path} is not valid UTF-8 (bad byte {raw[e.start : e.start + 1]!r} at "
            f"offset {e.start}); {_ENCODING_FIX}"
        ) from e
    if not text.strip():
        raise DepthlensError(f"data file {path} contains no text; pass a file with some text")
    return text


def parse_jsonl(path: Path, text: str, text_field: str) -> list[str]:
    """The non-empty ``text_field`` of every line of a JSONL file, or a one-line error."""
    docs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record = parse_json_object(
            line,
            f"{path} line {lineno}",
            f'each line of a .jsonl file must be one JSON object, like {{"{text_field}": "..."}}',
        )
        if text_field not in record:
            keys = ", ".join(map(repr, record)) or "none"
            raise DepthlensError(
                f"{path} line {lineno} has no field {text_field!r} (its keys: {keys}); "
                "pass the right one with --text-field"
            )
        value = record[text_field]
        if not isinstance(value, str):
            raise DepthlensError(
                f"{path} line {lineno}: field {text_field!r} is {type(value).__name__}, "
                "not a string; pass a text field with --text-field"
            )
        if value.strip():
            docs.append(value.strip())
    if not docs:
        raise DepthlensError(f"data file {path} contains no text in field {text_field!r}")
    return docs
