"""The package as users get it: the wheel and sdist build, the wheel installs into a fresh
virtualenv (without the index: the pinned runtime wheels of hack/python.sh), and `millrace run`
runs the Python word count from it with the same counts as the Go example's binaries."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import bin_dir

ROOT = Path(__file__).resolve().parents[4]
SDK = ROOT / "executor-runtime" / "sdk" / "python"
INPUT = ROOT / "config" / "samples" / "wordcount-input.txt"
# Without the source tree on the path: what runs is what the wheel installed.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtualenv with the wheel built from this tree."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(SDK)], check=True, capture_output=True)
    built = sorted(p.name for p in dist.iterdir())
    assert built == ["millrace-0.1.0-py3-none-any.whl", "millrace-0.1.0.tar.gz"], built
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    wheels = os.environ.get("MILLRACE_PY_WHEELS")
    if not wheels:
        pytest.fail("MILLRACE_PY_WHEELS is not set: run the tests with hack/python.sh test", pytrace=False)
    subprocess.run([str(env_dir / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links", wheels, str(dist / built[0])], check=True, env=CLEAN_ENV)
    return env_dir


def truth():
    counts = collections.Counter()
    for line in INPUT.read_text().splitlines():
        counts.update(w.lower() for w in re.findall(r"[^\W_]+", line))
    return dict(counts)


def run_wordcount(pipeline: Path, bins: Path, extra=()):
    res = subprocess.run(
        [str(bin_dir() / "millrace"), "run", "-f", str(pipeline), "--bin-dir", str(bins),
         "--input", f"lines={INPUT}", "--until-idle", "--timeout", "4m", *extra],
        capture_output=True, text=True, timeout=300, env=CLEAN_ENV,
    )
    assert res.returncode == 0, res.stderr
    return dict(line.split("\t") for line in res.stdout.splitlines()), res.stderr


def test_the_wheel_runs_the_python_word_count_with_the_go_examples_counts(installed):
    got, log = run_wordcount(SDK / "examples" / "wordcount.yaml", installed / "bin")
    assert "millrace-wordcount-sum" in log
    assert {k: int(v) for k, v in got.items()} == truth()
    go_bins = Path(os.environ.get("MILLRACE_GO_EXAMPLES", bin_dir()))
    want, _ = run_wordcount(ROOT / "config" / "samples" / "streaming_v1alpha1_pipeline_wordcount.yaml", go_bins)
    assert got == want
    # The console scripts of the wheel are what ran.
    assert (installed / "bin" / "millrace-wordcount-split").exists()
