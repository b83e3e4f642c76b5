"""Output paths: nothing the user has is overwritten silently, and an output is never one of the inputs.

Checked before any computation, so a bad ``--out`` fails at once rather than after the work.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError


def check_output(path, kind="file", force=False, inputs=()):
    """Validate an output ``path`` before writing; returns it as a :class:`~pathlib.Path`.

    Args:
        path: the file or folder to be written.
        kind: "file" or "folder" (what will be written there).
        force: allow replacing an existing output of the same kind.
        inputs: input paths; the output may be none of them nor lie inside an input folder.

    Raises InputError when the output exists (without ``force``), is of the other kind, is an
    input, or its parent folder cannot be created.
    """
    if kind not in ("file", "folder"):
        raise InputError(f"output kind {kind!r} invalid: use 'file' or 'folder'")
    out = Path(path).expanduser()
    resolved = out.resolve()
    for item in inputs:
        if item is None:
            continue
        src = Path(item).expanduser().resolve()
        if resolved == src or (src.is_dir() and src in resolved.parents):
            raise InputError(f"output {str(out)!r} is the input {str(item)!r} (or inside it): choose another output")
    if out.exists():
        if kind == "file" and out.is_dir():
            raise InputError(f"output {str(out)!r} is a folder; a file is to be written there: give a file name")
        if kind == "folder" and not out.is_dir():
            raise InputError(f"output {str(out)!r} is a file; a folder is to be written there: give a folder name")
        if not force and (kind == "file" or any(out.iterdir())):
            raise InputError(f"output {str(out)!r} exists: choose another name or pass --force to replace it")
    parent = resolved.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"output {str(out)!r}: {str(parent)!r} is not a folder")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"output {str(out)!r}: cannot create its folder ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise InputError(f"output {str(out)!r}: the folder {str(parent)!r} is not writable")
    return out
