"""Shared machinery of the real-dataset plugins: locate files, detect the format, dispatch.

A dataset plugin declares, per setting, the files that can serve it (:class:`Source`), in
priority order. ``load`` looks for them under the data directory (``--data-dir``, the config
file's ``data_dir``, or ``$MSABENCH_DATA_DIR[/<dataset>]``), picks the first present one (or
the one named by the ``format`` option, or the exact ``file`` option), and hands it to the
format's reader. When nothing is found, the error lists every path it looked at, what the
directory does contain, and where the files come from.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from msabench.api.dataset import Dataset, LoadedDataset
from msabench.errors import DataError

from .problems import coded

#: format name -> "module:function" of its reader (imported lazily)
READERS = {
    "mmsa": "msabench_builtins.datasets.mmsa:load_mmsa_pickle",
    "mult": "msabench_builtins.datasets.mult:load_mult_pickle",
    "magbert": "msabench_builtins.datasets.magbert:load_magbert_pickle",
    "archive": "msabench_builtins.datasets.archive:load_archive",
}


@dataclass(frozen=True)
class Source:
    """One way to serve a setting: a format and the relative paths it may live at."""

    format: str
    paths: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def find(self, root: Path) -> Path | None:
        for rel in self.paths:
            candidate = root / rel
            if candidate.exists():
                return candidate
        return None


def reader(fmt: str) -> Callable[..., LoadedDataset]:
    module, _, attr = READERS[fmt].partition(":")
    return getattr(importlib.import_module(module), attr)


class StandardDataset(Dataset):
    """Base class of the mosi / mosei / chsims / chsims2 plugins."""

    #: setting -> sources in priority order
    sources: ClassVar[dict[str, tuple[Source, ...]]]
    #: how to obtain the files (shown when nothing is found)
    how_to_get: ClassVar[str] = ""
    #: file: read exactly this file; format: force a format; sha256: verify the file first
    defaults: ClassVar[dict[str, Any]] = {"file": None, "format": None, "sha256": None}

    def locate(self) -> tuple[Source, Path]:
        file_opt = self.options.get("file")
        fmt_opt = self.options.get("format")
        sources = self.sources[self.setting]
        if fmt_opt is not None and fmt_opt not in {s.format for s in sources}:
            raise DataError(
                f"{self.name}/{self.setting}: format {fmt_opt!r} does not serve this setting; "
                f"formats for it: {', '.join(sorted({s.format for s in sources}))}")
        candidates = [s for s in sources if fmt_opt in (None, s.format)]
        if file_opt:
            path = Path(file_opt)
            if not path.is_absolute() and self.data_dir is not None:
                path = self.data_dir / path
            if not path.exists():
                raise coded(DataError(f"{self.name}: data.options.file={file_opt!r} does not "
                                      f"exist (looked at {path})"), "missing-file")
            return candidates[0], path
        root = self.data_dir
        if root is None:
            raise coded(DataError(
                f"no data directory for dataset {self.name!r}: pass --data-dir DIR, set "
                f"data_dir in the config file, or set MSABENCH_DATA_DIR (a folder holding a "
                f"{self.name}/ subfolder or the files themselves). Setting {self.setting!r} "
                f"reads one of: {self._expected(candidates)}. {self.how_to_get}"), "missing-file")
        if not root.is_dir():
            raise coded(DataError(f"data directory {root} for dataset {self.name!r} does not "
                                  f"exist or is not a folder"), "missing-file")
        # the folder itself, then its <dataset>/ subfolder: --data-dir ../shared/data works
        # like MSABENCH_DATA_DIR=../shared/data
        roots = [root] + ([root / self.name] if (root / self.name).is_dir() else [])
        for folder in roots:
            for source in candidates:
                path = source.find(folder)
                if path is not None:
                    return source, path
        present = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                         if p.is_file())[:15]
        other = [s for s, srcs in self.sources.items() if s != self.setting
                 and any(src.find(f) for src in srcs for f in roots)]
        hint = f" Files there serve setting(s) {', '.join(other)} (--setting NAME)." if other else ""
        raise coded(DataError(
            f"dataset {self.name!r} setting {self.setting!r}: none of the expected files is in "
            f"{' or '.join(str(f) for f in roots)}. Expected one of: {self._expected(candidates)}. Found: "
            f"{', '.join(present) if present else '(empty folder)'}.{hint} {self.how_to_get}"),
            "missing-file")

    @staticmethod
    def _expected(sources: tuple[Source, ...] | list[Source]) -> str:
        return "; ".join(f"{s.format}: {' or '.join(s.paths)}" for s in sources)

    def input_files(self) -> list[Path]:
        """The file this setting reads (for a raw layout, its label table)."""
        try:
            return [self.locate()[1]]
        except DataError:
            return []  # load() reports the missing file with the full explanation

    def load(self) -> LoadedDataset:
        source, path = self.locate()
        expected = self.options.get("sha256")
        if expected:  # optional integrity check of the file actually read
            from .safe_pickle import verify_checksum

            verify_checksum(path, str(expected))
        kwargs = dict(source.kwargs)
        data = self.read(source, path, kwargs)
        data.notes.insert(0, f"read {path} as {source.format}"
                          + (f" ({source.note})" if source.note else ""))
        return data

    def read(self, source: Source, path: Path, kwargs: dict[str, Any]) -> LoadedDataset:
        """Dispatch to the format's reader; subclasses extend this for special settings."""
        return reader(source.format)(path, meta=self.meta, setting=self.setting, **kwargs)
