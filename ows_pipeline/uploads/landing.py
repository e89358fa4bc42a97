"""The landing folder: one sub-folder per upload kind, plus `processed/` and `rejected/` archives.

```
landing/
  feed_sla/  project_metadata/  ows_export/        <- users drop files here
  processed/<kind>/<file>                          <- loaded (and duplicates of loaded files)
  rejected/<kind>/<file>, <file>.errors.json       <- refused, with every problem listed
```

Nothing is ever written outside the landing folder: symlinks are never followed, files are
moved with `os.rename` inside the folder (the bytes are kept), and in the archives every file
gets a safe spelling of its name (the registry keeps the name as dropped).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePath

from ows_pipeline.uploads.names import is_ignored, safe_name
from ows_pipeline.uploads.schema import KIND_NAMES

PROCESSED = "processed"
REJECTED = "rejected"
ERRORS_SUFFIX = ".errors.json"



class LandingFolderError(RuntimeError):
    """The landing folder itself is unusable (missing, a symlink where a folder is expected)."""


@dataclass(frozen=True)
class Candidate:
    """A directory entry found at the top level of a kind sub-folder."""

    kind: str
    name: str
    path: Path
    size: int
    mtime_ns: int
    is_symlink: bool
    is_regular: bool
    is_dir: bool = False

    @property
    def relative(self) -> str:
        return f"{self.kind}/{self.name}"


class LandingFolder:
    """Paths and moves inside one landing folder."""

    def __init__(self, root: Path | str):
        self.root = Path(os.path.abspath(root))

    def ensure(self) -> None:
        """Create the kind sub-folders and the archives; refuse symlinked folders."""
        self.root.mkdir(parents=True, exist_ok=True)
        for kind in KIND_NAMES:
            for folder in (self.root / kind, self.root / PROCESSED / kind, self.root / REJECTED / kind):
                folder.mkdir(parents=True, exist_ok=True)
                self._check_real_dir(folder)

    def _check_real_dir(self, folder: Path) -> None:
        current = folder
        while current != self.root:
            if current.is_symlink() or not current.is_dir():
                raise LandingFolderError(
                    f"{current} must be a real folder inside the landing folder {self.root}, not a symlink or file"
                )
            current = current.parent

    def scan(self) -> list[Candidate]:
        """Entries at the top level of each kind sub-folder (archives are never listed)."""
        found: list[Candidate] = []
        for kind in KIND_NAMES:
            folder = self.root / kind
            try:
                entries = os.scandir(folder)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    if is_ignored(entry.name):
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # moved away meanwhile
                    if stat.S_ISDIR(info.st_mode) and not looks_like_data_file(entry.name):
                        continue  # a folder of the user's own: listed by `folders`
                    found.append(
                        Candidate(
                            kind=kind,
                            name=entry.name,
                            path=Path(entry.path),
                            size=info.st_size,
                            mtime_ns=info.st_mtime_ns,
                            is_symlink=stat.S_ISLNK(info.st_mode),
                            is_regular=stat.S_ISREG(info.st_mode),
                            is_dir=stat.S_ISDIR(info.st_mode),
                        )
                    )
        found.sort(key=lambda c: (c.mtime_ns, c.relative))
        return found

    def stray_files(self) -> list[str]:
        """Files dropped at the top of the landing folder instead of a kind sub-folder (never loaded)."""
        with os.scandir(self.root) as entries:
            return sorted(e.name for e in entries if not e.is_dir(follow_symlinks=False) and not is_ignored(e.name))

    def folders(self) -> list[str]:
        """Folders inside the kind sub-folders whose names are not like data files (never looked into)."""
        found = []
        for kind in KIND_NAMES:
            try:
                with os.scandir(self.root / kind) as entries:
                    found += [f"{kind}/{e.name}" for e in entries
                              if e.is_dir(follow_symlinks=False) and not looks_like_data_file(e.name)]
            except FileNotFoundError:
                continue
        return sorted(found)

    def relative(self, path: Path) -> str:
        return Path(os.path.abspath(path)).relative_to(self.root).as_posix()

    def absolute(self, relative: str) -> Path:
        """The path of a registry location, refusing anything that would leave the landing folder."""
        path = Path(os.path.abspath(self.root / relative))
        if path == self.root or self.root not in path.parents:
            raise LandingFolderError(f"'{relative}' lies outside the landing folder {self.root}")
        return path

    def archive_target(self, archive: str, kind: str, name: str) -> Path:
        """A free path in `<archive>/<kind>/` for `name` (made safe), e.g. `feed_sla.2.csv` when taken."""
        folder = self.root / archive / kind
        folder.mkdir(parents=True, exist_ok=True)
        self._check_real_dir(folder)
        safe = safe_name(name)
        stem, dot, suffix = safe.partition(".")
        target = folder / safe
        counter = 1
        while os.path.lexists(target) or os.path.lexists(str(target) + ERRORS_SUFFIX):
            counter += 1
            target = folder / (f"{stem}.{counter}{dot}{suffix}" if dot else f"{stem}.{counter}")
        return target

    def move(self, source: Path, target: Path) -> None:
        """Move inside the landing folder; a symlink is moved as a link, never followed."""
        self.absolute(self.relative(source))
        self.absolute(self.relative(target))
        os.rename(source, target)

    def write_report(self, target: Path, report: dict) -> None:
        """Write `<target>.errors.json` (complete or not at all)."""
        errors_path = Path(str(target) + ERRORS_SUFFIX)
        tmp = errors_path.with_name(errors_path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, ensure_ascii=False, default=str)
            handle.write("\n")
        os.replace(tmp, errors_path)

    def move_with_report(self, source: Path, target: Path, report: dict) -> None:
        """Write `<target>.errors.json`, then move the refused file beside it."""
        self.write_report(target, report)
        self.move(source, target)


def looks_like_data_file(name: str) -> bool:
    """A name ending like a file the landing folder takes (or refuses by its format)."""
    from ows_pipeline.uploads.formats import FORMATS, REFUSED_EXTENSIONS

    suffix = PurePath(name).suffix.lower()
    return suffix in FORMATS or suffix in REFUSED_EXTENSIONS


def read_upload(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, refusing symlinks (O_NOFOLLOW) and files above `max_bytes`."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise OverflowError(info.st_size)
        # read what the file holds (plus one byte, to see growth): a read of `max_bytes + 1`
        # would allocate that whole buffer for every upload
        data = handle.read(min(info.st_size, max_bytes) + 1)
    if len(data) > max_bytes:
        raise OverflowError(len(data))
    return data
