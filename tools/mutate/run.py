"""``make mutate``: apply each break of tools/mutate/mutations.py to a scratch copy of
``src/`` and check that the tests named for it fail.

For each mutation: copy of ``src/`` put first on ``PYTHONPATH`` (the tests and any
``stoker`` subprocess they start import the mutated code), the named tests run with pytest,
and the outcome is CAUGHT (every named test failed), MISSED (some passed: their names are
listed) or ERROR (a snippet no longer occurs exactly once in the source). First the named
tests run once on the unmodified copy: a failing baseline would make every break look
caught. Exit 1 when anything is MISSED or ERROR.

    python tools/mutate/run.py [--only NAME ...] [--list] [--no-baseline]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutations import MUTATIONS, Mutation  # noqa: E402


def _outcomes(xml: Path) -> dict[str, str]:
    """pytest node id (parameters dropped) -> 'failed' if any of its cases failed, else 'passed'."""
    out: dict[str, str] = {}
    for case in ET.parse(xml).iter("testcase"):
        cls, name = case.get("classname", ""), case.get("name", "")
        node = cls.replace(".", "/") + ".py::" + name.split("[", 1)[0]
        bad = any(child.tag in ("failure", "error") for child in case)
        skipped = any(child.tag == "skipped" for child in case)
        state = "failed" if bad else ("skipped" if skipped else "passed")
        if out.get(node) not in ("failed", "passed") or bad:
            out[node] = state
    return out


def _pytest(tests: list[str], src: Path, xml: Path) -> tuple[int, dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(src), *filter(None, [os.environ.get("PYTHONPATH", "")])]),
        PYTHONDONTWRITEBYTECODE="1")
    check = subprocess.run([sys.executable, "-c", "import stoker; print(stoker.__file__)"],
                           env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    if not check.stdout.strip().startswith(str(src)):
        raise SystemExit(f"the scratch copy is not what gets imported: {check.stdout}{check.stderr}")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junit-xml={xml}", *tests], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    return proc.returncode, (_outcomes(xml) if xml.exists() else {})


def _apply(src: Path, m: Mutation) -> dict[Path, str]:
    """Apply ``m``'s edits; return the original text of each file touched."""
    originals: dict[Path, str] = {}
    for e in m.edits:
        path = src / "stoker" / e.file
        text = path.read_text(encoding="utf-8")
        originals.setdefault(path, text)
        n = text.count(e.old)
        if n != 1:
            raise LookupError(f"{e.file}: snippet found {n} times, expected once: {e.old[:60]!r}")
        path.write_text(text.replace(e.old, e.new), encoding="utf-8")
    return originals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run only these mutations (by name)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the unmodified run of the named tests")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list or not chosen:
        for m in MUTATIONS:
            print(f"{m.name:36s} {m.why}")
        return 0 if chosen or args.list else 2
    results: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="stoker-mutate-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        if not args.no_baseline:
            tests = sorted({t for m in chosen for t in m.tests})
            t0 = time.monotonic()
            code, outcome = _pytest(tests, src, Path(tmp) / "baseline.xml")
            failing = [t for t in tests if outcome.get(t) != "passed"]
            print(f"baseline: {len(tests)} tests, {time.monotonic() - t0:.0f} s"
                  + (f", NOT PASSING: {failing}" if failing else ", all pass"), flush=True)
            if failing:
                return 2
        for m in chosen:
            t0 = time.monotonic()
            try:
                originals = _apply(src, m)
            except LookupError as exc:
                results.append((m.name, "ERROR", str(exc)))
                print(f"ERROR   {m.name}: {exc}", flush=True)
                continue
            try:
                _, outcome = _pytest(list(m.tests), src, Path(tmp) / f"{m.name}.xml")
            finally:
                for path, text in originals.items():
                    path.write_text(text, encoding="utf-8")
            passed = [t for t in m.tests if outcome.get(t) != "failed"]
            verdict = "MISSED" if passed else "CAUGHT"
            shown = [f"{t} ({outcome.get(t, 'not run')})" for t in passed]
            detail = (f"not failing: {', '.join(shown)}" if passed
                      else f"{len(m.tests)} test(s) failed")
            results.append((m.name, verdict, detail))
            print(f"{verdict:7s} {m.name} ({time.monotonic() - t0:.0f} s): {detail}", flush=True)
    bad = [r for r in results if r[1] != "CAUGHT"]
    print(f"\n{len(results) - len(bad)} of {len(results)} breaks caught"
          + (f"; MISSED/ERROR: {', '.join(r[0] for r in bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
