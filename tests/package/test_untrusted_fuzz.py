"""Property: a malformed archive, safetensors file or HF directory is a typed stoker error
or a success, never another exception, never a read outside its container, never an
unbounded allocation.

Inputs are drawn from valid ones by hypothesis: truncations, flipped bytes and lengths,
JSON values of the wrong type, keys removed or added, paths that point outside, with or
without the manifest re-signed (so content checks are reached, not only the SHA-256).
Runs in-process through the Python API for speed, each example under an address-space
cap 1 GiB above what the process already holds (RLIMIT_AS, soft limit, restored after),
and with an audit hook (``crafted.opened_under``) recording every file opened under a
directory planted outside (holding valid bait files) or at ``/etc/passwd``.

A fixed seed (``derandomize``) and a small budget under ``make test``; ``make fuzz`` sets
``STOKER_FUZZ_EXAMPLES`` for a larger one.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crafted import members, opened_under, resign, safetensors_parts, tiny_archive, write_tar
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stoker.errors import StokerError

EXAMPLES = int(os.environ.get("STOKER_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# ---------------------------------------------------------------- outside the container
OUTSIDE = Path(os.environ.get("TMPDIR", "/tmp")) / f"stoker-fuzz-outside-{os.getpid()}"


@pytest.fixture(scope="module")
def outside() -> Iterator[Path]:
    OUTSIDE.mkdir(parents=True, exist_ok=True)
    yield OUTSIDE
    shutil.rmtree(OUTSIDE, ignore_errors=True)


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def bounded(extra: int = 1 << 30) -> Iterator[None]:
    """No allocation past what the process holds plus ``extra`` (MemoryError instead)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + extra
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _outcome(fn: Any, *args: Any) -> None:
    """Run ``fn``: success or a StokerError, nothing else, nothing read outside."""
    with opened_under(OUTSIDE) as opened, opened_under(Path("/etc/passwd")) as passwd:
        try:
            with bounded():
                fn(*args)
            event("accepted")
        except StokerError as e:
            event(f"refused: {type(e).__name__}")
    assert not opened and not passwd, f"read outside the container: {opened + passwd}"


# ------------------------------------------------------------------------ strategies
def _paths(outside: Path) -> st.SearchStrategy[str]:
    secret = str(outside / "tokenizer.json")
    weights = str(outside / "model.safetensors")
    return st.sampled_from([secret, "../" * 12 + secret.lstrip("/"), "/etc/passwd", weights,
                            "../" * 12 + weights.lstrip("/"), "../model.safetensors",
                            "../tokenizer.json", "archive:../x", "archive:files/nope",
                            "tokenizer.json", ".", "", "a/../../b", "C:\\x", "\\\\host\\x"])


def _values(outside: Path) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(),
                        st.integers(min_value=-(1 << 64), max_value=1 << 64),
                        st.sampled_from([0, -1, 1, 2**31, 2**63, 1.5, float("nan")]),
                        st.text(max_size=8), _paths(outside))
    return st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=3),
                                                     st.dictionaries(st.text(max_size=4), c,
                                                                     max_size=3)),
                        max_leaves=6)


def _json_paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _json_paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree[:4]):
            out += _json_paths(v, (*prefix, i))
    return out


@st.composite
def json_edit(draw: Any, tree: Any, outside: Path) -> Any:
    """``tree`` with one value replaced, one key removed or one key added."""
    tree = json.loads(json.dumps(tree))
    path = draw(st.sampled_from(_json_paths(tree)))
    if not path:
        return draw(_values(outside))
    parent = tree
    for k in path[:-1]:
        parent = parent[k]
    op = draw(st.sampled_from(["replace", "delete", "add"]))
    if op == "delete":
        del parent[path[-1]]
    elif op == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=6))] = draw(_values(outside))
    else:
        parent[path[-1]] = draw(_values(outside))
    return tree


@st.composite
def byte_edit(draw: Any, blob: bytes) -> bytes:
    """Truncated, a byte flipped, or (safetensors) the 8-byte header length changed."""
    op = draw(st.sampled_from(["truncate", "flip", "length"]))
    if op == "truncate" or not blob:
        return blob[: draw(st.integers(0, max(len(blob) - 1, 0)))]
    if op == "flip":
        i = draw(st.integers(0, len(blob) - 1))
        return blob[:i] + bytes([blob[i] ^ draw(st.integers(1, 255))]) + blob[i + 1 :]
    n = draw(st.one_of(st.integers(0, (1 << 64) - 1), st.integers(0, len(blob) + 16)))
    return struct.pack("<Q", n) + blob[8:]


@st.composite
def safetensors_edit(draw: Any, blob: bytes, outside: Path) -> bytes:
    """A header edited as JSON (offsets, shapes, dtypes, keys), data kept; or bytes."""
    if draw(st.booleans()):
        return draw(byte_edit(blob))
    header, data = safetensors_parts(blob)
    hb = json.dumps(draw(json_edit(header, outside))).encode()
    return struct.pack("<Q", len(hb)) + hb + data


# ------------------------------------------------------------------------ archives
class Base(dict):
    """The valid archive the cases start from (a short repr keeps failure reports short)."""

    def __repr__(self) -> str:
        return f"<valid archive {self['archive']}>"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, outside: Path) -> Base:
    root = tmp_path_factory.mktemp("fuzz")
    arch = tiny_archive(root / "ok.stoker")
    data = members(arch)
    (outside / "tokenizer.json").write_bytes(data["tokenizer/tokenizer.json"])  # valid bait
    return Base(root=root, archive=arch, members=data)


JSON_MEMBERS = ["config.json", "lineage.json", "tokenizer/stoker_tokenizer.json",
                "tokenizer/tokenizer.json", "MANIFEST.json"]


@FUZZ
@given(data=st.data())
def test_malformed_archives_are_typed_errors_or_success(base: dict[str, Any], outside: Path,
                                                        data: Any) -> None:
    from stoker.package import restore

    src: dict[str, bytes] = base["members"]
    target = data.draw(st.sampled_from([*JSON_MEMBERS, "weights.safetensors", "<tar>"]))
    dst = base["root"] / "case.stoker"
    if target == "<tar>":  # the container itself: cut short or a byte flipped
        write_tar(dst, {**src})
        dst.write_bytes(data.draw(byte_edit(dst.read_bytes())))
    else:
        blob = src[target]
        if target == "weights.safetensors":
            new = data.draw(safetensors_edit(blob, outside))
        elif data.draw(st.booleans()):
            new = json.dumps(data.draw(json_edit(json.loads(blob), outside))).encode()
        else:
            new = data.draw(byte_edit(blob))
        if target == "MANIFEST.json" or not data.draw(st.booleans()):
            write_tar(dst, {**src, target: new})  # not re-signed: the manifest catches it
        else:
            resign(base["archive"], dst, {target: new})
    _outcome(restore, dst)


@FUZZ
@given(data=st.data())
def test_tokenizer_paths_never_lead_outside(base: Base, outside: Path, data: Any) -> None:
    """Focused: every drawn archive names a tokenizer file by a hostile path (re-signed)."""
    from stoker.package import restore

    path = data.draw(st.one_of(_paths(outside), st.text(max_size=12)))
    kind = data.draw(st.sampled_from(["hf", "sentencepiece"]))
    marker = {"type": kind, "file": path}
    dst = resign(base["archive"], base["root"] / "paths.stoker",
                 {"tokenizer/stoker_tokenizer.json": json.dumps(marker).encode()})
    _outcome(restore, dst)


@FUZZ
@given(data=st.data())
def test_malformed_safetensors_are_damaged_file_or_tensors(base: dict[str, Any], outside: Path,
                                                          data: Any) -> None:
    from stoker.train.checkpoint.tensors import DamagedFile, parse_safetensors

    blob = data.draw(safetensors_edit(base["members"]["weights.safetensors"], outside))
    try:
        with bounded():
            out = parse_safetensors(Path("fuzz"), "w.safetensors", bytearray(blob))
    except DamagedFile:
        return
    # accepted: every tensor lies in the file and none share bytes
    assert sum(t.numel() * t.element_size() for t in out.values()) <= len(blob)


# ------------------------------------------------------------------------ HF directories
@pytest.fixture(scope="module")
def hf_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from crafted import hf_dir

    return hf_dir(tmp_path_factory.mktemp("fuzz_hf") / "llama")


@FUZZ
@given(data=st.data())
def test_malformed_hf_directories_are_typed_errors_or_success(hf_base: Path, outside: Path,
                                                              data: Any) -> None:
    from stoker.package.hf_import import read_hf

    d = hf_base.parent / "case"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(hf_base, d)
    what = data.draw(st.sampled_from(["config", "weights", "index"]))
    if what == "config":
        raw = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps(data.draw(json_edit(raw, outside))))
    elif what == "weights":
        blob = (d / "model.safetensors").read_bytes()
        (d / "model.safetensors").write_bytes(data.draw(safetensors_edit(blob, outside)))
    else:
        (outside / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes())
        index = {"metadata": {}, "weight_map": {"lm_head.weight": "model.safetensors"}}
        (d / "model.safetensors.index.json").write_text(
            json.dumps(data.draw(json_edit(index, outside))))
    _outcome(read_hf, d)
