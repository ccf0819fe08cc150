"""Loading YAML/TOML/JSON: values, file:line of every node, and parse errors with line:column."""
from __future__ import annotations

import pytest

from stoker.config import load, source_of
from stoker.errors import ConfigError


def test_yaml_values_and_lines(tmp_path, w):
    p = w(tmp_path / "a.yaml", """
        seed: 1
        optim:
          lr: 3e-4
          betas: [0.9, 0.99]
        """)
    cfg = load(p)
    assert cfg.optim.lr == pytest.approx(3e-4)  # YAML 1.1 would read a string
    assert source_of(cfg, "optim.lr") == (str(p), 3)
    assert source_of(cfg, "optim.betas[1]") == (str(p), 4)


def test_toml_and_json_load_with_lines(tmp_path, w):
    t = w(tmp_path / "a.toml", """
        seed = 1

        [optim]
        lr = 0.001
        """)
    j = w(tmp_path / "a.json", """
        {
          "seed": 1,
          "optim": {"lr": 0.001}
        }
        """)
    assert load(t).optim.lr == 0.001 and source_of(load(t), "optim.lr") == (str(t), 4)
    assert load(j).optim.lr == 0.001 and source_of(load(j), "optim.lr") == (str(j), 3)


@pytest.mark.parametrize("name,text,line", [
    ("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n", 3),
    ("bad.toml", "a = 1\nb = = 2\n", 2),
    ("bad.json", '{\n  "a": 1,\n  "b": \n}\n', 4),
])
def test_malformed_files_name_file_line_column(tmp_path, name, text, line):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(p)
    assert f"{p}:{line}:" in str(e.value)
    assert "malformed" in str(e.value)


def test_duplicate_yaml_key_is_an_error(tmp_path, w):
    p = w(tmp_path / "d.yaml", "a: 1\nb: 2\na: 3\n")
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load(p)


def test_duplicate_json_key_is_an_error_with_its_line(tmp_path, w):
    """JSON refuses a repeated key as YAML and TOML do (json.loads alone keeps the last)."""
    p = w(tmp_path / "d.json", '{\n  "optim": {\n    "lr": 1,\n    "lr": 2\n  }\n}\n')
    with pytest.raises(ConfigError, match="duplicate key 'lr'") as e:
        load(p)
    assert f"optim.lr ({p}:4)" in str(e.value) and "first defined on line 3" in str(e.value)
    assert load(w(tmp_path / "ok.json", '{"a": {"lr": 1}, "b": {"lr": 2}}')).b.lr == 2


def test_top_level_must_be_a_mapping(tmp_path, w):
    with pytest.raises(ConfigError, match="mapping"):
        load(w(tmp_path / "l.yaml", "- 1\n- 2\n"))


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown config format"):
        load(tmp_path / "x.ini")
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.yaml")
