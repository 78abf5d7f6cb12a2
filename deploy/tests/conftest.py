"""Fixtures for the deploy tests: the external tools they drive. A missing tool skips the test with
the reason on a developer machine and fails it in CI (CI=true), where deploy/scripts/install-ci-tools.sh
has installed everything."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> NoReturn:
    reason = f"{what} is not installed; deploy/scripts/install-ci-tools.sh installs it"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary."""
    path = shutil.which("helm")
    if path is None:
        _missing("helm")
    return path


@pytest.fixture(scope="session")
def compose() -> list[str]:
    """The compose command: `docker compose` (v2) or `docker-compose` (v1)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        _missing("docker compose (or docker-compose)")
    return [legacy]


@pytest.fixture(scope="session")
def kubernetes_validate() -> ModuleType:
    """The kubernetes_validate module (PyPI kubernetes-validate)."""
    try:
        return importlib.import_module("kubernetes_validate")
    except ImportError:
        _missing("kubernetes-validate")


def load_script(relative_path: str) -> ModuleType:
    """Import a script of the repository (they are not installed packages) by its path."""
    path = Path(__file__).resolve().parents[2] / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def smoke() -> ModuleType:
    """deploy/smoke/smoke.py as a module."""
    return load_script("deploy/smoke/smoke.py")


@pytest.fixture(scope="session")
def replicas(smoke: ModuleType) -> ModuleType:
    """deploy/smoke/replicas.py as a module (it imports smoke, which the `smoke` fixture registered)."""
    return load_script("deploy/smoke/replicas.py")


@pytest.fixture(scope="session")
def render_k8s() -> ModuleType:
    """deploy/scripts/render_k8s.py as a module."""
    return load_script("deploy/scripts/render_k8s.py")
