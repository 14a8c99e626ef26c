"""Printing the end of log files, and following them as they grow (``braid logs``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["tail"]

_POLL_S = 0.25
_BACK = 1 << 20


def _last_lines(path: Path, count: int) -> tuple[list[str], int]:
    """The last ``count`` lines of ``path`` and the offset of its end."""
    with path.open("rb") as handle:
        end = handle.seek(0, 2)
        handle.seek(max(0, end - _BACK))
        data = handle.read()
    lines = data.decode(errors="replace").splitlines()
    return (lines[-count:] if count else []), end


def tail(paths: list[Path], lines: int, follow: bool, echo: Callable[[str], None]) -> None:
    """Echo the last ``lines`` lines of each file (prefixed with its name when there are
    several) and, with ``follow``, every line written to them afterwards, until interrupted;
    a file that shrinks (rotated, truncated) is read again from its start."""
    prefix = {p: f"{p.stem} | " if len(paths) > 1 else "" for p in paths}
    offsets: dict[Path, int] = {}
    for path in paths:
        found, offsets[path] = _last_lines(path, lines) if path.exists() else ([], 0)
        for line in found:
            echo(prefix[path] + line)
    partial = dict.fromkeys(paths, b"")
    while follow:
        for path in paths:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offsets[path]:
                offsets[path], partial[path] = 0, b""
            if size == offsets[path]:
                continue
            with path.open("rb") as handle:
                handle.seek(offsets[path])
                data = partial[path] + handle.read()
                offsets[path] = handle.tell()
            *complete, rest = data.split(b"\n")
            partial[path] = rest
            for raw in complete:
                echo(prefix[path] + raw.decode(errors="replace"))
        time.sleep(_POLL_S)
