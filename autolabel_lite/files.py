"""Writing a user's files safely: a file appears complete or not at all.

Every output goes to a temporary file in the same folder and is moved into place with
``os.replace`` once complete, so a crash or a full disk mid-export never leaves a
truncated file over a good one.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import DataError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def replaced_when_done(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it becomes ``path``, on failure it is removed."""
    target = Path(path)
    check_writable(target)
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    os.chmod(staging, 0o666 & ~_UMASK)  # mkstemp's 0600 would make the output private
    try:
        yield Path(staging)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def check_writable(path: Path) -> None:
    """One line, before any work, for an output that cannot be written where asked."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DataError(f"{path}: the folder {folder} does not exist")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")


def same_file(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    a, b = Path(first), Path(second)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_outputs(inputs: list[str | os.PathLike], outputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse, before labeling, an output that would overwrite an input or another output."""
    named = [(flag, Path(path)) for flag, path in outputs.items() if path is not None]
    for flag, path in named:
        check_writable(path)
        for source in inputs:
            if same_file(path, source):
                raise DataError(f"{flag} {path}: is the input file; write the labels to another file")
    for number, (flag, path) in enumerate(named):
        for other_flag, other in named[number + 1 :]:
            if same_file(path, other):
                raise DataError(f"{other_flag} {other}: is also {flag}; give each output its own file")
