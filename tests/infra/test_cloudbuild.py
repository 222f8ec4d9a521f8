"""cloudbuild.yaml runs on a fresh worker: the JDK it installs can run the emulator
versions it installs, and the project is Cloud Build's own $PROJECT_ID.

The rule (Cloud SDK release notes, 2025-05-20): since gcloud 523 the Firestore
emulator runs only on Java 21 or later. Emulator components installed without
a version pin are the latest, so they need Java 21+; pinned ones older than 523
may run on Java 17.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
EMULATORS = ("google-cloud-cli-firestore-emulator", "google-cloud-cli-pubsub-emulator")
JAVA_21_SINCE_GCLOUD = 523


def build_script() -> str:
    [step] = [s for s in BUILD["steps"] if s["id"] == "test"]
    return "\n".join(step["args"])


def jdk_major(script: str) -> int:
    """The Java major version the script installs (Debian's OpenJDK or Adoptium's Temurin)."""
    [major] = {int(m) for m in re.findall(r"\b(?:openjdk|temurin)-(\d+)-(?:jre|jdk)", script)}
    return major


def emulator_pins(script: str) -> dict[str, int | None]:
    """Each emulator package's pinned gcloud major version (`pkg=523.0.0-0`), None when unpinned."""
    pins = {}
    for package in EMULATORS:
        match = re.search(rf"\b{package}(?:=(\d+)\.[\w.-]*)?(?=\s|$)", script)
        assert match, f"{package} is not installed"
        pins[package] = int(match[1]) if match[1] else None
    return pins


def runs_on(major: int, pins: dict[str, int | None]) -> bool:
    needs_21 = any(pin is None or pin >= JAVA_21_SINCE_GCLOUD for pin in pins.values())
    return major >= 21 or not needs_21


def test_the_rule_itself():
    assert runs_on(21, {"f": None}) and runs_on(17, {"f": 522}) and runs_on(25, {"f": 530})
    assert not runs_on(17, {"f": None}) and not runs_on(17, {"f": 523})


def test_the_build_installs_a_jdk_that_runs_the_emulators_it_installs():
    script = build_script()
    major, pins = jdk_major(script), emulator_pins(script)
    assert runs_on(major, pins), f"Java {major} cannot run emulators {pins}"
    assert "make test" in script


def test_the_project_is_the_builds_own_project_id_not_a_second_substitution():
    assert "_PROJECT" not in BUILD.get("substitutions", {})
    assert "TF_VAR_project_id=$PROJECT_ID" in BUILD["options"]["env"]
    assert "_PROJECT}" not in (ROOT / "cloudbuild.yaml").read_text()
    assert "_PROJECT=" not in (ROOT / "docs" / "deploy.md").read_text()
