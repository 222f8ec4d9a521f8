"""The functions' deployment zip (infra/modules/lrowatch/functions.tf `archive_file.source`) holds
what the functions run and nothing else, and what it holds is enough to import
main.py and every module in it."""
from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

from tests.infra.test_terraform_wiring import INFRA_MODEL

ROOT = Path(__file__).resolve().parents[2]
TOOLING = ("functions/cli/", "functions/local/", "functions/simulator/", "functions/dlq.py",
           "functions/__main__.py")


def repository_files() -> list[str]:
    """What a fresh clone holds (plus files not committed yet, so the check runs before a commit)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return sorted(p for p in listed if (ROOT / p).is_file())


def excluded(path: str, patterns: list[str]) -> bool:
    """archive_file's excludes: glob patterns over the path relative to source_dir."""
    for pattern in patterns:
        if pattern.endswith("/**") and "*" not in pattern[:-3]:
            if path.startswith(pattern[:-2]):
                return True
        elif pattern.startswith("**/") and pattern.endswith("/**"):
            if f"/{pattern[3:-3]}/" in f"/{path}":
                return True
        elif fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern.removeprefix("**/")):
            return True
    return False


def zip_contents() -> list[str]:
    patterns = INFRA_MODEL.data["archive_file"]["source"]["excludes"]
    return [p for p in repository_files() if not excluded(p, patterns)]


def test_the_zip_holds_main_requirements_and_the_runtime_package_only():
    contents = zip_contents()
    assert {"main.py", "requirements.txt", "functions/config.py", "functions/adapters/notifier.py"} <= set(contents)
    stray = [p for p in contents if p not in ("main.py", "requirements.txt") and not p.startswith("functions/")]
    tooling = [p for p in contents if p.startswith(TOOLING)]
    assert stray == [] and tooling == []


def test_what_the_zip_holds_is_enough_to_import_main_and_every_runtime_module(tmp_path):
    for path in zip_contents():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    modules = sorted(p[:-3].replace("/", ".").removesuffix(".__init__") for p in zip_contents()
                     if p.endswith(".py") and p != "main.py")
    # The copy comes first on sys.path, ahead of the editable install of the repository.
    script = (f"import sys, importlib; sys.path.insert(0, {str(tmp_path)!r}); import main, functions; "
              f"assert functions.__file__.startswith({str(tmp_path)!r}), functions.__file__; "
              f"[importlib.import_module(m) for m in {modules!r}]; print('ok')")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "GOOGLE_CLOUD_PROJECT": "zip-check"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
