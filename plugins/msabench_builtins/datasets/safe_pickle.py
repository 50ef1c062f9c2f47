"""Read published dataset pickles without ever executing code from them.

``pickle.load`` runs whatever callable a pickle names (``os.system``, ``builtins.eval``,
``subprocess.Popen`` ...), so loading a downloaded ``.pkl`` with it hands the file's author
your machine. The MMSA, MulT and MAG-BERT feature pickles need none of that: they hold dicts,
lists, tuples, strings, numbers and NumPy arrays. :func:`safe_load` reads them with a
:class:`pickle.Unpickler` whose ``find_class`` resolves ONLY the globals listed in
:data:`ALLOWED_GLOBALS` and refuses every other global with a
:class:`~msabench.errors.DataError` naming the file and the global, before anything is called.

Containers and scalars (dict, list, tuple, str, bytes, int, float, bool, None) are built by
pickle opcodes directly and never go through ``find_class``. The allow-list, and what each
entry resolves to (docs/datasets.md, "Threat model", says why each is safe):

* ``numpy[._]core.multiarray._reconstruct`` -> :func:`_reconstruct`: an EMPTY guarded array
  whose ``__setstate__`` (:meth:`_GuardedArray.__setstate__`) checks the dtype, the shape and
  the data length before NumPy copies a byte; ``numpy.ndarray`` -> a marker that is only
  accepted as the first argument of ``_reconstruct`` (it is not callable);
* ``numpy.dtype`` -> :func:`_dtype`: only ``<kind><size>`` specs of the kinds ``b i u f c S U O``
  and always a fresh copy (a pickle's ``BUILD`` cannot modify NumPy's shared dtypes);
* ``numpy[._]core.multiarray.scalar`` -> :func:`_scalar`: NumPy scalars (e.g. an
  ``np.float64`` label) of the same plain kinds, no object dtype;
* ``numpy[._]core.numeric._frombuffer`` -> :func:`_frombuffer`: protocol-5 arrays, same checks;
* ``_codecs.encode`` -> :func:`_latin1_encode`: how Python 3 writes ``bytes`` (an array's raw
  data) at protocol <= 2, ``encode(str, 'latin1')``; no other codec;
* ``collections.OrderedDict`` - a dict subclass some re-saved files use.

**Arrays from raw memory.** ``BUILD`` can rewrite a dtype object after it is created
(``dtype.__setstate__``): a void dtype relabelled to hold object pointers, or an object dtype
whose flags no longer say so, makes NumPy read the file's raw bytes as ``PyObject*`` and
crashes the interpreter (SIGSEGV) on first access. Every dtype is therefore checked where it
is *used*: it must be exactly the canonical dtype of its own type string (same flags, size,
alignment, no fields, no sub-array, no metadata) of a plain kind. Object arrays are allowed
only with the canonical object dtype, for which NumPy rebuilds the array from a list of
unpickled objects, never from raw bytes.

**Sizes.** Before unpickling, :func:`~.pickle_scan.check_claims` compares every length field
with the file size; an array's claimed shape must match the bytes (or list items) given for it.
A file therefore cannot make msabench allocate much more memory than the file itself holds.

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
import functools
import hashlib
import importlib
import math
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from msabench.errors import DataError

from .pickle_scan import ClaimTooLarge, check_claims
from .problems import coded, human_bytes

#: dtype kinds a dataset pickle may hold (bool, ints, floats, complex, bytes, str, object)
SAFE_KINDS = "biufcSUO"
_DTYPE_SPEC = re.compile(r"[biufcSUO]\d{1,9}")
_REFUSE_HINT = ("re-download the file from its official source (and check its SHA-256), or "
                "convert data you trust to an msabench .npz archive")


def _numpy_attr(submodule: str, name: str) -> Any:
    """``numpy._core.<submodule>.<name>`` (NumPy 2) or ``numpy.core...`` (NumPy 1)."""
    for package in ("numpy._core", "numpy.core"):
        try:
            module = importlib.import_module(f"{package}.{submodule}")
        except ImportError:  # pragma: no cover - the other NumPy major version
            continue
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"numpy has no {submodule}.{name}")  # pragma: no cover


class RefusedContent(pickle.UnpicklingError):
    """The pickle asks for something a dataset file never needs (message says what)."""

    def __init__(self, message: str, code: str = "unsafe-pickle") -> None:
        super().__init__(message)
        self.message, self.code = message, code


def _describe(dt: Any) -> str:
    try:
        return f"{dt!r} (type string {dt.str!r}, flags {dt.flags})"
    except Exception:  # noqa: BLE001 - describing a hostile object must not fail
        return type(dt).__name__


@functools.lru_cache(maxsize=256)
def _canonical(type_string: str) -> np.dtype | None:
    try:
        return np.dtype(type_string)
    except TypeError:
        return None


def check_dtype(dt: Any, *, objects: bool = True) -> np.dtype:
    """``dt`` if it is the canonical dtype of a plain kind (module docstring), else refuse."""
    if not isinstance(dt, np.dtype):
        raise RefusedContent(f"an array's dtype is a {type(dt).__name__}, not a NumPy dtype")
    kinds = SAFE_KINDS if objects else SAFE_KINDS.replace("O", "")
    ok = dt.kind in kinds and dt.fields is None and dt.subdtype is None \
        and dt.metadata is None
    if ok:
        canonical = _canonical(dt.str)
        ok = canonical is not None and (
            type(dt) is type(canonical) and dt == canonical and dt.flags == canonical.flags
            and dt.itemsize == canonical.itemsize and dt.alignment == canonical.alignment)
    if not ok:
        plain = "numeric, bool and string" + (" (or object)" if objects else "")
        raise RefusedContent(
            f"the file builds a NumPy array or scalar of dtype {_describe(dt)}; only the "
            f"standard {plain} dtypes are accepted. A dtype that was re-shaped inside the "
            "pickle (structured, object pointers read from raw bytes, altered flags) could "
            "crash the interpreter when the array is read")
    return dt


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise RefusedContent(f"an array's shape is {shape!r}, not a tuple of non-negative ints")
    return shape


def _check_size(shape: tuple[int, ...], dt: np.dtype, given: int) -> None:
    """The data given for an array must be exactly what its shape and dtype claim."""
    count = math.prod(shape)
    need = count if dt.kind == "O" else count * dt.itemsize
    if need == given:
        return
    if dt.kind == "O":
        claim, gave = f"{count} list items", f"{given} list items"
    else:
        claim, gave = human_bytes(need), f"{human_bytes(given)} of data"
    raise RefusedContent(f"the file claims a {shape} {dt} array ({claim}) but gives {gave} "
                         "for it", code="oversized-claim" if need > given else "corrupt-file")


class _NdarrayMarker:
    """What ``numpy.ndarray`` resolves to: accepted only as ``_reconstruct``'s first argument."""

    def __repr__(self) -> str:
        return "numpy.ndarray (marker)"


_NDARRAY = _NdarrayMarker()


class _GuardedArray(np.ndarray):
    """An ndarray whose ``__setstate__`` validates the state before NumPy sees it."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise RefusedContent(f"an array's state is a {type(state).__name__}, not "
                                 "NumPy's (version, shape, dtype, is_fortran, data)")
        shape, dt, fortran, raw = state[-4:]
        if len(state) == 5 and state[0] != 1:
            raise RefusedContent(f"an array's state has version {state[0]!r}; NumPy writes 1")
        shape = _shape(shape)
        dt = check_dtype(dt)
        if not isinstance(fortran, (bool, int)):
            raise RefusedContent(f"an array's is_fortran flag is {type(fortran).__name__}")
        if dt.kind == "O":
            if not isinstance(raw, list):
                raise RefusedContent("an object array's data is raw bytes, not a list of "
                                     "objects: NumPy would read the bytes as object pointers")
            _check_size(shape, dt, len(raw))
        else:
            if not isinstance(raw, (bytes, str)):  # str: Python-2 data decoded as latin1
                raise RefusedContent(f"an array's data is a {type(raw).__name__}, not bytes")
            _check_size(shape, dt, len(raw))
        np.ndarray.__setstate__(self, state)


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _GuardedArray:
    """NumPy's ``_reconstruct``: an empty array (NumPy always writes shape ``(0,)`` here and
    allocates what any other shape claims), filled by ``__setstate__``."""
    if subtype is not _NDARRAY:
        raise RefusedContent(f"_reconstruct is asked for a {subtype!r}, not numpy.ndarray")
    _check_size(_shape(shape), np.dtype(np.int8), 0)
    return np.ndarray.__new__(_GuardedArray, (0,), np.int8)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str) or not _DTYPE_SPEC.fullmatch(spec):
        raise RefusedContent(f"the file asks for the dtype {spec!r}; only the plain kinds "
                             f"{', '.join(SAFE_KINDS)} with a size (e.g. 'f4', 'U12') are "
                             "accepted")
    if align not in (0, 1) or copy not in (0, 1):
        raise RefusedContent(f"dtype({spec!r}, {align!r}, {copy!r}): align/copy must be flags")
    return np.dtype(spec, align=False, copy=True)  # a copy: BUILD must not touch shared dtypes


def _scalar(dt: Any, data: Any = None) -> Any:
    dt = check_dtype(dt, objects=False)
    if not isinstance(data, (bytes, str)) or len(data) != dt.itemsize:
        raise RefusedContent(f"a {dt} scalar needs {dt.itemsize} bytes of data, the file "
                             f"gives {type(data).__name__}")
    return _numpy_attr("multiarray", "scalar")(dt, data)


def _frombuffer(buf: Any, dt: Any, shape: Any, order: Any, axis_order: Any = None) -> Any:
    dt = check_dtype(dt, objects=False)
    shape = _shape(shape)
    if order not in ("C", "F", "K") or (axis_order is not None and (
            not isinstance(axis_order, tuple)
            or sorted(axis_order) != list(range(len(shape))))):
        raise RefusedContent(f"protocol-5 array with order {order!r} / axes {axis_order!r}")
    if not isinstance(buf, (bytes, bytearray)):
        raise RefusedContent(f"protocol-5 array data is a {type(buf).__name__}, not bytes")
    _check_size(shape, dt, len(buf))
    return _numpy_attr("numeric", "_frombuffer")(buf, dt, shape, order, axis_order)


def _latin1_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocol <= 2:
    ``encode(bytes_as_latin1_str, 'latin1')``; no other codec is looked up."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise RefusedContent(f"_codecs.encode is asked for codec {encoding!r} on a "
                             f"{type(text).__name__}; a pickle only ever uses 'latin1' on a str")
    return codecs.encode(text, "latin1")


#: "module.name" -> resolver of the object; nothing else is ever resolved
ALLOWED_GLOBALS: dict[str, Callable[[], Any]] = {
    "numpy.core.multiarray._reconstruct": lambda: _reconstruct,
    "numpy._core.multiarray._reconstruct": lambda: _reconstruct,
    "numpy.core.multiarray.scalar": lambda: _scalar,
    "numpy._core.multiarray.scalar": lambda: _scalar,
    "numpy.core.numeric._frombuffer": lambda: _frombuffer,
    "numpy._core.numeric._frombuffer": lambda: _frombuffer,
    "numpy.ndarray": lambda: _NDARRAY,
    "numpy.dtype": lambda: _dtype,
    "_codecs.encode": lambda: _latin1_encode,
    "collections.OrderedDict": lambda: collections.OrderedDict,
}

_READ_CHUNK = 1 << 20
MAX_DEPTH = 100  # container nesting accepted by plain_arrays
_ATOMS = frozenset({str, bytes, int, float, bool, type(None), complex})


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


def plain_arrays(obj: Any) -> Any:
    """``obj`` with every guarded array replaced by a plain ndarray view (no copy).

    Walks dicts, lists, tuples (rebuilt when they hold an array) and object arrays; shared and
    self-referencing containers are visited once. Nesting deeper than :data:`MAX_DEPTH`
    levels (a dataset pickle nests about five) is refused instead of exhausting the stack.
    """
    done: dict[int, Any] = {}

    def walk(x: Any, depth: int) -> Any:
        if type(x) in _ATOMS:
            return x
        key = id(x)
        if key in done:
            return done[key]
        if depth > MAX_DEPTH:
            raise RefusedContent(f"containers nested more than {MAX_DEPTH} levels deep; a "
                                 "dataset pickle nests a few levels", code="corrupt-file")
        if isinstance(x, _GuardedArray):
            done[key] = x = x.view(np.ndarray)
        if isinstance(x, dict):
            done[key] = x
            for k, v in x.items():  # replacing values of existing keys is safe while iterating
                new = walk(v, depth + 1)
                if new is not v:
                    x[k] = new
        elif isinstance(x, list):
            done[key] = x
            for i, v in enumerate(x):
                new = walk(v, depth + 1)
                if new is not v:
                    x[i] = new
        elif isinstance(x, tuple):
            items = [walk(v, depth + 1) for v in x]
            done[key] = x = x if all(a is b for a, b in zip(items, x)) else tuple(items)
        elif isinstance(x, np.ndarray) and x.dtype.kind == "O":
            done[key] = x
            for i, v in enumerate(list(x.flat)):
                new = walk(v, depth + 1)
                if new is not v:
                    x.flat[i] = new
        return x

    return walk(obj, 0)


def safe_load(path: Path | str, *, encoding: str = "latin1") -> object:
    """Unpickle ``path`` allowing only plain data and NumPy arrays (module docstring).

    Raises :class:`DataError` naming the file when it is missing, not a pickle, truncated,
    references any other global (the refused ``module.name`` is named; nothing is executed),
    builds an array of a non-plain dtype, or claims more data than it holds. The error's
    ``code`` (:mod:`.problems`) tells these apart.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise coded(DataError(f"{path}: pickle not found ({path.resolve()} {what}); pass the "
                              "path of the .pkl file (check --data-dir / MSABENCH_DATA_DIR)"),
                    "missing-file")
    try:
        check_claims(path)
        with open(path, "rb") as fh:
            return plain_arrays(RestrictedUnpickler(fh, encoding=encoding).load())
    except ClaimTooLarge as exc:
        raise coded(DataError(
            f"{path}: refused to unpickle: {exc.message}; the file looks truncated, corrupt or "
            f"crafted - {_REFUSE_HINT}"), "oversized-claim") from None
    except RefusedGlobal as exc:
        raise coded(DataError(
            f"{path}: refused to unpickle: the file references the global {exc.qualified!r}, "
            "which is not one of the plain-data / NumPy-array types a dataset pickle needs. "
            "msabench refuses to execute code from pickles; a genuine MMSA/MulT/MAG-BERT "
            f"file never needs it - {_REFUSE_HINT}"), "unsafe-pickle") from None
    except RefusedContent as exc:
        size = f" (the whole file is {human_bytes(path.stat().st_size)})" \
            if exc.code == "oversized-claim" else ""
        raise coded(DataError(f"{path}: refused to unpickle: {exc.message}{size}. A genuine "
                              f"MMSA/MulT/MAG-BERT file never does this - {_REFUSE_HINT}"),
                    exc.code) from None
    except MemoryError:
        raise coded(DataError(
            f"{path}: ran out of memory while unpickling this {human_bytes(path.stat().st_size)}"
            " file; free memory or use a machine with more RAM (the file's claims were checked "
            "against its size, so the file itself needs this much)"), "out-of-memory") from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise coded(DataError(f"{path}: cannot be read as a pickle ({type(exc).__name__}: "
                              f"{exc}); the file looks truncated, corrupt or not a pickle at "
                              "all - re-download it (and check its SHA-256)"),
                    "corrupt-file") from None
    except Exception as exc:  # noqa: BLE001 - anything raised while rebuilding objects
        raise coded(DataError(f"{path}: cannot be unpickled ({type(exc).__name__}: {exc}); "
                              "the file looks corrupt or was written in an unexpected format "
                              "- re-download it"), "corrupt-file") from None


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
        raise coded(DataError(f"{path}: cannot verify the checksum, the file does not exist"),
                    "missing-file")
    expected = expected_sha256.strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise DataError(f"expected SHA-256 {expected_sha256!r} for {path} is not 64 hex digits")
    actual = sha256_file(path)
    if actual != expected:
        raise coded(DataError(
            f"{path}: SHA-256 mismatch: expected {expected}, got {actual}; the file is not the "
            "published one (incomplete download, a different version, or tampered with) - "
            "re-download it from the official source"), "corrupt-file")
    return actual
