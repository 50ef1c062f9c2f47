"""Hostile dataset files (issue 14): each crafted file gives ONE clear DataError (file, what is
wrong, the fix), never a crash, a raw traceback or a runaway allocation.

Every test builds its crafted file itself in ``tmp_path``. Cases that crashed the interpreter
(or would, or would allocate terabytes, if the fix regressed) run in a child process
(:func:`run_child`) under a memory limit, and the test checks the child's exit code and what it
printed. The small valid fixtures here (:func:`mmsa_obj`, :func:`mult_obj`, :func:`magbert_obj`,
:func:`archive_arrays`, :func:`write_sdk`, :func:`write_label_csv`) are also what
tests/test_fuzz_readers.py mutates.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import stat
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy._core.multiarray import _reconstruct, scalar
from numpy._core.numeric import _frombuffer

from msabench.api.dataset import DatasetMeta
from msabench.errors import DataError
from msabench_builtins.datasets import safe_pickle
from msabench_builtins.datasets.archive import load_archive, save_archive
from msabench_builtins.datasets.chsims import read_sims_labels
from msabench_builtins.datasets.raw import load_raw
from msabench_builtins.datasets.sdk import load_sdk, read_csd

ROOT = Path(__file__).resolve().parents[1]
MOSI = DatasetMeta(name="hostile-mosi", title="t", language="en", label_range=(-3.0, 3.0),
                   convention="mosi", settings=("unaligned", "magbert", "sdk"),
                   default_setting="unaligned")
SIMS = DatasetMeta(name="hostile-sims", title="t", language="zh", label_range=(-1.0, 1.0),
                   convention="sims", settings=("raw",), default_setting="raw",
                   unimodal_labels=True)
SIZES = {"train": 6, "valid": 3, "test": 3}


# ============================================================================================
# small valid fixtures, one per format

def mmsa_obj(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in SIZES.items():
        mask = np.zeros((n, 4), np.int64)
        mask[:, :3] = 1
        out[split] = {
            "id": np.array([f"vid{split}$_${i}" for i in range(n)], dtype=object),
            "raw_text": np.array([f"clip {i}" for i in range(n)], dtype=object),
            "text": rng.standard_normal((n, 4, 8), dtype=np.float32),
            "text_bert": np.stack([mask * 7, mask, np.zeros_like(mask)], axis=1),
            "audio": rng.standard_normal((n, 5, 3), dtype=np.float32),
            "vision": rng.standard_normal((n, 6, 2), dtype=np.float32),
            "audio_lengths": rng.integers(1, 6, n), "vision_lengths": rng.integers(1, 7, n),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32)}
    return out


def mult_obj(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {split: {
        "text": rng.standard_normal((n, 4, 8), dtype=np.float32),
        "audio": rng.standard_normal((n, 5, 3), dtype=np.float32),
        "vision": rng.standard_normal((n, 6, 2), dtype=np.float32),
        "labels": rng.uniform(-3, 3, (n, 1, 1)).astype(np.float32),
        "id": np.array([[f"vid{split}".encode(), str(i).encode(), b"0"] for i in range(n)])}
        for split, n in SIZES.items()}


def magbert_obj(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in SIZES.items():
        out["dev" if split == "valid" else split] = [
            ((["so", "good", "fine"][: 1 + i % 3],
              rng.standard_normal((1 + i % 3, 4)), rng.standard_normal((1 + i % 3, 3))),
             np.array([[rng.uniform(-3, 3)]]), f"vid{split}[{i}]") for i in range(n)]
    return out


def archive_arrays(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = sum(SIZES.values())
    return {"ids": np.array([f"v{i}_1" for i in range(n)]),
            "label": rng.uniform(-3, 3, n), "split": np.array(
                [s for s, k in SIZES.items() for _ in range(k)]),
            "text": rng.standard_normal((n, 8), dtype=np.float32),
            "audio": rng.standard_normal((n, 5, 3), dtype=np.float32),
            "audio_lengths": rng.integers(1, 6, n)}


SDK_FOLDS = {"train": ["vA", "vB"], "valid": ["vC"], "test": ["vD"]}


def write_sdk(folder: Path) -> tuple[Path, Path]:
    """A label .csd and an audio feature .csd in the SDK layout (docs/datasets.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    label, audio = folder / "labels.csd", folder / "audio.csd"
    rng = np.random.default_rng(0)
    for path, root, per_video in ((label, "Opinion Segment Labels", 2), (audio, "COVAREP", 5)):
        with h5py.File(path, "w") as fh:
            grp = fh.create_group(root)
            meta = grp.create_group("metadata")
            ds = meta.create_dataset("root name", (1,), dtype=h5py.special_dtype(vlen=str))
            ds[0] = json.dumps(root)
            data = grp.create_group("data")
            for video in ("vA", "vB", "vC", "vD"):
                v = data.create_group(video)
                if root == "COVAREP":
                    v["features"] = rng.standard_normal((per_video, 3)).astype(np.float32)
                    starts = np.arange(per_video) * 0.5
                else:
                    v["features"] = rng.uniform(-3, 3, (per_video, 1)).astype(np.float32)
                    starts = np.arange(per_video) * 1.0
                v["intervals"] = np.stack([starts, starts + (0.5 if root == "COVAREP" else 1.0)],
                                          axis=1)
    return label, audio


def load_sdk_files(label: Path, audio: Path):
    return load_sdk(None, meta=MOSI, setting="sdk", label_file=label,
                    feature_files={"audio": audio}, folds=SDK_FOLDS)


LABEL_CSV = ("video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
             "video_0001,0001,hao,0.6,0.4,0.8,0.2,Positive,train\n"
             "video_0001,0002,bu,-0.4,-0.2,-0.6,0.0,Negative,train\n"
             "video_0002,0001,hai,0.0,0.2,0.0,-0.2,Neutral,valid\n"
             "video_0003,0007,zai,-1.0,-0.8,-1.0,-1.0,Negative,test\n")


def write_label_csv(folder: Path, text: str = LABEL_CSV) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label.csv").write_text(text, encoding="utf-8")
    return folder / "label.csv"


def dump(obj, path: Path, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


class Reduce:
    """Pickles as ``func(*args)`` followed by ``BUILD state`` (how NumPy pickles arrays)."""

    def __init__(self, *reduce_value):
        self.reduce_value = reduce_value

    def __reduce__(self):
        return self.reduce_value


def forged_dtype(kind: str) -> Reduce:
    """A dtype that BUILD re-shapes so that raw bytes are read as object pointers."""
    if kind == "void-with-object-field":  # structured, flags cleared (no REFCOUNT/LIST_PICKLE)
        return Reduce(np.dtype, ("V8", False, True),
                      (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))
    assert kind == "object-flags-cleared"
    return Reduce(np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0))


def raw_object_array(kind: str, n: int, protocol5: bool = False) -> Reduce:
    raw = b"\x41" * 8 * n  # "pointers" 0x4141414141414141
    if protocol5:
        return Reduce(_frombuffer, (bytearray(raw), forged_dtype(kind), (n,), "C"))
    return Reduce(_reconstruct, (np.ndarray, (0,), b"b"),
                  (1, (n,), forged_dtype(kind), False, raw))


def huge_array(shape: tuple[int, ...], where: str = "state") -> Reduce:
    """An array that claims ``shape`` but carries 16 bytes: in its state (float32), or in
    ``_reconstruct``'s shape, which NumPy allocates at once (int8) before any state."""
    if where == "reconstruct":
        return Reduce(_reconstruct, (np.ndarray, shape, b"b"))
    return Reduce(_reconstruct, (np.ndarray, (0,), b"b"),
                  (1, shape, np.dtype("float32"), False, b"\0" * 16))


# ============================================================================================
# the child process

CHILD = r"""
import faulthandler, json, os, resource, sys
faulthandler.enable()
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
from msabench.api.dataset import DatasetMeta
from msabench.errors import DataError
from msabench_builtins.datasets.archive import load_archive
from msabench_builtins.datasets.magbert import load_magbert_pickle
from msabench_builtins.datasets.mmsa import load_mmsa_pickle
from msabench_builtins.datasets.mult import load_mult_pickle
MOSI = DatasetMeta(name="hostile-mosi", title="t", language="en", label_range=(-3.0, 3.0),
                   convention="mosi", settings=("unaligned", "magbert"),
                   default_setting="unaligned")
LOADERS = {
    "mmsa": lambda p: load_mmsa_pickle(p, meta=MOSI, setting="unaligned"),
    "mult": lambda p: load_mult_pickle(p, meta=MOSI, setting="unaligned"),
    "magbert": lambda p: load_magbert_pickle(p, meta=MOSI, setting="magbert"),
    "archive": lambda p: load_archive(p, meta=MOSI, setting="unaligned"),
}
# a regression must fail with MemoryError, not thrash the machine: cap the address space
with open("/proc/self/status") as fh:
    vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), resource.RLIM_INFINITY))
for name, loader, path in json.loads(sys.argv[1]):
    print(json.dumps([name, "start"]), flush=True)
    try:
        LOADERS[loader](path)
        out = [name, "loaded", None, ""]
    except DataError as exc:
        out = [name, "DataError", getattr(exc, "code", None), str(exc)]
    except BaseException as exc:
        out = [name, "other", type(exc).__name__, str(exc)[:500]]
    print(json.dumps(out), flush=True)
"""


def run_child(cases: list[tuple[str, str, Path]], script: str = CHILD,
              timeout: float = 120) -> tuple[int, dict[str, list], str]:
    """Run ``cases`` (name, loader, path) in a fresh interpreter; (exit code, results, stderr).

    A case that crashes the child leaves only its "start" line, so the crash is attributed.
    """
    payload = json.dumps([[n, loader, str(p)] for n, loader, p in cases])
    proc = subprocess.run([sys.executable, "-c", script, payload], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ})
    results: dict[str, list] = {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        if row[1] != "start" or row[0] not in results:
            results[row[0]] = row
    return proc.returncode, results, proc.stderr


def assert_refused(results: dict[str, list], name: str, path: Path, code: str, *words: str):
    row = results[name]
    assert row[1] == "DataError", row
    assert row[2] == code, row
    msg = row[3]
    assert msg.startswith(f"{path}: "), msg
    assert "re-download" in msg or "re-create" in msg or "re-save" in msg, msg
    for w in words:
        assert w in msg, (w, msg)


# ============================================================================================
# 1. object arrays / forged dtypes from raw bytes (used to SEGFAULT the interpreter)

def crafted_crash_files(tmp_path: Path) -> list[tuple[str, str, Path]]:
    """Per reader, the place where the old reader touched the forged array's items."""
    cases = []
    for kind in ("void-with-object-field", "object-flags-cleared"):
        for p5 in (False, True):
            tag = f"{kind}{'-p5' if p5 else ''}"
            if p5 and kind == "void-with-object-field":
                continue  # same refusal as without protocol 5 (the dtype spec 'V8')
            data = mmsa_obj()
            data["train"]["id"] = raw_object_array(kind, SIZES["train"], p5)
            cases.append((f"mmsa-{tag}", "mmsa", dump(data, tmp_path / f"mmsa-{tag}.pkl", 5)))
            data = mult_obj()
            data["valid"]["id"] = raw_object_array(kind, SIZES["valid"], p5)
            cases.append((f"mult-{tag}", "mult", dump(data, tmp_path / f"mult-{tag}.pkl", 5)))
            data = magbert_obj()
            (words, vis, ac), label, _ = data["test"][1]
            data["test"][1] = ((words, vis, ac), label, raw_object_array(kind, 1, p5))
            cases.append((f"magbert-{tag}", "magbert",
                          dump(data, tmp_path / f"mag-{tag}.pkl", 5)))
    return cases


def test_forged_object_arrays_are_refused_not_crashing(tmp_path):
    cases = crafted_crash_files(tmp_path)
    rc, results, stderr = run_child(cases)
    assert rc == 0, (rc, stderr[-3000:], results)
    for name, _, path in cases:
        assert_refused(results, name, path, "unsafe-pickle", "refused to unpickle")
        msg = results[name][3]
        assert "'V8'" in msg if "void" in name else "flags 0" in msg, msg


OLD_ALLOW_LIST_CHILD = r"""
import pickle, resource, sys
import numpy as np
from numpy._core import multiarray, numeric
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
REAL = {("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,
        ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}

class OldRestricted(pickle.Unpickler):  # the allow-list of safe_pickle before issue 14
    def find_class(self, module, name):
        return REAL[(module, name)]

with open(sys.argv[1], "rb") as fh:
    obj = OldRestricted(fh).load()
print(repr(obj["train"]["id"]))  # reads the raw bytes as PyObject pointers
"""


def test_the_crafted_file_really_crashes_the_old_allow_list(tmp_path):
    """The fixture is hostile: resolving the same NumPy globals without the dtype checks
    kills the interpreter with a signal (SIGSEGV) as soon as the items are read."""
    data = mmsa_obj()
    data["train"]["id"] = raw_object_array("object-flags-cleared", SIZES["train"])
    path = dump(data, tmp_path / "crash.pkl", 4)
    proc = subprocess.run([sys.executable, "-c", OLD_ALLOW_LIST_CHILD, str(path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode < 0, (proc.returncode, proc.stdout[-500:], proc.stderr[-500:])


def test_safe_dtypes_and_scalars_still_load(tmp_path):
    """The checks refuse forged dtypes only: every plain kind, both byte orders, NumPy
    scalars, object arrays of plain values and protocol-5 arrays still round-trip."""
    obj = {"f": np.arange(6, dtype=">f8").reshape(2, 3), "h": np.ones(3, np.float16),
           "c": np.array([1 + 2j]), "b": np.array([True, False]), "u": np.arange(3, dtype="u1"),
           "s": np.array([b"ab", b"c"]), "U": np.array(["xyz", ""]), "fortran":
           np.asfortranarray(np.ones((2, 3), np.float32)), "o": np.array(["p", 1], object),
           "scalars": [np.float64(1.5), np.int32(-2), np.bool_(True), np.str_("é")]}
    for protocol in (2, 4, 5):
        back = safe_pickle.safe_load(dump(obj, tmp_path / f"ok{protocol}.pkl", protocol))
        for key in obj:
            if key != "scalars":
                np.testing.assert_array_equal(back[key], obj[key])
                assert type(back[key]) is np.ndarray  # not the guarded subclass
                # (like plain pickle, NumPy gives '>f8' back as native '<f8' at protocol < 5)
                assert back[key].dtype.newbyteorder("=") == obj[key].dtype.newbyteorder("=")
        assert back["scalars"] == obj["scalars"]


@pytest.mark.parametrize("forged, words", [
    (Reduce(scalar, (forged_dtype("object-flags-cleared"), b"\x41" * 8)), "flags 0"),
    (Reduce(np.dtype, ("M8", False, True)), "'M8'"),
    (Reduce(_reconstruct, (collections.OrderedDict, (0,), b"b")), "not numpy.ndarray"),
    (Reduce(_reconstruct, (np.ndarray, (0,), b"b"),
            (1, (2,), np.dtype("O"), False, b"\x41" * 16)), "not a list of objects"),
])
def test_other_forgeries_are_refused(tmp_path, forged, words):
    path = dump({"train": {"x": forged}}, tmp_path / "forged.pkl", 4)
    with pytest.raises(DataError) as err:
        safe_pickle.safe_load(path)
    assert err.value.code == "unsafe-pickle" and words in str(err.value)


# ============================================================================================
# 2. size claims beyond the file (used to end in numpy's _ArrayMemoryError)

def raw_pickle_claims(tmp_path: Path) -> list[tuple[str, Path]]:
    """Opcode-level claims: a 1 TiB BINBYTES8 payload, a BINSTRING whose length the C unpickler
    reads as unsigned (4 GiB; found by the fuzz test), and memo indexes of 4 billion, binary
    and as text the C unpickler parses like int() (underscores, a sign)."""
    files = {
        "binbytes8": b"\x80\x04" + b"\x8e" + struct.pack("<Q", 1 << 40) + b"tiny" + b".",
        "binstring": b"\x80\x02" + b"T" + struct.pack("<I", 0xFFFFFF4A) + b"x" + b".",
        "memo": b"\x80\x04" + b"N" + b"r" + struct.pack("<I", 0xFFFFFFF0) + b".",
        "memo-text": b"N" + b"p +4_294_967_280\n" + b".",
    }
    for name, raw in files.items():
        (tmp_path / f"{name}.pkl").write_bytes(raw)
    return [(name, tmp_path / f"{name}.pkl") for name in files]


def npy_member(arr_header_shape: tuple[int, ...], data: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": arr_header_shape})
    return buf.getvalue() + data


def terabyte_pickles(tmp_path: Path, where: str) -> list[tuple[str, str, Path]]:
    """MMSA, MulT and MAG-BERT files with one array claiming 1.4 TiB (module docstring)."""
    terabytes = (10 ** 6, 500, 768)  # 1.4 TiB of float32
    mmsa, mult, mag = mmsa_obj(), mult_obj(), magbert_obj()
    mmsa["valid"]["text"] = huge_array(terabytes, where)
    mult["test"]["audio"] = huge_array(terabytes, where)
    (words, vis, ac), label, seg = mag["train"][0]
    mag["train"][0] = ((words, huge_array(terabytes, where), ac), label, seg)
    return [(f"mmsa-{where}", "mmsa", dump(mmsa, tmp_path / f"mmsa-{where}.pkl")),
            (f"mult-{where}", "mult", dump(mult, tmp_path / f"mult-{where}.pkl", 2)),
            (f"magbert-{where}", "magbert", dump(mag, tmp_path / f"mag-{where}.pkl", 5))]


def test_terabyte_claims_are_refused_before_allocating(tmp_path):
    arrays = archive_arrays()
    npz = tmp_path / "huge.npz"
    save_archive(npz, arrays)
    with zipfile.ZipFile(npz, "a") as zf:
        zf.writestr("vision.npy", npy_member((10 ** 12,), b"\0" * 64))
    pickles = terabyte_pickles(tmp_path, "reconstruct") + terabyte_pickles(tmp_path, "state")
    cases = pickles + [("npz", "archive", npz)]
    cases += [(name, "mmsa", path) for name, path in raw_pickle_claims(tmp_path)]
    rc, results, stderr = run_child(cases)
    assert rc == 0, (rc, stderr[-3000:], results)
    for name, _, path in pickles:
        if name.endswith("reconstruct"):  # NumPy's _reconstruct allocates its shape at once
            words = ("(1000000, 500, 768) int8", "357.6 GiB", "gives 0 bytes of data")
        else:
            words = ("(1000000, 500, 768) float32", "1.4 TiB", "gives 16 bytes of data")
        assert_refused(results, name, path, "oversized-claim", *words, "the whole file is")
    assert_refused(results, "npz", npz, "oversized-claim", "key 'vision'", "(1000000000000,)",
                   "3.6 TiB", "holds 64 bytes of array data")
    assert_refused(results, "binbytes8", tmp_path / "binbytes8.pkl", "oversized-claim",
                   "BINBYTES8 payload of 1.0 TiB", "only 5 bytes of the 16 bytes file")
    assert_refused(results, "binstring", tmp_path / "binstring.pkl", "oversized-claim",
                   "BINSTRING payload of 4.0 GiB", "only 2 bytes of the 9 bytes file")
    assert_refused(results, "memo", tmp_path / "memo.pkl", "oversized-claim",
                   "memo entry 4294967280 after only 3 opcodes")
    assert_refused(results, "memo-text", tmp_path / "memo-text.pkl", "oversized-claim",
                   "memo entry 4294967280 after only 2 opcodes")


# ============================================================================================
# 3. SDK .csd links and storage

def test_csd_soft_link_loop_and_other_links(tmp_path):
    label, audio = write_sdk(tmp_path / "sdk")
    with h5py.File(label, "a") as fh:
        data = fh["Opinion Segment Labels/data"]
        data["vLoop1"] = h5py.SoftLink("/Opinion Segment Labels/data/vLoop2")
        data["vLoop2"] = h5py.SoftLink("/Opinion Segment Labels/data/vLoop1")
    for reader in (lambda: read_csd(label), lambda: load_sdk_files(label, audio)):
        with pytest.raises(DataError) as err:
            reader()
        msg = str(err.value)
        assert err.value.code == "unsafe-link" and msg.startswith(f"{label}: entry ")
        assert "is a soft link to '/Opinion Segment Labels/data/vLoop" in msg
        assert "Special link traversal" not in msg and "re-download" in msg

    label, audio = write_sdk(tmp_path / "ext")
    with h5py.File(audio, "a") as fh:
        del fh["COVAREP/data/vA/features"]
        fh["COVAREP/data/vA/features"] = h5py.ExternalLink(str(label), "/x")
    with pytest.raises(DataError, match=r"is an external link into .*labels.csd") as err:
        load_sdk_files(label, audio)
    assert err.value.code == "unsafe-link"

    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"password" * 4)
    label, audio = write_sdk(tmp_path / "extstore")
    with h5py.File(audio, "a") as fh:
        del fh["COVAREP/data/vB/features"]
        fh["COVAREP/data/vB"].create_dataset("features", (1, 3), dtype="f4",
                                             external=[(str(secret), 0, 12)])
    with pytest.raises(DataError, match=r"keeps its data in external file\(s\) '.*secret.txt'"):
        load_sdk_files(label, audio)


def test_csd_size_claims_beyond_the_file(tmp_path):
    label, audio = write_sdk(tmp_path / "sdk")
    with h5py.File(audio, "a") as fh:
        del fh["COVAREP/data/vC/features"]
        del fh["COVAREP/data/vC/intervals"]
        v = fh["COVAREP/data/vC"]  # 4 TiB claimed, no chunk ever written (fill value only)
        v.create_dataset("features", (10 ** 9, 1000), dtype="f4", chunks=(1000, 1000),
                         compression="gzip")
        v.create_dataset("intervals", (10 ** 9, 2), dtype="f8", chunks=(1000, 2),
                         compression="gzip")
    with pytest.raises(DataError) as err:
        load_sdk_files(label, audio)
    msg = str(err.value)
    assert err.value.code == "oversized-claim" and msg.startswith(f"{audio}: dataset ")
    assert "3.6 TiB" in msg and "backed by 0 bytes of storage" in msg


# ============================================================================================
# 4. .npz members that are not arrays

@pytest.mark.parametrize("kind", ["symlink", "directory", "text file"])
def test_npz_member_that_is_not_an_array(tmp_path, kind):
    path = tmp_path / "arc.npz"
    save_archive(path, archive_arrays())
    with zipfile.ZipFile(path, "a") as zf:
        if kind == "symlink":
            info = zipfile.ZipInfo("vision.npy")
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        elif kind == "directory":
            zf.mkdir("vision")
        else:
            zf.writestr("vision.npy", "not an array\n")
    with pytest.raises(DataError) as err:
        load_archive(path, meta=MOSI, setting="unaligned")
    msg = str(err.value)
    assert err.value.code == "unsafe-member" and msg.startswith(f"{path}: ")
    assert {"symlink": "is a symbolic link", "directory": "is a directory",
            "text file": "does not start with the .npy magic"}[kind] in msg
    assert "re-create the archive with numpy.savez" in msg


# ============================================================================================
# 5. decompression bomb

def write_bomb(path: Path, n_rows: int = 300_000, dim: int = 1000) -> int:
    """An archive whose 'audio' deflates 1030:1: all zeros, (n_rows, dim) float32.

    Built without compressing gigabytes: one deflate segment of 1 MiB of zeros, emitted by a
    fresh compressor and byte-aligned by a full flush, is a valid stream on its own, so
    repeating it gives the same stream a compressor would write. Returns the inflated size.
    """
    arrays = archive_arrays()
    n = len(arrays["ids"])
    del arrays["audio"], arrays["audio_lengths"]
    save_archive(path, arrays)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (n, n_rows * dim // n)})
    head = header.getvalue()
    data_len = n * (n_rows * dim // n) * 4
    chunk = 1 << 20
    reps, rest = divmod(data_len, chunk)

    def segment(data: bytes) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)

    zeros = segment(bytes(chunk))
    body = segment(head) + zeros * reps + segment(bytes(rest)) + b"\x03\x00"  # final block
    crc = zlib.crc32(head)
    block = bytes(chunk)
    for _ in range(reps):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(rest), crc)
    size = len(head) + data_len
    name = b"audio.npy"
    with open(path, "r+b") as fh:  # append the member and rewrite the central directory
        zf = zipfile.ZipFile(fh)
        infos = zf.infolist()
        cd_offset = zf.start_dir
        zf.close()
        fh.seek(cd_offset)
        central = fh.read()
        cd_end = central.index(b"PK\x05\x06")
        entries = central[:cd_end]
        fh.seek(cd_offset)
        local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(body),
                            size, len(name), 0)
        fh.write(local + name + body)
        new_entry = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc,
                                len(body), size, len(name), 0, 0, 0, 0, 0o644 << 16,
                                cd_offset) + name
        new_cd = fh.tell()
        fh.write(entries + new_entry)
        end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(infos) + 1, len(infos) + 1,
                          len(entries) + len(new_entry), new_cd, 0)
        fh.write(end)
        fh.truncate()
    return size


def test_decompression_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    inflated = write_bomb(path)
    assert path.stat().st_size < 1.3e6 and inflated > 1.1e9
    with zipfile.ZipFile(path) as zf:  # the zip's sizes do not lie: it really inflates so
        info = zf.getinfo("audio.npy")
        assert info.file_size == inflated
        ratio = info.file_size / info.compress_size
        with zf.open(info) as member:  # a valid deflate stream: its first MiB inflates fine
            assert member.read(1 << 20)[:6] == b"\x93NUMPY"
    assert ratio > 1000
    with pytest.raises(DataError) as err:
        load_archive(path, meta=MOSI, setting="unaligned")
    msg = str(err.value)
    assert err.value.code == "decompression-bomb" and msg.startswith(f"{path}: key 'audio'")
    assert "would inflate to a (12, 25000000) float32 array (1.1 GiB)" in msg
    assert f"a ratio of {ratio:.0f}:1" in msg and "re-save it uncompressed" in msg


# ============================================================================================
# 6. label.csv ids that would read media outside the data folder

class NeverExtract:
    """An audio extractor that fails the test if anything reaches extraction."""

    name, modality, config = "never", "audio", {}

    def cache_key(self) -> str:
        return "never"

    def extract(self, inputs):  # pragma: no cover - reaching it is the bug
        raise AssertionError(f"extracted {inputs!r}")


@pytest.mark.parametrize("video, clip, column, shown", [
    ("../../outside", "0001", "video_id", "'../../outside'"),
    ("/etc", "passwd", "video_id", "'/etc'"),
    ("video_0002", "/etc/passwd", "clip_id", "'/etc/passwd'"),
    ("..", "0001", "video_id", "'..'"),
    ("video_0002", "..\\\\..\\\\x", "clip_id", "'..\\\\\\\\..\\\\\\\\x'"),
])
def test_label_csv_ids_cannot_leave_the_data_folder(tmp_path, video, clip, column, shown):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "0001.mp4").write_bytes(b"not yours")
    label = write_label_csv(tmp_path / "data" / "chsims2",
                            LABEL_CSV.replace("video_0002,0001", f"{video},{clip}"))
    for read in (lambda: read_sims_labels(label),
                 lambda: load_raw(label.parent, meta=SIMS, setting="raw",
                                  extractors={"audio": NeverExtract()},
                                  cache_dir=tmp_path / "cache")):
        with pytest.raises(DataError) as err:
            read()
        msg = str(err.value)
        assert err.value.code == "path-escape" and msg.startswith(f"{label}: ")
        assert f"column {column!r} on line 4 is {shown}" in msg, msg
        assert "would reach outside the dataset folder - fix the label table" in msg


def test_symlinked_clip_outside_raw_is_refused(tmp_path):
    root = tmp_path / "chsims2"
    write_label_csv(root)
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"not a clip of this dataset")
    for line in LABEL_CSV.splitlines()[1:]:
        video, clip = line.split(",")[:2]
        clip_path = root / "Raw" / video / f"{clip}.mp4"
        clip_path.parent.mkdir(parents=True, exist_ok=True)
        if (video, clip) == ("video_0003", "0007"):
            clip_path.symlink_to(secret)
        else:
            clip_path.write_bytes(b"clip")
    with pytest.raises(DataError) as err:
        load_raw(root, meta=SIMS, setting="raw", extractors={"audio": NeverExtract()},
                 cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert err.value.code == "path-escape" and "video_0003$_$0007" in msg
    assert f"resolves to {secret}, outside {(root / 'Raw').resolve()}" in msg


# ============================================================================================
# 9. the threat model: the allow-list and the problem codes are exactly what docs/datasets.md says

EXPECTED_ALLOWED_GLOBALS = {
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
    "numpy.ndarray", "numpy.dtype", "_codecs.encode", "collections.OrderedDict",
}


def _threat_model() -> str:
    text = (ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
    start = text.index("## Threat model: untrusted dataset files")
    return text[start:text.index("\n## ", start + 1)]


def test_the_unpickler_allow_list_does_not_grow():
    """Adding a global to safe_pickle.ALLOWED_GLOBALS must be a deliberate, reviewed change:
    update this set AND the table in docs/datasets.md (why the new entry is safe)."""
    assert set(safe_pickle.ALLOWED_GLOBALS) == EXPECTED_ALLOWED_GLOBALS
    doc = _threat_model()
    for name in EXPECTED_ALLOWED_GLOBALS:
        assert f"`{name}`" in doc, f"docs/datasets.md's threat model does not explain {name}"
    # nothing resolves to a callable that could run code: every resolver gives our wrappers,
    # the marker or OrderedDict
    resolved = {name: resolve() for name, resolve in safe_pickle.ALLOWED_GLOBALS.items()}
    wrappers = {safe_pickle._reconstruct, safe_pickle._scalar, safe_pickle._frombuffer,
                safe_pickle._dtype, safe_pickle._latin1_encode, safe_pickle._NDARRAY,
                collections.OrderedDict}
    assert all(any(obj is w for w in wrappers) for obj in resolved.values()), resolved


def test_every_problem_code_is_documented_with_its_severity():
    from msabench.cli.data import CHECK_CODES
    from msabench_builtins.datasets.problems import CODES

    doc = _threat_model()
    for code in CODES:
        assert f"| `{code}` | error |" in doc, code
    for code, severity in CHECK_CODES.items():
        assert f"| `{code}` | {severity} |" in doc, code


@pytest.mark.parametrize("codec, text", [("zlib", "x"), ("rot13", "x"), ("latin1", b"x")])
def test_codecs_encode_is_latin1_on_str_only(tmp_path, codec, text):
    path = dump({"x": Reduce(__import__("_codecs").encode, (text, codec))},
                tmp_path / "codec.pkl", 2)
    with pytest.raises(DataError, match="_codecs.encode is asked for codec") as err:
        safe_pickle.safe_load(path)
    assert err.value.code == "unsafe-pickle"
