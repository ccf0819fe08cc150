"""`stoker recipes`, `stoker config show/validate` and users' entrypoint scripts, through
the real command line: every bad input exits 2 with a message and no traceback."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "entrypoint_train.py"


def run(cmd, cwd, env=None, stdin=subprocess.DEVNULL):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          stdin=stdin)


def assert_user_error(r, *needles):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_recipes_and_show(stoker_cmd, tmp_path):
    r = run([*stoker_cmd, "recipes"], tmp_path)
    assert r.returncode == 0 and "example-linear" in r.stdout
    r = run([*stoker_cmd, "config", "show", "example-linear", "optim.lr=0.5", "dim=3"], tmp_path)
    assert r.returncode == 0 and "lr: 0.5" in r.stdout and "in_features: 3" in r.stdout
    r = run([*stoker_cmd, "config", "validate", "example-linear"], tmp_path)
    assert r.returncode == 0 and "OK" in r.stdout


@pytest.mark.parametrize("fmt", ["yaml", "toml", "json"])
def test_show_round_trip_through_the_cli(stoker_cmd, tmp_path, fmt):
    r = run([*stoker_cmd, "config", "show", "example-linear", "--raw", "--format", fmt, "seed=9"], tmp_path)
    assert r.returncode == 0, r.stderr
    f = tmp_path / f"c.{fmt}"
    f.write_text(r.stdout)
    r2 = run([*stoker_cmd, "config", "show", str(f), "--raw", "--format", fmt], tmp_path)
    assert r2.returncode == 0 and r2.stdout == r.stdout
    assert "${dim}" in r.stdout  # interpolation kept


BAD_FILES = {
    "bad.yaml": ("a: [1,\n", "bad.yaml:2:"),
    "bad.toml": ("a = \n", "bad.toml:1:"),
    "bad.json": ('{"a": 1,}\n', "bad.json:1:"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_malformed_file(stoker_cmd, tmp_path, name):
    text, where = BAD_FILES[name]
    (tmp_path / name).write_text(text)
    assert_user_error(run([*stoker_cmd, "config", "validate", name], tmp_path), where, "malformed")


@pytest.mark.parametrize("overrides,needles", [
    (["optim.lrr=1"], ["Unknown key 'lrr' in optim (torch.optim.AdamW). Did you mean 'lr'?"]),
    (["optim.lr=fast"], ["optim.lr", "expected float", "'fast'"]),
    (["dim=???"], ["dim", "missing required value"]),
    (["dim=${nope}"], ["cannot resolve interpolation", "nope"]),
    (["dim=${seed}", "seed=${dim}"], ["Recursive interpolation"]),
    (["model=@missing.yaml"], ["does not exist"]),
    (["model=huge"], ["unknown option 'huge' for 'model'", "Valid options"]),
    (["model._target_=torch.nn.Linearr"], ["cannot import target 'torch.nn.Linearr'", "Did you mean 'Linear'"]),
    (["model._target_=nosuchmod.Thing"], ["no module named 'nosuchmod'"]),
    (["seed=1,2"], ["sweep"]),
])
def test_bad_overrides(stoker_cmd, tmp_path, overrides, needles):
    r = run([*stoker_cmd, "config", "validate", "example-linear", *overrides], tmp_path)
    assert_user_error(r, *needles)


def test_unknown_recipe(stoker_cmd, tmp_path):
    assert_user_error(run([*stoker_cmd, "config", "show", "example-linearr"], tmp_path),
                      "Did you mean 'example-linear'")


# ------------------------------------------------------------------ entrypoint scripts
def test_entrypoint_runs_with_nested_overrides(tmp_path):
    r = run([sys.executable, str(EXAMPLE), "model.size=256", "epochs=3"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2-layer model of size 256" in r.stdout and "3 epochs" in r.stdout


def test_entrypoint_typo_and_type_errors(tmp_path):
    assert_user_error(run([sys.executable, str(EXAMPLE), "epocks=5"], tmp_path),
                      "Unknown argument 'epocks'. Did you mean 'epochs'?")
    assert_user_error(run([sys.executable, str(EXAMPLE), "model.size=big", "model.activation=tanh"], tmp_path),
                      "model.size", "expected int", "model.activation")
    assert_user_error(run([sys.executable, str(EXAMPLE), "model=nope"], tmp_path),
                      "Valid options: big_model")
    assert_user_error(run([sys.executable, str(EXAMPLE), "--dryrn"], tmp_path), "Did you mean '--dryrun'")


def test_entrypoint_dryrun_factory_and_help(tmp_path):
    r = run([sys.executable, str(EXAMPLE), "model=big_model", "--dryrun"], tmp_path)
    assert r.returncode == 0 and "1024" in r.stdout and "Training" not in r.stdout
    h = run([sys.executable, str(EXAMPLE), "--help"], tmp_path)
    assert h.returncode == 0
    for needle in ["model", "ModelConfig", "epochs", "int", "10", "out_dir", "Path",
                   "big_model", "__main__.big_model", "line"]:
        assert needle in h.stdout


@pytest.mark.parametrize("fmt", ["yaml", "toml", "json"])
def test_entrypoint_export_and_reload(tmp_path, fmt):
    out = tmp_path / f"run.{fmt}"
    r = run([sys.executable, str(EXAMPLE), "model.layers=5", f"--to-{fmt}", str(out)], tmp_path)
    assert r.returncode == 0 and out.exists() and "Training" not in r.stdout
    r2 = run([sys.executable, str(EXAMPLE), "-c", str(out), "--yes"], tmp_path)
    assert r2.returncode == 0 and "5-layer" in r2.stdout
    r3 = run([sys.executable, str(EXAMPLE), str(out), "epochs=2"], tmp_path)  # positional file
    assert r3.returncode == 0 and "2 epochs" in r3.stdout


def test_nothing_written_on_bad_input(tmp_path):
    out = tmp_path / "never.yaml"
    r = run([sys.executable, str(EXAMPLE), "epocks=1", "--to-yaml", str(out)], tmp_path)
    assert r.returncode == 2 and not out.exists()


def test_seed_nemo_run_examples_and_exit_codes(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import stoker

        @dataclass
        class ModelConfig:
            size: int = 128
            layers: int = 2

        @stoker.entrypoint
        def train(model: str, epochs: int = 10):
            if model == "crash":
                raise RuntimeError("boom")
            if model == "ctrlc":
                raise KeyboardInterrupt
            print(f"Training {model} for {epochs} epochs")

        @stoker.entrypoint
        def train2(model_config: ModelConfig):
            print(f"Model size: {model_config.size}, layers: {model_config.layers}")

        if __name__ == "__main__":
            import sys
            stoker.main(train2 if sys.argv[1:2] == ["two"] and sys.argv.pop(1) else train)
    '''))
    r = run([sys.executable, str(script), "model=alexnet", "epochs=5"], tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "Training alexnet for 5 epochs"
    r = run([sys.executable, str(script), "two", "model_config.size=256"], tmp_path)
    assert r.returncode == 0 and "Model size: 256, layers: 2" in r.stdout
    r = run([sys.executable, str(script), "model=crash"], tmp_path)
    assert r.returncode == 1 and "boom" in r.stderr
    r = run([sys.executable, str(script), "model=ctrlc"], tmp_path)
    assert r.returncode == 130
    assert_user_error(run([sys.executable, str(script)], tmp_path), "model", "missing required value")


@pytest.mark.parametrize("special", ["/dev/zero", "."])
def test_override_from_a_path_that_is_not_a_regular_file(stoker_cmd, tmp_path, special):
    """`key=@/dev/zero` (a device) or `key=@.` (a directory) is not "missing": say what it is."""
    r = run([*stoker_cmd, "config", "validate", "example-linear", f"optim=@{special}"], tmp_path)
    assert_user_error(r, f"optim=@{special}", "is not a regular file")
    assert "does not exist" not in r.stderr


@pytest.mark.integration
def test_unexpected_argument_is_a_usage_error_without_traceback(stoker_cmd, cli_env) -> None:
    """Typer raises its own copy of click's UsageError; it must still be exit 2, no traceback."""
    import subprocess

    r = subprocess.run([*stoker_cmd, "artifacts", "list", "a", "b"], capture_output=True,
                       text=True, env=cli_env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "unexpected extra argument" in r.stderr and "Traceback" not in r.stderr
