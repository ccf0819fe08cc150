"""Every read of an archive or an HF directory is bounded, stays inside, and checks content
(issue 19, findings 2-4): each hostile input is exit 2 through the real CLI with a message
naming the member or file, a typed error through the Python API, and the memory bombs stay
under a hard address-space limit (RLIMIT_AS in the child)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from crafted import (
    hf_dir,
    members,
    opened_under,
    overlapping,
    resign,
    run_limited,
    safetensors_blob,
    safetensors_parts,
    sparse_manifest_archive,
    tiny_archive,
    write_tar,
)

from stoker.errors import ArchiveError, UserError
from stoker.package import restore


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_archive(tmp_path_factory.mktemp("untrusted") / "ok.stoker")


def _refused(path: Path, expect: str, *, eval_too: bool = False,
             outside: Path | None = None, cli: bool = True) -> None:
    """Refused by `stoker.restore` (ArchiveError; nothing opened under ``outside``) and by
    the CLI (exit 2, no traceback)."""
    with opened_under(outside or path.with_suffix(".nowhere")) as opened, \
            pytest.raises(ArchiveError, match=expect):
        restore(path)
    assert not opened, f"read outside {path}: {opened}"
    commands = [["generate", "text", "--checkpoint", str(path), "-n", "2"]] if cli else []
    if eval_too:
        commands.append(["eval", str(path), "--batches", "1"])
    for args in commands:
        r = run_limited(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stdout == ""
        assert str(path) in r.stderr and expect.replace("\\", "") in r.stderr, r.stderr


# ------------------------------------------------------------------------ memory bombs
@pytest.mark.integration
def test_sparse_manifest_claiming_2gib_is_refused_in_bounded_memory(archive: Path,
                                                                    tmp_path: Path) -> None:
    """75 KB on disk, 2 GiB when tarfile expands it: refused on its header, before any
    read (the child's address space is capped at 1.5 GiB; the old reader died there)."""
    bomb = sparse_manifest_archive(archive, tmp_path / "bomb.stoker")
    assert bomb.stat().st_size < 100_000
    _refused(bomb, "'MANIFEST.json' is a GNU sparse file", eval_too=True)


@pytest.mark.integration
def test_oversized_manifest_is_refused_before_it_is_read(archive: Path, tmp_path: Path) -> None:
    data = members(archive)
    man = json.loads(data["MANIFEST.json"])
    man["padding"] = "x" * (17 << 20)
    data["MANIFEST.json"] = json.dumps(man).encode()
    big = write_tar(tmp_path / "big.stoker", data)
    _refused(big, r"'MANIFEST.json' declares 17 MiB; a manifest is at most 16 MiB")


def test_a_normal_restore_fits_under_the_memory_limit(archive: Path) -> None:
    """The limit the bomb tests use is not what makes them fail."""
    r = run_limited("generate", "text", "--checkpoint", str(archive), "-p", "ab", "-n", "3")
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------- tokenizer paths
def _marker_archive(archive: Path, dst: Path, marker: object) -> Path:
    return resign(archive, dst, {"tokenizer/stoker_tokenizer.json": json.dumps(marker).encode()})


@pytest.mark.integration
def test_tokenizer_marker_cannot_read_outside_the_archive(archive: Path, tmp_path: Path) -> None:
    # a perfectly valid tokenizer.json outside: reading it would succeed, silently
    secret = tmp_path / "outside" / "tokenizer.json"
    secret.parent.mkdir()
    secret.write_bytes(members(archive)["tokenizer/tokenizer.json"])
    cases = {
        "abs": ({"type": "hf", "file": str(secret)}, "is an absolute path"),
        "etc": ({"type": "hf", "file": "/etc/passwd"}, "is an absolute path"),
        "dots": ({"type": "hf", "file": "../../../../../../" + str(secret)[1:]},
                 "climbs out of"),
        "list": ([], "expected a JSON object"),
        "kind": ({"type": "pickle", "file": "tokenizer.json"}, "unknown tokenizer type"),
        "nofile": ({"type": "sentencepiece"}, "expected a file name inside"),
        "nul": ({"type": "hf", "file": "tokenizer.json\u0000"}, "expected a file name inside"),
    }
    for name, (marker, expect) in cases.items():
        _refused(_marker_archive(archive, tmp_path / f"{name}.stoker", marker), expect,
                 outside=secret.parent)


# ------------------------------------------------------------------- safetensors content
def _weights_archive(archive: Path, dst: Path, blob: bytes) -> Path:
    return resign(archive, dst, {"weights.safetensors": blob})


@pytest.mark.integration
def test_malformed_safetensors_headers_are_refused(archive: Path, tmp_path: Path) -> None:
    import pickle

    blob = members(archive)["weights.safetensors"]
    header, data = safetensors_parts(blob)
    name = next(k for k in header if k != "__metadata__")
    negative = json.loads(json.dumps(header))
    negative[name]["shape"] = [-1, *negative[name]["shape"][1:]]
    extra_key = json.loads(json.dumps(header))
    extra_key[name]["note"] = 1
    cases = {
        "list": (safetensors_blob([1, 2], data), "header is a JSON list"),
        "negative": (safetensors_blob(negative, data), "non-negative integers"),
        "extra": (safetensors_blob(extra_key, data), "exactly dtype, shape and data_offsets"),
        "overlap": (overlapping(blob), r"tensors must tile the data region \(overlap\)"),
        "gap": (safetensors_blob(header, data[:-4]), "the file holds"),
        "huge-header": (b"\xff" * 8 + blob[8:], "header; a safetensors header is at most"),
        "pickle": (pickle.dumps({"w": list(range(100))}), "safetensors header is at most"),
        "short": (b"\x01\x00", "too short"),
    }
    for case, (bad, expect) in cases.items():  # the CLI for a few (each costs a process)
        _refused(_weights_archive(archive, tmp_path / f"{case}.stoker", bad), expect,
                 cli=case in ("list", "negative", "overlap", "pickle"))


def test_overlapping_tensors_are_refused_through_the_api(archive: Path, tmp_path: Path) -> None:
    """Two tensors over the same bytes would alias each other's memory (was exit 0)."""
    bad = _weights_archive(archive, tmp_path / "o.stoker",
                           overlapping(members(archive)["weights.safetensors"]))
    with pytest.raises(ArchiveError, match=r"weights.safetensors.*\(overlap\)"):
        restore(bad)


# ------------------------------------------------------------------------ member names
@pytest.mark.integration
def test_a_member_that_is_also_a_directory_is_refused(archive: Path, tmp_path: Path) -> None:
    bad = resign(archive, tmp_path / "ab.stoker",
                 {"tokenizer/a": b"x", "tokenizer/a/b": b"y"})
    _refused(bad, "member 'tokenizer/a' is a file and also the directory of member "
                  "'tokenizer/a/b'")


def test_json_members_with_duplicate_keys_are_refused(archive: Path, tmp_path: Path) -> None:
    cfg = members(archive)["config.json"].decode()
    twice = cfg.replace('"weights":', '"weights": "weights.pt", "weights":', 1)
    bad = resign(archive, tmp_path / "dup.stoker", {"config.json": twice.encode()})
    with pytest.raises(ArchiveError, match="'config.json': duplicate key 'weights'"):
        restore(bad)


# -------------------------------------------------------------------------- HF imports
transformers_needed = pytest.mark.skipif(
    __import__("importlib").util.find_spec("transformers") is None,
    reason="transformers is not installed")


def _import_refused(d: Path, expect: str, tmp_path: Path, *, outside: Path | None = None,
                    cli: bool = True) -> None:
    """Refused by `import_hf` (UserError; nothing opened under ``outside``) and by the CLI."""
    from stoker.package import import_hf

    out = tmp_path / "o.stoker"
    with opened_under(outside or tmp_path / "nowhere") as opened, \
            pytest.raises(UserError, match=expect):
        import_hf(d, out)
    assert not opened, f"read outside {d}: {opened}"
    if not cli:
        return
    r = run_limited("import", "hf", str(d), "--output", str(out))
    assert r.returncode == 2, r.stderr
    assert expect.replace("\\", "") in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() and not list(tmp_path.glob(".o.stoker*"))


@transformers_needed
@pytest.mark.integration
def test_hf_config_that_is_a_device_a_fifo_or_huge_is_refused_in_bounded_memory(
        tmp_path: Path) -> None:
    d = hf_dir(tmp_path / "llama")
    (d / "config.json").unlink()
    (d / "config.json").symlink_to("/dev/zero")
    _import_refused(d, "config.json' leads out of", tmp_path)
    (d / "config.json").unlink()
    os.mkfifo(d / "config.json")  # opening it must not hang
    _import_refused(d, "config.json is a FIFO", tmp_path)
    (d / "config.json").unlink()
    with open(d / "config.json", "wb") as f:  # 3 GB sparse: no disk used
        f.truncate(3 << 30)
    _import_refused(d, "config.json is larger than 16 MiB", tmp_path)
    (d / "config.json").unlink()
    (d / "zero").symlink_to("/dev/zero")
    (d / "config.json").symlink_to("zero")  # a link to a link: still out
    _import_refused(d, "leads out of", tmp_path)


@transformers_needed
@pytest.mark.integration
def test_hf_import_hashes_only_the_files_it_uses_in_bounded_memory(tmp_path: Path) -> None:
    """A 3 GB sparse notes.txt beside the model is never read (it was hashed whole), so the
    import passes under a 1.5 GiB address-space cap; the lineage names what was used."""
    from stoker.package.archive import ArchiveReader

    d = hf_dir(tmp_path / "llama")
    with open(d / "notes.txt", "wb") as f:
        f.truncate(3 << 30)
    (d / "fifo").symlink_to("/dev/zero")
    out = tmp_path / "ok.stoker"
    r = run_limited("import", "hf", str(d), "--output", str(out))
    assert r.returncode == 0, r.stderr
    with ArchiveReader(out) as rd:
        files = rd.read_json("lineage.json")["source"]["files"]
    assert sorted(files) == ["config.json", "model.safetensors", "tokenizer.json"]


@transformers_needed
@pytest.mark.integration
def test_hf_index_paths_stay_inside_and_the_index_is_checked(tmp_path: Path) -> None:
    d = hf_dir(tmp_path / "llama")
    (tmp_path / "elsewhere").mkdir()
    outside = tmp_path / "elsewhere" / "model.safetensors"
    os.replace(d / "model.safetensors", outside)  # valid weights: reading them would pass
    index = d / "model.safetensors.index.json"
    for wmap, expect in (({"lm_head.weight": str(outside)}, "is an absolute path"),
                         ({"lm_head.weight": "../elsewhere/model.safetensors"}, "climbs out of")):
        index.write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
        _import_refused(d, expect, tmp_path, outside=outside.parent)
    (d / "w.safetensors").symlink_to(outside)
    index.write_text(json.dumps({"weight_map": {"lm_head.weight": "w.safetensors"}}))
    _import_refused(d, "leads out of", tmp_path, outside=outside.parent)
    index.write_text(json.dumps({"metadata": {}}))
    _import_refused(d, "non-empty 'weight_map'", tmp_path)
    index.write_text("{not json")
    _import_refused(d, "index.json is not valid JSON", tmp_path)
    index.write_text('{"weight_map": {"a": "w.safetensors"}, "weight_map": {}}')
    _import_refused(d, "duplicate key 'weight_map'", tmp_path)


@transformers_needed
@pytest.mark.integration
def test_hf_config_is_validated_before_anything_is_built(tmp_path: Path) -> None:
    cases = {
        "heads0": ({"num_attention_heads": 0}, "num_attention_heads must be a positive"),
        "divide": ({"num_attention_heads": 3, "num_key_value_heads": 3, "head_dim": None},
                   "num_attention_heads=3 does not divide hidden_size=16"),
        "head_dim": ({"head_dim": 4}, r"num_attention_heads=2 \* head_dim=4 != hidden_size=16"),
        "kv": ({"num_key_value_heads": 3}, "num_key_value_heads=3 does not divide"),
        "type": ({"hidden_size": "16"}, "hidden_size must be a positive integer, got '16'"),
        # was exit 0, writing an archive that restore then refused
        "vocab": ({"vocab_size": 1000}, (r"vocab_size=1000, but model.embed_tokens.weight "
                                         r"\(model.safetensors\) has shape \(96, 16\)")),
        "layers": ({"num_hidden_layers": 2}, "weight 'model.layers.1"),
        # found by make fuzz: torch's size arithmetic overflowed (RuntimeError)
        "huge": ({"max_position_embeddings": 1 << 60}, "larger than any model stoker builds"),
    }
    for name, (change, expect) in cases.items():  # the CLI for the two of the issue
        _import_refused(hf_dir(tmp_path / name, **change), expect, tmp_path,
                        cli=name in ("heads0", "vocab"))


@transformers_needed
@pytest.mark.integration
def test_hf_weights_that_are_not_safetensors_are_refused(tmp_path: Path) -> None:
    import pickle

    d = hf_dir(tmp_path / "llama")
    (d / "model.safetensors").write_bytes(pickle.dumps({"w": 1}))
    _import_refused(d, "model.safetensors is not a valid safetensors file", tmp_path)
    (d / "model.safetensors").write_bytes(safetensors_blob([], b""))
    _import_refused(d, "header is a JSON list", tmp_path)
