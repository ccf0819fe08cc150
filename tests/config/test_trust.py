"""Configs from elsewhere import nothing outside stoker, torch and a trust list (item 8 of
issue 14). Each check runs in a fresh interpreter so that importing `this` (which prints
the Zen of Python) is observable."""
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
