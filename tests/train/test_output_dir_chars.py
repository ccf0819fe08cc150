"""An output path with a newline or another control character is bad input (exit 2).

It used to be accepted: the run trained, wrote a ``config.yaml`` whose header comment the
newline broke, and failed at publish with a YAML ScannerError. Now it is refused with a
message naming ``output_dir`` before anything is created."""
from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import run_cli, tiny_overrides

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("char", ["\n", "\t", "\x1b", "\r", "\x7f", "\u2028"],
                         ids=["newline", "tab", "escape", "cr", "del", "line-separator"])
def test_train_refuses_a_control_character_in_output_dir(stoker_cmd, tiny_data: Path,
                                                         tmp_path: Path, char: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out = f"{work}/run{char}x"
    args = [a for a in tiny_overrides(tiny_data, work / "unused") if not a.startswith("output_dir=")]
    r = run_cli(stoker_cmd, "train", "gpt-char", *args, f"output_dir='{out}'",
                "trainer.max_steps=2", "--yes", cwd=work)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "output_dir" in r.stderr and "control character" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert list(work.iterdir()) == []  # nothing created: no run directory, no outputs/


def test_data_prepare_refuses_a_newline_in_output_dir(stoker_cmd, tmp_path: Path) -> None:
    src = tmp_path / "corpus.txt"
    src.write_text("hello world\n" * 50)
    out = tmp_path / "ds\nx"
    r = run_cli(stoker_cmd, "data", "prepare", "-i", str(src), "-o", str(out), "--type", "char",
                "-q", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--output-dir" in r.stderr and "a newline" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]
