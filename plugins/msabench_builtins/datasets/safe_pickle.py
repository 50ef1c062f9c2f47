"""Read published dataset pickles without ever executing code from them.

``pickle.load`` runs whatever callable a pickle names (``os.system``, ``builtins.eval``,
``subprocess.Popen`` ...), so loading a downloaded ``.pkl`` with it hands the file's author
your machine. The MMSA, MulT and MAG-BERT feature pickles need none of that: they hold dicts,
lists, tuples, strings, numbers and NumPy arrays. :func:`safe_load` reads them with a
:class:`pickle.Unpickler` whose ``find_class`` resolves ONLY the globals that NumPy array
reconstruction needs (listed in :data:`ALLOWED_GLOBALS`) and refuses every other global with a
:class:`~msabench.errors.DataError` naming the file and the global, before anything is called.

Containers and scalars (dict, list, tuple, str, bytes, int, float, bool, None) are built by
pickle opcodes directly and never go through ``find_class``. The allow-list:

* ``numpy[._]core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype`` - arrays as
  pickled by every NumPy version (``numpy.core`` in NumPy 1.x and Python-2 pickles,
  ``numpy._core`` in NumPy 2.x);
* ``numpy[._]core.multiarray.scalar`` - NumPy scalars (e.g. an ``np.float64`` label);
* ``numpy[._]core.numeric._frombuffer`` - arrays pickled with protocol 5;
* ``_codecs.encode`` - how Python 3 writes ``bytes`` (an array's raw data) at protocol <= 2;
* ``collections.OrderedDict`` - a dict subclass some re-saved files use.

``builtins.set``/``frozenset``/``bytearray``/``slice``/``complex``/``range`` and
``collections.defaultdict`` are NOT allowed: no published dataset pickle uses them.

Python-2 pickles (MulT's files were written by Python 2 and an old NumPy) store byte strings
as Python-2 ``str``; they are decoded with ``encoding="latin1"`` (the default here), which is
what NumPy needs to rebuild arrays from them and which leaves Python-3 pickles unaffected
(they never use the Python-2 string opcodes).

:func:`verify_checksum` compares a file's SHA-256 with a published digest.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import hashlib
import importlib
import pickle
from pathlib import Path
from typing import Any, Callable

from msabench.errors import DataError


def _numpy_attr(submodule: str, name: str) -> Callable[[], Any]:
    """Resolve ``numpy._core.<submodule>.<name>`` (NumPy 2) or ``numpy.core...`` (NumPy 1)
    lazily, without importing the deprecated ``numpy.core`` alias under NumPy 2."""

    def resolve() -> Any:
        for package in ("numpy._core", "numpy.core"):
            try:
                module = importlib.import_module(f"{package}.{submodule}")
            except ImportError:
                continue
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"numpy has no {submodule}.{name}")  # pragma: no cover

    return resolve


def _numpy_top(name: str) -> Callable[[], Any]:
    def resolve() -> Any:
        import numpy

        return getattr(numpy, name)

    return resolve


#: "module.name" -> resolver of the object; nothing else is ever resolved
ALLOWED_GLOBALS: dict[str, Callable[[], Any]] = {
    "numpy.core.multiarray._reconstruct": _numpy_attr("multiarray", "_reconstruct"),
    "numpy._core.multiarray._reconstruct": _numpy_attr("multiarray", "_reconstruct"),
    "numpy.core.multiarray.scalar": _numpy_attr("multiarray", "scalar"),
    "numpy._core.multiarray.scalar": _numpy_attr("multiarray", "scalar"),
    "numpy.core.numeric._frombuffer": _numpy_attr("numeric", "_frombuffer"),
    "numpy._core.numeric._frombuffer": _numpy_attr("numeric", "_frombuffer"),
    "numpy.ndarray": _numpy_top("ndarray"),
    "numpy.dtype": _numpy_top("dtype"),
    "_codecs.encode": lambda: codecs.encode,
    "collections.OrderedDict": lambda: collections.OrderedDict,
}

_READ_CHUNK = 1 << 20


class RestrictedUnpickler(pickle.Unpickler):
    """A C-speed :class:`pickle.Unpickler` that resolves only :data:`ALLOWED_GLOBALS`.

    Every opcode that can produce a callable (GLOBAL, STACK_GLOBAL, INST, OBJ, EXT*) goes
    through :meth:`find_class`; persistent ids are refused by the base class.
    """

    def __init__(self, file: Any, *, encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding, fix_imports=True)

    def find_class(self, module: str, name: str) -> Any:
        # Python-2 pickles name Python-3 modules by their old names (__builtin__, copy_reg);
        # map them the way the standard unpickler does, so the message names the real global
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        qualified = f"{module}.{name}"
        resolve = ALLOWED_GLOBALS.get(qualified)
        if resolve is None:
            raise RefusedGlobal(qualified)
        return resolve()


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, qualified: str) -> None:
        super().__init__(qualified)
        self.qualified = qualified


def safe_load(path: Path | str, *, encoding: str = "latin1") -> object:
    """Unpickle ``path`` allowing only plain data and NumPy arrays (module docstring).

    Raises :class:`DataError` naming the file when it is missing, not a pickle, truncated, or
    references any other global (the refused ``module.name`` is named; nothing is executed).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"{path}: pickle not found ({path.resolve()} {what}); pass the path "
                        "of the .pkl file (check --data-dir / MSABENCH_DATA_DIR)")
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh, encoding=encoding).load()
    except RefusedGlobal as exc:
        raise DataError(
            f"{path}: refused to unpickle: the file references the global {exc.qualified!r}, "
            "which is not one of the plain-data / NumPy-array types a dataset pickle needs. "
            "msabench refuses to execute code from pickles; a genuine MMSA/MulT/MAG-BERT "
            "file never needs it - re-download the file from its official source (and check "
            "its SHA-256), or convert data you trust to an msabench .npz archive") from None
    except MemoryError:
        raise
    except (pickle.UnpicklingError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as a pickle ({type(exc).__name__}: {exc}); "
                        "the file looks truncated, corrupt or not a pickle at all - "
                        "re-download it (and check its SHA-256)") from None
    except Exception as exc:  # noqa: BLE001 - anything raised while rebuilding objects
        raise DataError(f"{path}: cannot be unpickled ({type(exc).__name__}: {exc}); the file "
                        "looks corrupt or was written in an unexpected format - re-download "
                        "it") from None


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_READ_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: Path | str, expected_sha256: str) -> str:
    """Raise :class:`DataError` with both digests when the file's SHA-256 differs from
    ``expected_sha256`` (hex, case-insensitive); return the digest otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: cannot verify the checksum, the file does not exist")
    expected = expected_sha256.strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise DataError(f"expected SHA-256 {expected_sha256!r} for {path} is not 64 hex digits")
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"{path}: SHA-256 mismatch: expected {expected}, got {actual}; the file is not the "
            "published one (incomplete download, a different version, or tampered with) - "
            "re-download it from the official source")
    return actual
