"""Hand-made hostile inputs for the untrusted-input tests: tiny valid archives and HF
directories, and the ways to spoil them (members changed and re-signed, GNU sparse
members, safetensors headers rewritten), plus running a command under a memory limit."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import resource
import struct
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STOKER = str(Path(sys.executable).with_name("stoker"))


def tiny_archive(path: Path) -> Path:
    """A real 1-layer GPT archive with a char tokenizer (no training needed)."""
    import torch

    from stoker.data.tokenizers import CharTokenizer
    from stoker.models import GPTConfig, build_model
    from stoker.package import write_archive

    torch.manual_seed(0)
    tok = CharTokenizer("abcdefgh ")
    m = build_model(GPTConfig(vocab_size=tok.vocab_size, n_layers=1, dim=16, n_heads=2,
                              max_seq_len=16))
    return write_archive(path, model_config=m.config.model_dump(mode="json"),
                         state_dict=m.state_dict(), tokenizer=tok, lineage={})


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()}


def resign(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """``src`` with members replaced (None: removed, new names: added) and the manifest
    re-hashed to match, as someone forging an archive would."""
    data = members(src)
    man = json.loads(data.pop("MANIFEST.json"))
    for name, new in change.items():
        if new is None:
            data.pop(name, None)
            man["members"].pop(name, None)
        else:
            data[name] = new
            man["members"][name] = {"size": len(new), "sha256": hashlib.sha256(new).hexdigest()}
    data["MANIFEST.json"] = json.dumps(man).encode()
    return write_tar(dst, data)


def write_tar(dst: Path, data: dict[str, bytes], tail: bytes = b"") -> Path:
    """A tar of ``data`` (in order), then raw ``tail`` blocks, then the end marker."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, b in data.items():
            info = tarfile.TarInfo(name)
            info.size = len(b)
            t.addfile(info, io.BytesIO(b))
        body = buf.getvalue()[: t.offset]
    dst.write_bytes(body + tail + b"\0" * (2 * tarfile.BLOCKSIZE))
    return dst


def _octal(n: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, n)


def gnu_sparse_member(name: str, claimed: int, on_disk: bytes = b"{}") -> bytes:
    """A GNU sparse tar member (type 'S'): ``on_disk`` bytes stored, ``claimed`` bytes
    when expanded (holes read as zeros). tarfile reads it as a regular file of ``claimed``."""
    disk = on_disk + b"\0" * (-len(on_disk) % tarfile.BLOCKSIZE)
    h = bytearray(tarfile.BLOCKSIZE)
    h[0 : len(name)] = name.encode()
    h[100:108], h[108:116], h[116:124] = _octal(0o644, 8), _octal(0, 8), _octal(0, 8)
    h[124:136], h[136:148] = _octal(len(disk), 12), _octal(0, 12)
    h[156:157] = b"S"
    h[257:265] = b"ustar  \0"
    h[386:398], h[398:410] = _octal(0, 12), _octal(len(disk), 12)  # data first, then a hole
    h[483:495] = _octal(claimed, 12)
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h) + disk


def sparse_manifest_archive(src: Path, dst: Path, claimed: int = 2 << 30) -> Path:
    """``src`` whose MANIFEST.json is a GNU sparse member claiming ``claimed`` bytes."""
    data = members(src)
    data.pop("MANIFEST.json")
    return write_tar(dst, data, gnu_sparse_member("MANIFEST.json", claimed))


def safetensors_parts(blob: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def safetensors_blob(header: Any, data: bytes) -> bytes:
    hb = json.dumps(header).encode()
    return struct.pack("<Q", len(hb)) + hb + data


def overlapping(blob: bytes) -> bytes:
    """The same file with two same-sized tensors (neither the last) over the same bytes."""
    header, data = safetensors_parts(blob)
    names = sorted((k for k in header if k != "__metadata__"),
                   key=lambda k: header[k]["data_offsets"])[:-1]
    by_size: dict[int, str] = {}
    for k in names:
        a, b = header[k]["data_offsets"]
        if b - a in by_size and b > a:
            header[k]["data_offsets"] = header[by_size[b - a]]["data_offsets"]
            return safetensors_blob(header, data)
        by_size[b - a] = k
    raise AssertionError("no two tensors of one size")


def hf_dir(d: Path, **config: Any) -> Path:
    """A tiny local Llama directory (config.json, model.safetensors, tokenizer.json) made
    from a stoker GPT through stoker's own mapping; ``config`` overrides config.json keys."""
    import torch
    from safetensors.torch import save_file

    from stoker.data.tokenizers import CharTokenizer
    from stoker.models import GPTConfig, build_model
    from stoker.models.hf import gpt_config_to_llama, gpt_state_to_hf

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=96, n_layers=1, dim=16, n_heads=2, max_seq_len=16)
    model = build_model(cfg)
    d.mkdir(parents=True)
    raw = gpt_config_to_llama(cfg).to_dict()
    raw.update(config)
    (d / "config.json").write_text(json.dumps(raw))
    save_file({k: v.contiguous() for k, v in gpt_state_to_hf(model.state_dict(), cfg).items()},
              str(d / "model.safetensors"))
    tok = CharTokenizer("abcdefgh ").save(d / "_tok")
    os.replace(tok / "tokenizer.json", d / "tokenizer.json")
    for p in tok.iterdir():
        p.unlink()
    tok.rmdir()
    return d


def run_limited(*args: str, limit_bytes: int = 3 << 29, cwd: Path | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """The real ``stoker`` CLI in a child whose address space is capped (RLIMIT_AS), so a
    read that balloons fails there with MemoryError instead of passing unnoticed."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return subprocess.run([STOKER, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          preexec_fn=cap, timeout=timeout, check=False)


_watched: list[tuple[str, list[str]]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _watched and isinstance(args[0], (str, bytes, os.PathLike)):
        p = os.fsdecode(args[0])
        for root, seen in _watched:
            if p == root or p.startswith(root + os.sep):
                seen.append(p)


@contextlib.contextmanager
def opened_under(root: Path) -> Iterator[list[str]]:
    """The files this process opens under ``root`` while the block runs (an audit hook:
    Python's own record of every open, so a read outside cannot hide behind an error
    raised afterwards)."""
    if not getattr(opened_under, "hooked", False):
        sys.addaudithook(_audit)  # permanent, and idle while nothing is watched
        opened_under.hooked = True  # type: ignore[attr-defined]
    entry: tuple[str, list[str]] = (str(root), [])
    _watched.append(entry)
    try:
        yield entry[1]
    finally:
        _watched.remove(entry)
