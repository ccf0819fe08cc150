"""Model archives: pack -> restore round trip, lineage, safety against malicious archives
(each refused through the real CLI with exit 2 and nothing written)."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from train_helpers import run_cli

from stoker.errors import ArchiveError
from stoker.package import pack, restore
from stoker.package.archive import ArchiveReader
from stoker.package.trust import check_targets


@pytest.fixture(scope="module")
def archive(gpt_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack(str(gpt_run), tmp_path_factory.mktemp("arch") / "model.stoker")


def test_restore_matches_the_checkpoint_and_is_self_contained(archive: Path, gpt_run: Path,
                                                              tmp_path: Path) -> None:
    from stoker.package import open_model

    r = restore(archive)
    ref = open_model(str(gpt_run))
    x = torch.randint(0, ref.model.config.vocab_size, (2, 12))
    assert torch.equal(r.model(x)["logits"], ref.model(x)["logits"])
    assert r.model.lm_head.weight is r.model.tok_emb.weight  # tie survives
    assert not r.model.training
    assert r.tokenizer.encode("def f():") == ref.tokenizer.encode("def f():")
    # it does not need the run: move the run away and restore again from a copy
    copy = tmp_path / "copy.stoker"
    copy.write_bytes(archive.read_bytes())
    assert restore(copy).complete("def ", max_new_tokens=8, temperature=0) == \
        ref.complete("def ", max_new_tokens=8, temperature=0)


def test_archive_members_manifest_and_lineage(archive: Path, gpt_run: Path,
                                              char_data: Path) -> None:
    from safetensors.torch import load

    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[-1] == "MANIFEST.json"
    assert {"config.json", "weights.safetensors", "lineage.json",
            "tokenizer/tokenizer.json"} <= set(names)
    with ArchiveReader(archive) as rd:
        assert set(rd.manifest["members"]) == set(names) - {"MANIFEST.json"}
        assert all(len(m["sha256"]) == 64 for m in rd.manifest["members"].values())
        lineage = rd.read_json("lineage.json")
        weights = load(rd.read("weights.safetensors"))  # plain safetensors
        config = rd.read_json("config.json")
    assert lineage["source"]["step"] == 10
    assert lineage["data"]["path"] == str(char_data)
    assert lineage["recipe"]["model"]["architecture"] == "gpt"
    assert config["tied"] == {"lm_head.weight": "tok_emb.weight"}
    assert "lm_head.weight" not in weights and "tok_emb.weight" in weights
    assert config["model"]["vocab_size"] == weights["tok_emb.weight"].shape[0]


def test_config_file_references_are_packed_and_rewritten(tmp_path: Path, monkeypatch) -> None:
    """A path in the config travels inside the archive; restore points at a verified copy."""
    from stoker.models import GPTConfig, build_model
    from stoker.package import load_weights, write_archive

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\n")
    torch.manual_seed(0)
    model = build_model(GPTConfig(vocab_size=8, n_layers=1, dim=16, n_heads=2, max_seq_len=8))
    cwd = Path.cwd()
    out = write_archive(tmp_path / "m.stoker", model_config=model.config.model_dump(mode="json"),
                        state_dict=model.state_dict(), tokenizer=None, lineage={},
                        eval_section={"metrics": {"m": {"_target_": "stoker.train.metrics.Accuracy",
                                                        "vocab_file": str(vocab)}}})
    vocab.unlink()
    c = load_weights(out)
    ref = c.config["eval"]["metrics"]["m"]["vocab_file"]
    assert Path(ref).read_text() == "a\nb\n" and Path(ref).name == "vocab.txt"
    assert Path.cwd() == cwd


def test_targets_are_checked_as_strings_before_any_import(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "evil_mod.py").write_text("import pathlib\npathlib.Path(__file__).with_name("
                                          "'IMPORTED').write_text('x')\nclass Loss: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tree = {"eval": {"losses": {"ce": {"_target_": "evil_mod.Loss"}}},
            "ok": {"_target_": "stoker.train.losses.CrossEntropy"}}
    with pytest.raises(ArchiveError, match=r"eval\.losses\.ce\._target_ = evil_mod\.Loss"):
        check_targets(tree)
    assert not (tmp_path / "IMPORTED").exists()
    check_targets(tree, ["evil_mod"])  # trusted: allowed
    with pytest.raises(ArchiveError):
        check_targets({"_target_": "stokerx.Y"})  # a prefix is not a package


# ------------------------------------------------------------------ malicious archives
def _rewrite(src: Path, dst: Path, *, extra: list[tarfile.TarInfo | tuple] = (),
             change: dict[str, bytes] | None = None, fix_manifest: bool = False) -> Path:
    """Copy an archive, changing members, adding crafted ones, optionally re-signing."""
    change = dict(change or {})
    with tarfile.open(src) as tin:
        members = [(m, tin.extractfile(m).read()) for m in tin.getmembers()]
    if fix_manifest:
        import hashlib

        man = json.loads(dict((m.name, d) for m, d in members)["MANIFEST.json"])
        for name, data in change.items():
            man["members"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for item in extra:
            if isinstance(item, tuple):
                man["members"][item[0].name] = {"size": len(item[1]),
                                                "sha256": hashlib.sha256(item[1]).hexdigest()}
        change["MANIFEST.json"] = json.dumps(man).encode()
    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for m, data in members:
            data = change.get(m.name, data)
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
        for item in extra:
            if isinstance(item, tuple):
                info, data = item
                info.size = len(data)
                tout.addfile(info, io.BytesIO(data))
            else:
                tout.addfile(item)
    return dst


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _bad_archives(archive: Path, root: Path) -> dict[str, tuple[Path, str]]:
    with ArchiveReader(archive) as rd:
        config = rd.read_json("config.json")
        weights = rd.read("weights.safetensors")
    flipped = bytearray(weights)
    flipped[-1] ^= 1
    evil_cfg = json.loads(json.dumps(config))
    evil_cfg["eval"]["losses"]["ce"]["_target_"] = "os.system"
    dev = tarfile.TarInfo("tokenizer/null")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
    pickle_cfg = dict(config, weights="weights.pt")
    import pickle

    return {
        "tampered": (_rewrite(archive, root / "t.stoker",
                              change={"weights.safetensors": bytes(flipped)}),
                     "does not match its SHA-256"),
        "traversal": (_rewrite(archive, root / "p.stoker",
                               extra=[(tarfile.TarInfo("../../evil.txt"), b"x")],
                               fix_manifest=True), "outside the archive"),
        "absolute": (_rewrite(archive, root / "a.stoker",
                              extra=[(tarfile.TarInfo("/tmp/evil.txt"), b"x")],
                              fix_manifest=True), "absolute"),
        "symlink": (_rewrite(archive, root / "s.stoker",
                             extra=[_link("tokenizer/link", "/etc/passwd", tarfile.SYMTYPE)]),
                    "symbolic link"),
        "hardlink": (_rewrite(archive, root / "h.stoker",
                              extra=[_link("tokenizer/hl", "config.json", tarfile.LNKTYPE)]),
                     "hard link"),
        "device": (_rewrite(archive, root / "d.stoker", extra=[dev]), "device"),
        "pickle": (_rewrite(archive, root / "k.stoker",
                            extra=[(tarfile.TarInfo("weights.pt"), pickle.dumps({"a": 1}))],
                            change={"config.json": json.dumps(pickle_cfg).encode()},
                            fix_manifest=True), "pickle"),
        "target": (_rewrite(archive, root / "e.stoker",
                            change={"config.json": json.dumps(evil_cfg).encode()},
                            fix_manifest=True), "os.system"),
    }


@pytest.mark.integration
def test_malicious_archives_are_refused_by_every_command(stoker_cmd, archive: Path,
                                                         tmp_path: Path) -> None:
    cases = _bad_archives(archive, tmp_path)
    for name, (path, expect) in cases.items():
        commands = [["generate", "text", "--checkpoint", str(path), "-n", "3"]]
        if name in ("tampered", "symlink", "target"):
            commands.append(["export", "hf", "--checkpoint", str(path), "--output",
                             str(tmp_path / f"hf-{name}")])
        for args in commands:
            r = run_cli(stoker_cmd, *args, cwd=tmp_path)
            assert r.returncode == 2, (name, r.stdout, r.stderr)
            assert expect in r.stderr, (name, r.stderr)
            assert "Traceback" not in r.stderr and r.stdout == ""
        assert not (tmp_path / f"hf-{name}").exists()
    assert not list(tmp_path.parent.glob("evil.txt")) and not Path("/tmp/evil.txt").exists()
    # os is never callable from an archive, --trust or not (issue 19)
    r = run_cli(stoker_cmd, "eval", str(cases["target"][0]), "--trust", "os", "--batches", "1")
    assert r.returncode == 2 and "--trust cannot allow it" in r.stderr, r.stderr


def test_restore_refuses_truncation_and_foreign_files(archive: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.stoker"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ArchiveError):
        restore(cut)
    other = tmp_path / "x.tar"
    with tarfile.open(other, "w") as t:
        t.addfile(tarfile.TarInfo("readme.txt"), io.BytesIO(b""))
    with pytest.raises(ArchiveError, match="no MANIFEST.json"):
        restore(other)


@pytest.mark.integration
def test_pack_cli_publish_and_every_reference_kind_generates(stoker_cmd, gpt_run: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "m.stoker"
    r = run_cli(stoker_cmd, "pack", "--checkpoint", str(gpt_run), "--output", str(out),
                "--publish", "tiny-gpt", check=True)
    assert out.is_file() and "published art://tiny-gpt:v1" in r.stdout
    step = gpt_run / "checkpoints" / "step-00000005"
    texts = []
    for ref in (str(out), str(gpt_run), str(step), "art://tiny-gpt:v1"):
        g = run_cli(stoker_cmd, "generate", "text", "--checkpoint", ref, "-p", "def ", "-n",
                    "10", "-t", "0", check=True)
        texts.append(g.stdout)
    assert texts[0] == texts[1] == texts[3] and texts[0].startswith("def ")
    again = run_cli(stoker_cmd, "pack", "--checkpoint", str(gpt_run), "--output", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    ev = run_cli(stoker_cmd, "eval", str(out), "--batches", "2", check=True)
    ev_run = run_cli(stoker_cmd, "eval", str(gpt_run), "--batches", "2", check=True)
    assert ev.stdout.splitlines()[1:] == ev_run.stdout.splitlines()[1:]
    lin = run_cli(stoker_cmd, "artifacts", "lineage", "art://tiny-gpt:v1", check=True)
    assert "tiny-gpt" in lin.stdout


@pytest.mark.integration
def test_bad_checkpoint_paths_list_what_was_found(stoker_cmd, gpt_run: Path,
                                                  tmp_path: Path) -> None:
    r = run_cli(stoker_cmd, "pack", "--checkpoint", str(tmp_path / "nope"), "--output",
                str(tmp_path / "o.stoker"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    bad = tmp_path / "run"
    (bad / "checkpoints" / "step-00000007").mkdir(parents=True)
    (bad / "checkpoints" / "notes").mkdir()
    (bad / "checkpoints" / "step-00000009").mkdir()
    (bad / "checkpoints" / "step-00000009" / "COMMITTED").write_text("{garbage")
    for args in (["pack", "--checkpoint", str(bad), "--output", str(tmp_path / "o.stoker")],
                 ["generate", "text", "--checkpoint", str(bad)],
                 ["eval", str(bad)]):
        r = run_cli(stoker_cmd, *args)
        assert r.returncode == 2, r.stderr
        assert "step-00000007/: no COMMITTED marker" in r.stderr
        assert "step-00000009/: its COMMITTED marker is unreadable" in r.stderr
        assert "notes/: not a step-NNNNNNNN" in r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.stoker").exists()
    assert not list(tmp_path.glob(".o.stoker.*"))
