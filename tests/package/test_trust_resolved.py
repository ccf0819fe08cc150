"""Archives and registry configs run no code (issue 19, item 1): every route that builds a
config from elsewhere judges each ``_target_`` on what it resolves to, before anything is
built or called, and pickles are refused by content.

Each malicious archive is a real packed one whose ``config.json`` (and a ``files/`` member)
was rewritten with the manifest re-hashed, so only the trust rule stands between it and the
call: the marker file ``PWNED`` its command would create must never appear.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from train_helpers import run_cli, tiny_overrides

from stoker.errors import ArchiveError, ConfigError
from stoker.package import pack, restore
from stoker.package.archive import ArchiveReader

# Three spellings of os.system that a name-prefix rule lets through (issue 19).
VIA_LAUNCH = "stoker.launch.executors.process.os.system"
VIA_TORCH = "torch.serialization.os.system"
VIA_COLON = "stoker.launch.executors.process:os.system"


class _Touch:
    """Unpickling this runs ``touch MARKER``: what a pickle from an attacker would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def archive(gpt_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack(str(gpt_run), tmp_path_factory.mktemp("trust-arch") / "model.stoker")


def _config(archive: Path) -> dict:
    with ArchiveReader(archive) as rd:
        return rd.read_json("config.json")


def _rewritten(src: Path, dst: Path, config: dict, extra: dict[str, bytes] | None = None,
               change: dict[str, bytes] | None = None) -> Path:
    """A copy of ``src`` with ``config.json`` replaced, members changed or added, and the
    manifest re-hashed to match (so every SHA-256 check passes)."""
    change = {"config.json": json.dumps(config).encode(), **(change or {})}
    extra = dict(extra or {})
    with tarfile.open(src) as tin:
        members = [(m, tin.extractfile(m).read()) for m in tin.getmembers()]
    man = json.loads(dict((m.name, d) for m, d in members)["MANIFEST.json"])
    for name, data in {**change, **extra}.items():
        man["members"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    change["MANIFEST.json"] = json.dumps(man).encode()
    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for m, data in members:
            if m.name == "MANIFEST.json":
                continue
            data = change.get(m.name, data)
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
        for name, data in extra.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
        manifest = [m for m, _ in members if m.name == "MANIFEST.json"][0]
        manifest.size = len(change["MANIFEST.json"])
        tout.addfile(manifest, io.BytesIO(change["MANIFEST.json"]))  # last, as pack writes it
    return dst


def _evil(archive: Path, dst: Path, where: str, target: str, marker: Path) -> Path:
    """``archive`` with the node at ``where`` (model, or eval.losses.ce) calling ``target``."""
    cfg = _config(archive)
    node = {"_target_": target, "command": f"touch {marker}"}
    if where == "model":
        cfg["model"] = node
    else:
        cfg["eval"]["losses"]["ce"] = node
    return _rewritten(archive, dst, cfg)


def _refused(r, marker: Path, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == "", r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)
    assert not marker.exists(), "the refused target ran"


# ------------------------------------------------------------------------ the real CLI
@pytest.mark.integration
@pytest.mark.parametrize(("command", "where", "target"), [
    ("generate", "model", VIA_LAUNCH),
    ("eval", "eval.losses.ce", VIA_TORCH),
    ("eval", "eval.losses.ce", VIA_COLON),
    ("generate", "model", VIA_COLON),
])
def test_cli_refuses_os_system_however_it_is_spelled(stoker_cmd, archive: Path, tmp_path: Path,
                                                     command: str, where: str,
                                                     target: str) -> None:
    marker = tmp_path / "PWNED"
    evil = _evil(archive, tmp_path / "evil.stoker", where, target, marker)
    args = (["generate", "text", "-c", str(evil), "-p", "def ", "-n", "2"]
            if command == "generate" else ["eval", str(evil), "--batches", "1"])
    r = run_cli(stoker_cmd, *args, cwd=tmp_path)
    _refused(r, marker, f"{where}._target_ = {target}", "posix.system", "--trust cannot allow it")
    # trusting the parents of the path changes nothing: os is never callable
    r = run_cli(stoker_cmd, *args, "--trust", "stoker", "--trust", "torch", "--trust", "os",
                cwd=tmp_path)
    _refused(r, marker, "posix.system")


@pytest.mark.integration
def test_torch_load_of_a_pickle_member_is_unreachable(stoker_cmd, archive: Path,
                                                      tmp_path: Path) -> None:
    """The second route: ``torch.load(archive:files/data.txt, weights_only=False)`` with a
    pickle stored under a harmless name. torch.load is never callable from an archive, and
    the member is refused by its content anyway."""
    marker = tmp_path / "PWNED"
    cfg = _config(archive)
    cfg["eval"]["losses"]["ce"] = {"_target_": "torch.load", "f": "archive:files/data.txt",
                                   "weights_only": False}
    payload = pickle.dumps(_Touch(marker), protocol=2)
    evil = _rewritten(archive, tmp_path / "load.stoker", cfg, extra={"files/data.txt": payload})
    r = run_cli(stoker_cmd, "eval", str(evil), "--batches", "1", cwd=tmp_path)
    _refused(r, marker, "eval.losses.ce._target_ = torch.load", "torch.serialization")
    with pytest.raises(ArchiveError, match="torch.serialization"):
        restore(evil)
    assert not marker.exists()


@pytest.mark.integration
def test_a_resolver_cannot_make_a_target_after_the_check(stoker_cmd, archive: Path,
                                                        tmp_path: Path) -> None:
    """``${oc.decode:...}`` would turn a string into a ``_target_`` node only when the eval
    section is built, after the tree was judged: such resolvers are refused up front."""
    marker = tmp_path / "PWNED"
    cfg = _config(archive)
    cfg["eval"]["losses"]["ce"]["logits"] = ("${oc.decode:'{_target_: os.system, command: "
                                             f"touch {marker}}}'}}")
    evil = _rewritten(archive, tmp_path / "decode.stoker", cfg)
    r = run_cli(stoker_cmd, "eval", str(evil), "--batches", "1", cwd=tmp_path)
    _refused(r, marker, "eval.losses.ce.logits = ${oc.decode:", "resolver 'oc.decode'")


@pytest.mark.integration
def test_art_uris_of_archives_and_checkpoints_are_judged_the_same(
        stoker_cmd, archive: Path, gpt_run: Path, tmp_path: Path) -> None:
    """``stoker eval art://...`` of a published archive and of a published training
    checkpoint (its config rewritten, the step's checksums re-made), and ``stoker pack`` of
    that checkpoint, refuse os.system with the config path and the resolved module; the
    untampered checkpoint evaluates."""
    from stoker.artifacts.types import ModelArtifact
    from stoker.package.publish import publish_archive
    from stoker.train.checkpoint.checksums import file_record

    marker = tmp_path / "PWNED"
    reg = tmp_path / "registry"
    env = dict(os.environ, STOKER_REGISTRY=str(reg), STOKER_HOME=str(tmp_path / "home"))
    evil = _evil(archive, tmp_path / "evil.stoker", "eval.losses.ce", VIA_LAUNCH, marker)
    publish_archive(evil, "evil-archive", registry=str(reg))
    for args in (["eval", "art://evil-archive:latest", "--batches", "1"],
                 ["generate", "text", "-c", "art://evil-archive:latest", "-n", "2"]):
        _refused(run_cli(stoker_cmd, *args, env=env, cwd=tmp_path), marker,
                 f"eval.losses.ce._target_ = {VIA_LAUNCH}", "posix.system")

    step = sorted((gpt_run / "checkpoints").glob("step-*"))[-1]
    for name, tamper in (("good-ckpt", False), ("evil-ckpt", True)):
        stage = tmp_path / name
        shutil.copytree(step, stage / "checkpoint")
        if tamper:
            ckpt = stage / "checkpoint"
            state = json.loads((ckpt / "state.json").read_text())
            state["config"]["losses"]["ce"] = {"_target_": VIA_TORCH,
                                               "command": f"touch {marker}"}
            (ckpt / "state.json").write_text(json.dumps(state))
            rec = json.loads((ckpt / "COMMITTED").read_text())
            rec["files"]["state.json"] = file_record(ckpt / "state.json", rec["checksum"])
            (ckpt / "COMMITTED").write_text(json.dumps(rec))
        ModelArtifact(path=stage, step=10).save(name, registry=str(reg))
    for args in (["eval", "art://evil-ckpt:latest", "--batches", "1"],
                 ["pack", "-c", "art://evil-ckpt:latest", "-o", str(tmp_path / "p.stoker")]):
        _refused(run_cli(stoker_cmd, *args, env=env, cwd=tmp_path),
                 marker, f"losses.ce._target_ = {VIA_TORCH}", "posix.system")
    assert not (tmp_path / "p.stoker").exists()
    ok = run_cli(stoker_cmd, "eval", "art://good-ckpt:latest", "--batches", "1", env=env,
                 cwd=tmp_path, check=True)  # built-in recipe: optim, callbacks, losses allowed
    assert "eval/loss" in ok.stdout


@pytest.mark.integration
def test_init_from_an_evil_archive_takes_its_weights_and_builds_nothing(
        stoker_cmd, archive: Path, char_data: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = _evil(archive, tmp_path / "evil.stoker", "eval.losses.ce", VIA_LAUNCH, marker)
    r = run_cli(stoker_cmd, "train", "gpt-char-finetune", *tiny_overrides(char_data,
                tmp_path / "ft"), "model.dropout=0.0", "trainer.max_steps=1",
                f"init_from={evil}", "--yes", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()


# ------------------------------------------------------------------------- Python API
def test_restore_judges_the_resolved_target_before_building(archive: Path,
                                                            tmp_path: Path) -> None:
    """``stoker.restore`` reports every refused target at once, each with its config path
    and the module it really comes from; nothing was called."""
    import stoker

    marker = tmp_path / "PWNED"
    cfg = _config(archive)
    cfg["model"] = {"_target_": VIA_COLON, "command": f"touch {marker}"}
    cfg["eval"]["losses"]["ce"] = {"_target_": "stoker.launch.executors.local.LocalExecutor"}
    cfg["eval"]["metrics"]["ok"] = {"_target_": "stoker.train.metrics.Accuracy"}
    evil = _rewritten(archive, tmp_path / "two.stoker", cfg)
    with pytest.raises(ArchiveError) as err:
        stoker.restore(evil)
    text = str(err.value)
    assert f"model._target_ = {VIA_COLON}" in text and "posix.system" in text, text
    assert "eval.losses.ce._target_" in text and "stoker.launch.executors.local" in text, text
    assert "metrics.ok" not in text
    assert not marker.exists()
    # a module that is merely not on the allowlist says how to trust it
    cfg = _config(archive)
    cfg["eval"]["metrics"]["m"] = {"_target_": "stoker.data.datasets.TokenWindowDataset"}
    with pytest.raises(ArchiveError, match="pass --trust stoker.data.datasets"):
        restore(_rewritten(archive, tmp_path / "ds.stoker", cfg))


def test_build_with_trust_refuses_what_an_archive_config_resolves_to(archive: Path,
                                                                     tmp_path: Path) -> None:
    import stoker.config

    marker = tmp_path / "PWNED"
    cfg = _config(archive)
    cfg["eval"]["losses"]["ce"] = {"_target_": VIA_TORCH, "command": f"touch {marker}"}
    with pytest.raises(ConfigError, match=r"losses\.ce\._target_: .*posix\.system"):
        stoker.config.build(cfg["eval"], trust=[])
    assert not marker.exists()
    # the untouched archive's eval section builds under the same rule
    built = stoker.config.build(_config(archive)["eval"]["losses"], trust=[])
    assert type(built["ce"]).__name__ == "CrossEntropy"


@pytest.mark.parametrize("kind", ["protocol-2", "protocol-5", "torch-zip"])
@pytest.mark.parametrize("member", ["files/0/vocab.txt", "tokenizer/tokenizer.json"])
def test_pickled_members_are_refused_by_content(archive: Path, tmp_path: Path, kind: str,
                                                member: str) -> None:
    """A member restore hands on (a ``files/`` reference, the tokenizer) that holds a pickle
    is refused whatever its name; nothing is unpickled."""
    marker = tmp_path / "PWNED"
    if kind == "torch-zip":
        buf = io.BytesIO()
        torch.save(_Touch(marker), buf)
        payload = buf.getvalue()
    else:
        payload = pickle.dumps(_Touch(marker), protocol=int(kind[-1]))
    cfg = _config(archive)
    if member.startswith("files/"):
        cfg["eval"]["metrics"]["perplexity"]["vocab"] = f"archive:{member}"
        evil = _rewritten(archive, tmp_path / "p.stoker", cfg, extra={member: payload})
    else:
        evil = _rewritten(archive, tmp_path / "p.stoker", cfg, change={member: payload})
    with pytest.raises(ArchiveError, match=f"{member}.*pickle"):
        restore(evil)
    assert not marker.exists()


def test_a_normal_archive_still_restores_and_generates(archive: Path) -> None:
    """Everything a packed gpt-char archive names (GPT config, CrossEntropy, Perplexity) is
    on the allowlist: it restores and generates with no --trust."""
    r = restore(archive)
    assert type(r.model).__name__ == "GPT"
    text = r.complete("def ", max_new_tokens=4, temperature=0)
    assert isinstance(text, str) and len(r.tokenizer.encode(text)) == 4
