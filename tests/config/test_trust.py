"""Configs from elsewhere import nothing outside stoker, torch and a trust list (item 8 of
issue 14), and build only what the trust rule allows on the *resolved* object (issue 19).
The import checks run in a fresh interpreter so that importing `this` (which prints the Zen
of Python) is observable; the call checks watch for a marker file a refused call would
create."""
from __future__ import annotations

import subprocess
import sys

import pytest

ZEN = "Beautiful is better than ugly"
CFG = ("{'x': {'_target_': 'this.x'}, "
       "'lin': {'_target_': 'torch.nn.Linear', 'in_features': 2, 'out_features': 3}}")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("call", ["validate", "build"])
def test_untrusted_config_imports_nothing_outside_the_trust_list(call: str) -> None:
    proc = _run(
        "import sys, stoker.config as c\n"
        "from stoker.errors import ConfigError\n"
        "try:\n"
        f"    c.{call}({CFG}, trust=['math'])\n"
        "except ConfigError as e:\n"
        "    print('ERR', e)\n"
        "print('imported this:', 'this' in sys.modules)\n")
    assert proc.returncode == 0, proc.stderr
    assert ZEN not in proc.stdout
    assert "imported this: False" in proc.stdout
    assert ("x._target_: refusing to import 'this' from an untrusted config; pass --trust "
            "this to allow it") in proc.stdout


@pytest.mark.parametrize("trust", ["trust=['this']", "trust=None"])
def test_trusted_module_is_imported(trust: str) -> None:
    """Trusted, or the user's own config (trust=None, the default): `this` is imported
    (and then has no attribute x)."""
    proc = _run("import stoker.config as c\n"
                "from stoker.errors import ConfigError\n"
                "try:\n"
                f"    c.validate({CFG}, {trust})\n"
                "except ConfigError as e:\n"
                "    print('ERR', e)\n")
    assert ZEN in proc.stdout, proc.stdout + proc.stderr
    assert "'this' has no attribute 'x'" in proc.stdout and "refusing" not in proc.stdout


def test_trust_prefixes_match_whole_module_names() -> None:
    from stoker.config.targets import untrusted_module

    assert untrusted_module("torch.nn.Linear", []) is None
    assert untrusted_module("stoker.train.losses:CrossEntropy", []) is None
    assert untrusted_module("torchevil.x", []) == "torchevil"
    assert untrusted_module("mypkg.sub.Cls", ["mypkg"]) is None
    assert untrusted_module("mypkg.sub.Cls", ["mypkg.other"]) == "mypkg"
    assert untrusted_module("mypkg.sub:Cls", ["mypkg.sub"]) is None


# ------------------------------------------ issue 19: trust is decided on what would be called
# Spellings that pass a name-prefix rule (they start with stoker. or torch.) but reach
# os.system through a module that imported os; and torch.load, which unpickles.
OS_SYSTEM = ["stoker.launch.executors.process.os.system", "torch.serialization.os.system",
             "stoker.launch.executors.process:os.system", "stoker.models.gpt.torch.load",
             "torch.nn.functional.importlib.import_module"]


@pytest.mark.parametrize("target", OS_SYSTEM)
@pytest.mark.parametrize("how", ["build", "build-unvalidated", "validate"])
def test_untrusted_config_never_calls_what_its_target_resolves_to(target: str, how: str,
                                                                  tmp_path) -> None:
    """`build(cfg, trust=[])` resolves each target and judges the real object: os.system
    reached through stoker or torch is refused, with its config path and its real module,
    and never called (the marker file never appears)."""
    import stoker.config as c
    from stoker.errors import ConfigError

    marker = tmp_path / "PWNED"
    cfg = {"model": {"_target_": target, "command": f"touch {marker}"}}
    with pytest.raises(ConfigError) as err:
        if how == "validate":
            c.validate(cfg, trust=[])
        else:
            c.build(cfg, trust=[], validate=how == "build")
    text = str(err.value)
    assert "model._target_" in text and "--trust cannot allow it" in text, text
    real = {"torch.load": "torch.serialization", "import_module": "importlib"}
    assert next((m for k, m in real.items() if target.endswith(k)), "posix") in text, text
    assert not marker.exists()


def test_trusting_a_parent_does_not_open_the_never_list(tmp_path) -> None:
    """`--trust stoker --trust torch --trust os` still cannot make os.system, torch.load or
    stoker's own builder callable; every refusal is reported at once."""
    import stoker.config as c
    from stoker.errors import ConfigError

    marker = tmp_path / "PWNED"
    cfg = {"a": {"_target_": "os.system", "command": f"touch {marker}"},
           "b": {"_target_": "stoker.launch.executors.process.os.system",
                 "command": f"touch {marker}"},
           "c": {"_target_": "torch.load", "f": str(marker), "_partial_": True},
           "d": {"_target_": "stoker.config.build", "_args_": [{}]}}
    with pytest.raises(ConfigError) as err:
        c.build(cfg, trust=["stoker", "torch", "os"])
    text = str(err.value)
    for path, module in (("a._target_", "posix"), ("b._target_", "posix"),
                         ("c._target_", "torch.serialization"), ("d._target_", "stoker.config")):
        assert path in text and module in text, (path, text)
    assert not marker.exists()


def test_allowlist_judges_real_defining_modules(tmp_path, monkeypatch) -> None:
    """What an archive may build, on real targets: stoker's losses/metrics/callbacks, torch.nn
    classes (defined in torch.nn.modules.*), torch.optim classes (defined in
    torch.optim.adamw, ...), schedulers, torch.nn.functional (including its C kernels and
    dispatch wrappers, whose __module__ is elsewhere). A module, a stoker function outside
    the list and a class re-exported by a trusted module from another are refused."""
    from stoker.config.targets import judge_target

    for ok in ("torch.nn.Linear", "torch.optim.AdamW", "torch.optim.SGD",
               "torch.optim.lr_scheduler.CosineAnnealingLR", "torch.nn.functional.relu",
               "torch.nn.functional.linear", "torch.nn.functional.conv2d",
               "torch.nn.functional.max_pool2d", "stoker.train.losses:CrossEntropy",
               "stoker.train.metrics.Perplexity", "stoker.train.callbacks.NaNGuard",
               "stoker.data.tokenizers.CharTokenizer", "stoker.models.gpt.GPT"):
        assert judge_target(ok, []) is None, (ok, judge_target(ok, []))
    refused = {
        "torch.nn": "is the module torch.nn",
        "torch.nn.Linear.load_state_dict": "defined in torch.nn.modules.module",
        "stoker.models.registry.register_model": "may never call",
        "stoker.train.losses.CrossEntropy.__init__": "special attribute",
        "torch.tanh": "pass --trust torch",
        "this.x": "pass --trust this",
    }
    for target, why in refused.items():
        r = judge_target(target, [])
        assert r is not None and why in r.reason, (target, r)
    (tmp_path / "mypkg.py").write_text("from json import dumps\nclass Net:\n"
                                       "    def __init__(self, n=1):\n        self.n = n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert judge_target("mypkg.Net", ["mypkg"]) is None
    r = judge_target("mypkg.dumps", ["mypkg"])  # re-exported: judged where it is defined
    assert r is not None and "json.dumps" in r.reason and r.trust == "json", r


def test_every_builtin_recipe_target_is_allowed() -> None:
    """The built-in recipes' targets (what their checkpoints and archives carry) pass the
    untrusted rule, so art:// checkpoints of them evaluate without --trust."""
    from stoker.config.files import read
    from stoker.config.recipes import builtin_dir
    from stoker.config.targets import iter_targets, judge_target

    seen = set()
    for path in sorted(builtin_dir().glob("*.yaml")):
        tree = read(path)[0]
        for where, target in iter_targets(tree if isinstance(tree, dict) else {}):
            seen.add(target)
            assert judge_target(target, []) is None, (path.name, where, target)
    assert {"torch.optim.AdamW", "stoker.train.losses.CrossEntropy",
            "stoker.train.callbacks.SampleGeneration"} <= seen
