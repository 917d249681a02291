"""Keep every file the app touches inside the folders it was given.

Paths arrive from three places: users (a folder to create or open), the catalog (paths stored
relative to the workspace) and import forms (a folder under one of the configured import
roots). All are resolved with symlinks followed before the check, so a link inside a root
that points elsewhere is refused like a '..' path. Refusal messages name the path as it was
typed, never where it resolves to, so they reveal nothing about the server's layout.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from serieslabeler.errors import PipelineError

StrPath = str | os.PathLike[str]


class OutsideRoot(PipelineError, ValueError):
    """A path that is, or resolves to, somewhere outside the folder it must stay in (a user-facing
    error: the command line exits 2 with it, the app shows it)."""


def confine(root: StrPath, path: StrPath, what: str = "path") -> Path:
    """``path`` resolved (relative paths against ``root``), if it lies inside ``root``.

    ``root`` itself counts as inside; the path need not exist (callers may be about to create it).
    """
    typed = os.fspath(path)
    if "\x00" in typed:
        raise OutsideRoot(f"{what} {typed!r} contains a NUL byte")
    base = Path(root).resolve()
    try:
        resolved = (base / typed).resolve()  # an absolute ``typed`` replaces ``base``
    except (OSError, RuntimeError):  # a symlink loop: RuntimeError before Python 3.13, OSError after
        raise OutsideRoot(f"{what} {typed!r} cannot be resolved (a symlink loop?)") from None
    if not resolved.is_relative_to(base):
        raise OutsideRoot(f"{what} {typed!r} is outside the folder it must stay in")
    return resolved


def relative_inside(root: StrPath, relative: str, what: str = "path") -> Path:
    """A catalog-stored path: relative, without '..', and inside ``root`` once resolved.

    Stricter than :func:`confine`, which accepts absolute paths inside the root: a stored path
    that is absolute or climbs with '..' means the catalog was tampered with or corrupted.
    Windows forms (backslashes, drive letters) are refused too, whatever the server's OS.
    """
    if "\x00" in relative:
        raise OutsideRoot(f"{what} {relative!r} contains a NUL byte")
    if not relative:
        raise OutsideRoot(f"{what} is empty")
    windows = PureWindowsPath(relative)
    if PurePosixPath(relative).is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        raise OutsideRoot(f"{what} {relative!r} is absolute; a stored path must be relative")
    if ".." in windows.parts:  # PureWindowsPath splits on both '/' and '\\'
        raise OutsideRoot(f"{what} {relative!r} contains '..'")
    return confine(root, relative, what)


def confine_any(roots: list[StrPath], path: StrPath, what: str = "path") -> Path:
    """``path`` resolved inside the first of ``roots`` that contains it (import folders).

    A relative path is tried against each root in turn.
    """
    typed = os.fspath(path)
    if not roots:
        raise OutsideRoot(f"{what} {typed!r} refused: no import folders are configured")
    for root in roots:
        try:
            return confine(root, typed, what)
        except OutsideRoot:
            continue
    raise OutsideRoot(f"{what} {typed!r} is not inside any of the import folders")
