"""The one atomic file write: every file mgdsl writes for a user (specs, pictures, exports, runs) goes through it."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable


def atomic_write(path: str | Path, data: bytes | str | Callable[[Path], None]) -> None:
    """Write to PATH.tmp beside path, fsync it, then rename: a reader sees the old file or the new one, never half
    of one, even after an error, a crash or Ctrl-C. data: the bytes or text, or a function that writes a path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if callable(data):
            data(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        else:
            with open(tmp, "wb") as fh:
                fh.write(data.encode() if isinstance(data, str) else data)
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _sync_folder(path.parent)


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """A finished matplotlib figure as the bytes of one picture for atomic_write: laid out, saved at 100 dpi, and
    closed, so that a sweep or a long run keeps no figure open."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _sync_folder(folder: Path) -> None:
    """The rename itself survives a power cut only once the folder is synced (where the system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def output_problem(path: str | Path, formats: tuple[str, ...] = (), default: str = "") -> str | None:
    """Why a file cannot be written at PATH (no such folder, a folder, a suffix not in `formats`), or None: asked
    before the work, so that a long solve or render does not end in an internal error at the last step."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder, not a file"
    if not path.parent.is_dir():
        return f"the folder {path.parent} does not exist"
    fmt = path.suffix[1:].lower() or default
    if formats and fmt not in formats:
        return f"cannot write '.{fmt}' files (formats: {', '.join(formats)})"
    return None
