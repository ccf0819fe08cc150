"""Loading the user's code: `imports:` modules, their failures, and data node keys that
belong to stoker rather than to the dataset's signature."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stoker.config.plugins import import_modules, imported_modules
from stoker.errors import ConfigError


@pytest.fixture
def pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "plugpkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "good.py").write_text("VALUE = 1\n")
    (root / "bad.py").write_text("import math\n\nraise ValueError('no config today')\n")
    (root / "needs.py").write_text("import not_installed_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)  # found through the current directory, as `python -m` would
    yield root
    for name in [m for m in sys.modules if m.startswith("plugpkg")]:
        del sys.modules[name]


def test_imports_from_the_current_directory(pkg: Path) -> None:
    assert import_modules(["plugpkg.good"]) == ["plugpkg.good"]
    assert "plugpkg.good" in imported_modules()


def test_every_failure_is_named_with_its_reason(pkg: Path) -> None:
    with pytest.raises(ConfigError) as e:
        import_modules(["plugpkg.good", "plugpkg.missing", "plugpkg.bad", "plugpkg.needs",
                        "not a module"])
    text = str(e.value)
    assert "imports[1]: cannot import module 'plugpkg.missing': no module named " \
           "'plugpkg.missing'" in text
    assert "imports[2]: importing module 'plugpkg.bad' raised ValueError" in text
    assert "bad.py:3" in text and "no config today" in text
    assert "imports[3]: cannot import module 'plugpkg.needs': it imports " \
           "'not_installed_dependency_xyz', which is not installed" in text
    assert "imports[4]: 'not a module' is not a module name" in text


def test_data_node_keys_are_checked_by_the_schema_not_the_signature() -> None:
    from stoker.config.validation import check
    from stoker.train.recipe import recipe_schema

    cfg = {"model": {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1},
           "data": {"_target_": "torch.utils.data.TensorDataset", "batch_size": 0,
                    "fields": ["x"], "eval": None, "shufle": True},
           "losses": {"a": {"_target_": "stoker.train.losses.MSE", "preds": "preds.logits",
                            "targets": "batch.x"}},
           "trainer": {"max_steps": 1}}
    problems = {p.path: p.message for p in check(cfg, recipe_schema())}
    assert set(problems) == {"data.batch_size", "data.shufle"}, problems
    assert "greater than 0" in problems["data.batch_size"]
