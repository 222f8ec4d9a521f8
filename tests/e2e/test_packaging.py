"""`pip install .` from a fresh clone into a new virtualenv gives a working `lrowatch`,
and installs the `functions` package only: no stray top-level `main` module.

pip reuses its cache (and the machine's wheel mirrors), so this takes seconds
after the first run; the virtualenv gets no pip of its own (the suite's pip
installs into it), which keeps it small.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import functions
from tests.infra.test_deploy_zip import repository_files

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    clone, venv = tmp_path_factory.mktemp("clone"), tmp_path_factory.mktemp("venv")
    for path in repository_files():  # a fresh clone: tracked files only, no build leftovers
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, clone / path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                           "-q", "--disable-pip-version-check", str(clone)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def run(venv: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "lrowatch"), *argv], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd)})


def test_the_installed_lrowatch_prints_its_help_and_version(installed, tmp_path):
    help_ = run(installed, "--help", cwd=tmp_path)
    assert help_.returncode == 0 and "wait" in help_.stdout and "usage: lrowatch" in help_.stdout, help_.stderr
    version = run(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"lrowatch {functions.__version__}"


def test_the_installed_lrowatch_runs_a_command_and_explains_what_is_missing(installed, tmp_path):
    answer = run(installed, "--local", "list", cwd=tmp_path)  # no demo running here: a hint, not a crash
    assert answer.returncode == 3 and "make demo" in answer.stderr and "Traceback" not in answer.stderr


def test_the_distribution_installs_the_functions_package_and_no_top_level_main(installed, tmp_path):
    python = str(installed / "bin" / "python")
    probe = ("import importlib.util as u, functions; "
             "print(u.find_spec('main') is None, functions.__file__)")
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    no_main, location = done.stdout.split()
    assert no_main == "True" and str(installed) in location, done.stderr
