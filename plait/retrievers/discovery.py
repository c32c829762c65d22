"""Which files an ingest takes: a folder walk that reports what it leaves out and never hangs.

:func:`discover` walks the folders named (and takes the files named) and returns the files to
load plus every problem found on the way, so nothing is left out silently (issue 18, item 14):

- a folder that cannot be listed (permission denied): reported; its files are not indexed;
- a dangling symbolic link, a symbolic-link loop: reported;
- a FIFO, socket or device: reported, never opened (reading a FIFO waits forever for a writer);
- a symbolic link pointing outside the folders being ingested: reported and not followed unless
  ``follow_links=True`` (a link can pull in ``~/.ssh``). A followed link is indexed under the
  link's own path, so when the link goes, its chunks go with ``--delete-missing``. A link to a
  file inside the ingested folders is not indexed twice: the file is, under its own path.

Names: a folder named is resolved (its real path); what is found under it keeps the path it has
there (``folder/sub/link.txt``, not the link's target). Hidden files and folders (a name starting
with ``.``) are skipped, as ``**`` in shells does.

Globs: ``**/*.md`` (any depth), ``*.txt`` (directly in the folder), ``sub/**/*.rst``; matched
against the path relative to the folder named. ``exclude`` patterns are matched with
``PurePath.match`` (from the right) against each file's path.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

_KINDS = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder"}


def not_regular(mode: int) -> str | None:
    """Why a file of this mode is not read (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return f"{kind}, not a regular file; only regular files are read"


@lru_cache(maxsize=64)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob over relative POSIX paths as a regex: ``**/`` any folders, ``*`` and ``?`` within a name."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]"
            i = end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@dataclass
class Discovery:
    """What a walk found: files to load (sorted), and ``(path, reason)`` for each thing left out."""

    files: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def _inside(target: Path, roots: Sequence[Path]) -> bool:
    return any(target == r or r in target.parents for r in roots)


def _named(p: Path) -> Path:
    """A named file's absolute path: its folder resolved, its own name kept (a link stays the link)."""
    p = Path(os.path.abspath(p))
    return p.parent.resolve() / p.name


class _Walk:
    def __init__(self, globs: Sequence[str], roots: Sequence[Path], follow_links: bool) -> None:
        self.patterns = [glob_regex(g) for g in globs]
        self.deep = any("/" in g or "**" in g for g in globs)
        self.roots = roots
        self.follow_links = follow_links
        self.out = Discovery()
        self.links: dict[Path, Path] = {}  # link path -> resolved target, for files reached through links
        self.seen_dirs: set[tuple[int, int]] = set()

    def wanted(self, rel: str) -> bool:
        return any(p.fullmatch(rel) for p in self.patterns)

    def problem(self, path: Path | str, reason: str) -> None:
        self.out.problems.append((str(path), reason))

    def folder(self, path: Path, rel: str) -> None:
        try:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino)
            if key in self.seen_dirs:
                return
            self.seen_dirs.add(key)
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            self.problem(path, f"cannot list the folder ({e.strerror or e}); the files in it are not indexed")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            self.entry(Path(entry.path), f"{rel}{entry.name}", entry)

    def entry(self, path: Path, rel: str, entry: os.DirEntry[str]) -> None:
        try:
            is_link = entry.is_symlink()
            if is_link:
                self.link(path, rel)
            elif entry.is_dir(follow_symlinks=False):
                if self.deep:
                    self.folder(path, rel + "/")
            elif self.wanted(rel):
                why = not_regular(entry.stat(follow_symlinks=False).st_mode)
                if why:
                    self.problem(path, why)
                else:
                    self.out.files.append(path)
        except OSError as e:
            if self.wanted(rel):
                self.problem(path, f"cannot read it ({e.strerror or e})")

    def link(self, path: Path, rel: str) -> None:
        try:
            target = path.resolve(strict=True)
            st = os.stat(path)
        except RuntimeError:  # Python 3.11 raises this for a loop
            self.problem(path, "symbolic link loop; not followed")
            return
        except OSError as e:
            if e.errno == 40:  # ELOOP
                self.problem(path, "symbolic link loop; not followed")
            elif self.wanted(rel) or self.deep:
                self.problem(path, f"broken symbolic link (its target {os.readlink(path)!r} does not exist)")
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if not is_dir and not self.wanted(rel):
            return
        inside = _inside(target, self.roots)
        if not inside and not self.follow_links:
            self.problem(path, f"symbolic link to {target}, outside the folders being ingested; not followed "
                               "(pass --follow-links to follow it)")
            return
        if is_dir:
            if not inside and self.deep:  # a folder inside the roots is walked under its own path
                self.folder(path, rel + "/")
            return
        why = not_regular(st.st_mode)
        if why:
            self.problem(path, why)
        else:
            self.out.files.append(path)
            self.links[path] = target


def discover(paths: str | Path | Sequence[str | Path], *, glob: str | Sequence[str] = "**/*",
             exclude: Sequence[str] = (), follow_links: bool = False) -> Discovery:
    """The files to ingest under ``paths`` and what was left out, and why. See the module docstring."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    globs = [glob] if isinstance(glob, str) else list(glob)
    named = [Path(item).expanduser() for item in items]
    roots = []
    for p in named:
        try:
            roots.append(p.resolve())
        except (OSError, RuntimeError):
            continue
    walk = _Walk(globs, roots, follow_links)
    for p in named:
        if p.is_dir():
            walk.folder(p.resolve(), "")
            continue
        path = _named(p)
        try:
            st = os.stat(path)
        except RuntimeError:
            walk.problem(path, "symbolic link loop; not followed")
            continue
        except OSError as e:
            if e.errno == 40:
                walk.problem(path, "symbolic link loop; not followed")
            elif os.path.islink(path):
                walk.problem(path, f"broken symbolic link (its target {os.readlink(path)!r} does not exist)")
            else:
                walk.problem(path, "no such file" if e.errno == 2 else f"cannot read it ({e.strerror or e})")
            continue
        why = not_regular(st.st_mode)
        if why:
            walk.problem(path, why)
        else:
            walk.out.files.append(path)  # named by the user: taken even if it is a link to elsewhere
    files = set(walk.out.files)
    plain = {f for f in files if f not in walk.links}
    # a link to a file that is indexed anyway (inside the roots) is not indexed twice
    files = {f for f in files if f not in walk.links or walk.links[f] not in plain}
    walk.out.files = sorted(f for f in files if not any(f.match(x) for x in exclude))
    return walk.out
