"""``stoker.restore``: a model and its tokenizer back from a ``.stoker`` archive.

Order matters for safety: the container is checked (member kinds, names, manifest sizes),
then the config is read and every ``_target_`` in it judged by the trust rule (on what it
resolves to: the allowlist plus ``trust``), and only then is anything validated or built.
Each member's SHA-256 is checked before its bytes are used. Weights are read with
safetensors; nothing is unpickled, and a member handed on (``files/``, the tokenizer) that
holds a pickle is refused by its content, whatever its name. Files the config refers to
(``archive:files/...``) are written to a private cache directory named by the archive's
manifest digest and the config points there; the working directory is never changed.

:func:`load_weights` is the reusable half (weights + config, no model object decisions),
so fine-tuning from an archive can load a state dict into its own model.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stoker.errors import ArchiveError, ConfigError
from stoker.package.archive import ArchiveReader
from stoker.package.packing import ARCHIVE_REF
from stoker.package.pickles import pickle_format
from stoker.package.trust import check_targets

__all__ = ["ArchiveContents", "Restored", "archive_state_dict", "load_weights", "restore"]


@dataclass
class Restored:
    """A ready-to-use model: ``model`` (eval mode), ``tokenizer`` (or None), and where it came
    from. ``config`` is the archive's config (``model`` section and, when packed from a run,
    the ``eval`` section); ``lineage`` the packing record."""

    model: Any
    tokenizer: Any | None
    config: dict[str, Any]
    lineage: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def complete(self, prompts: list[str] | str, **options: Any) -> Any:
        """Text for one prompt (a str) or each of several (see :func:`stoker.infer.complete`)."""
        from stoker.infer.text import complete

        single = isinstance(prompts, str)
        out = complete(self.model, self.require_tokenizer(), [prompts] if single else prompts, **options)
        return out[0].text if single and options.get("num_samples", 1) == 1 else out

    def require_tokenizer(self) -> Any:
        """The tokenizer, or a UserError saying text generation needs one."""
        if self.tokenizer is None:
            from stoker.errors import UserError

            raise UserError(f"{self.source} has no tokenizer; text generation needs a "
                            "language model packed with its tokenizer")
        return self.tokenizer


@dataclass
class ArchiveContents:
    """What :func:`load_weights` reads: the checked config, state dict and tokenizer."""

    config: dict[str, Any]
    state_dict: dict[str, Any]
    tokenizer: Any | None
    lineage: dict[str, Any]
    digest: str


def _cache_root() -> Path:
    home = os.environ.get("STOKER_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "stoker"
    return base / "archives"


def _localize(tree: Any, reader: ArchiveReader, digest: str) -> Any:
    """Replace ``archive:files/...`` references by paths of verified extracted copies."""
    if isinstance(tree, dict):
        return {k: _localize(v, reader, digest) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_localize(v, reader, digest) for v in tree]
    if isinstance(tree, str) and tree.startswith(ARCHIVE_REF):
        name = tree[len(ARCHIVE_REF):]
        data = reader.view(name)  # verified; raises when absent
        _refuse_pickle(reader, name, data)
        target = _cache_root() / digest / name
        if not (target.is_file() and target.stat().st_size == len(data)):
            from stoker.atomic import atomic_write_bytes

            atomic_write_bytes(target, data, fsync=False)
        return str(target)
    return tree


def _refuse_pickle(reader: ArchiveReader, name: str, data: Any) -> None:
    """An ArchiveError when a member restore hands on holds a pickle, whatever its name."""
    found = pickle_format(data)
    if found is not None:
        raise ArchiveError(f"{reader.path}: member {name!r} is {found}; stoker archives hold "
                           "no pickles (loading one can run code), so refusing this archive")


def _tokenizer(reader: ArchiveReader, prefix: str | None, path: Any) -> Any | None:
    """The tokenizer under ``prefix/``; a bad one is an ArchiveError naming the member."""
    if not prefix:
        return None
    from stoker.data.tokenizers import load_tokenizer
    from stoker.errors import DataError

    if not isinstance(prefix, str) or not reader.names(prefix + "/"):
        raise ArchiveError(f"{path}: config.json names tokenizer {prefix!r}, but the archive "
                           "has no members under it")
    for name in reader.names(prefix.rstrip("/") + "/"):
        _refuse_pickle(reader, name, reader.view(name))
    with tempfile.TemporaryDirectory(prefix="stoker-restore-") as tmp:
        reader.extract(prefix, tmp)
        try:
            return load_tokenizer(tmp)
        except DataError as e:  # said of the members, not of the private temp copy
            said = str(e).replace(str(Path(tmp).resolve()), prefix).replace(tmp, prefix)
            raise ArchiveError(f"{path}: its tokenizer is unusable: {said}") from None


def _read_weights(reader: ArchiveReader, config: dict[str, Any], path: Any) -> dict[str, Any]:
    """The archive's state dict (safetensors only; tied names filled), verified first."""
    from stoker.train.checkpoint.tensors import DamagedFile, parse_safetensors

    wname = str(config.get("weights") or "")
    if not wname.endswith(".safetensors"):
        raise ArchiveError(f"{path}: weights member {wname!r} is not a .safetensors file; "
                           "stoker archives hold weights as safetensors only")
    # tensors made in place over the verified member's (copy-on-write) mapping: no copy
    try:
        state = parse_safetensors(Path(str(path)), wname, reader.view(wname))
    except DamagedFile as e:
        raise ArchiveError(f"{path}: {wname} is not valid safetensors ({e})") from None
    for alias, target in (config.get("tied") or {}).items():
        if target in state:
            state[alias] = state[target]
    return state


# config.json's top-level keys and the JSON types each may hold (None: absent or null)
_CONFIG_SHAPE: dict[str, tuple[type, ...]] = {
    "weights": (str,), "tied": (dict, type(None)), "tokenizer": (str, type(None)),
    "imports": (list, type(None)), "eval": (dict, type(None)), "format": (str, type(None)),
}


def _config_shape(config: Any, path: Any) -> dict[str, Any]:
    """config.json as a JSON object of the shape pack writes, or an ArchiveError naming the
    key, before any of it is used."""
    if not isinstance(config, dict):
        raise ArchiveError(f"{path}: config.json is not a JSON object")
    for key, types in _CONFIG_SHAPE.items():
        if key in config and not isinstance(config[key], types):
            raise ArchiveError(f"{path}: config.json's {key!r} is "
                               f"{type(config[key]).__name__} {config[key]!r}, expected "
                               f"{' or '.join(t.__name__ for t in types)}")
    tied = config.get("tied") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tied.items()):
        raise ArchiveError(f"{path}: config.json's 'tied' must map tensor names to tensor "
                           f"names, got {tied!r}")
    if not all(isinstance(m, str) for m in config.get("imports") or []):
        raise ArchiveError(f"{path}: config.json's 'imports' must be module names")
    return config


def _checked_config(reader: ArchiveReader, trust: Any, path: Any) -> dict[str, Any]:
    config = _config_shape(reader.read_json("config.json"), path)
    if not isinstance(config.get("model"), dict):
        raise ArchiveError(f"{path}: config.json has no model section")
    check_targets(config, trust, source=f"archive {path}")
    return config


def archive_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Only the weights of an archive: (state dict, its config as data, manifest SHA-256).

    For fine-tuning (``init_from``): the config is read as JSON and never built or checked
    against a trust list, no file is extracted, the tokenizer is not loaded.
    """
    with ArchiveReader(path) as reader:
        config = _config_shape(reader.read_json("config.json"), path)
        return _read_weights(reader, config, path), config, reader.manifest_sha256


def load_weights(path: str | os.PathLike[str], *, trust: tuple[str, ...] | list[str] = ()
                 ) -> ArchiveContents:
    """Check an archive and read its config, weights (tied names filled) and tokenizer."""
    with ArchiveReader(path) as reader:
        config = _checked_config(reader, trust, path)
        digest = reader.manifest_sha256[:16]
        config = _localize(config, reader, digest)
        state = _read_weights(reader, config, path)
        tok = _tokenizer(reader, config.get("tokenizer"), path)
        lineage = reader.read_json("lineage.json") if "lineage.json" in reader.entries else {}
    return ArchiveContents(config, state, tok, lineage if isinstance(lineage, dict) else {},
                           digest)


def restore(path: str | os.PathLike[str], *, trust: tuple[str, ...] | list[str] = (),
            device: str = "cpu", imports: tuple[str, ...] | list[str] = ()) -> Restored:
    """Model (eval mode, on ``device``) and tokenizer from a ``.stoker`` archive.

    An archive of your own model names the modules that define it (``imports``); they are
    imported only after the trust check passed (``--trust``), with ``imports`` as extra
    modules of your own (``--import``)."""
    import torch

    from stoker.config.plugins import load_user_code
    from stoker.models import build_model, parse_model_config

    contents = load_weights(path, trust=trust)
    load_user_code(contents.config.get("imports") or None, extra=tuple(imports))
    try:
        model_cfg = parse_model_config(contents.config["model"])
    except ConfigError as e:
        raise ArchiveError(f"{path}: its model config is invalid:\n{e}") from None
    with torch.device("meta"), _skip_init():
        model = build_model(model_cfg)
    _load_into(model, contents.state_dict, contents.config.get("tied") or {}, str(path))
    model.to(torch.device(device)).eval()
    return Restored(model, contents.tokenizer, contents.config, contents.lineage, str(path))


_INIT_OPS = frozenset({"normal_", "uniform_", "fill_", "zero_", "trunc_normal_", "orthogonal_",
                       "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                       "xavier_normal_", "constant_", "ones_", "zeros_", "copy_",
                       "exponential_", "bernoulli_", "random_"})


def _skip_init() -> Any:
    """A torch function mode in which in-place initialisation of a meta tensor does nothing.

    The restored model adopts the archive's tensors, so its random init is thrown away; on
    the meta device it costs no memory, but each ``normal_``/``uniform_`` still runs
    torch's Python decompositions (about 2 s of imports on the first restore of a process).
    """
    import torch
    from torch.overrides import TorchFunctionMode

    class SkipInit(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if getattr(func, "__name__", "") in _INIT_OPS:
                # a method gets the tensor first; torch.nn.init passes it as `tensor=`
                t = args[0] if args else kwargs.get("tensor")
                if isinstance(t, torch.Tensor) and t.is_meta:
                    return t
            return func(*args, **kwargs)

    return SkipInit()


def _load_into(model: Any, state: dict[str, Any], tied: dict[str, str], where: str) -> None:
    """Strict load onto a model built on the meta device; ties and derived buffers restored.

    ``assign=True`` adopts the archive's tensors without a copy (and without paying for a
    random init first); a tied pair then is two Parameters, so the alias is re-pointed at
    its target's Parameter, as the model's constructor did.
    """
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    bad_shape = [f"{k}: archive {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in model.state_dict().items()
                 if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or bad_shape:
        raise ArchiveError(
            f"{where}: the weights do not fit the model its config describes "
            f"(missing: {missing[:10]}; unexpected: {unexpected[:10]}; shapes: {bad_shape[:10]})"
        )
    model.load_state_dict(state, assign=True)
    for alias, target in tied.items():
        owner, _, leaf = alias.rpartition(".")
        setattr(model.get_submodule(owner) if owner else model, leaf,
                model.get_parameter(target))
    rebuild = getattr(model, "rebuild_buffers", None)
    if callable(rebuild):
        rebuild()
    meta = [n for n, b in model.named_buffers() if b.is_meta]
    meta += [n for n, p in model.named_parameters() if p.is_meta]
    if meta:
        raise ArchiveError(f"{where}: {meta[:5]} could not be restored from the archive")
