from __future__ import annotations

from pathlib import Path

import pytest
from doubles import PaintEngineDouble, tiny_package

from lipsync_server.errors import ModelNotFoundError, ModelUnavailableError, PackageError
from lipsync_server.packages.model import ModelPackage
from lipsync_server.registry import ModelEntry, ModelRegistry, ModelState, load_model, package_dirs


def loader_returning(package: ModelPackage):  # type: ignore[no-untyped-def]
    def load(path: Path, name: str | None) -> ModelPackage:
        return package

    return load


def test_an_unknown_name_lists_the_ready_models() -> None:
    registry = ModelRegistry()
    registry.set(ModelEntry("b", ModelState.READY, Path("b"), tiny_package(), PaintEngineDouble()))
    registry.set(ModelEntry("a", ModelState.LOADING, Path("a")))
    with pytest.raises(ModelNotFoundError, match=r"available models: b$"):
        registry.get("zzz")


def test_a_loading_or_failed_model_is_unavailable_with_the_reason() -> None:
    registry = ModelRegistry()
    registry.set(ModelEntry("a", ModelState.LOADING, Path("a")))
    registry.set(ModelEntry("f", ModelState.FAILED, Path("f"), error="x.json: bad"))
    with pytest.raises(ModelUnavailableError, match="still loading"):
        registry.get("a")
    with pytest.raises(ModelUnavailableError, match=r"x\.json: bad"):
        registry.get("f")


def test_load_model_registers_under_the_package_name() -> None:
    registry = ModelRegistry()
    entry = load_model(
        registry, Path("dir"), "dir", loader_returning(tiny_package()), {"paint": PaintEngineDouble()}
    )
    assert entry.name == "tiny"
    assert registry.ready_names() == ["tiny"]


def test_a_package_for_an_engine_the_server_lacks_is_refused_clearly() -> None:
    registry = ModelRegistry()
    with pytest.raises(PackageError, match=r"engine 'paint' is not available .*available engines: sprite"):
        load_model(
            registry, Path("dir"), "dir", loader_returning(tiny_package()), {"sprite": PaintEngineDouble()}
        )
    assert registry.entry("tiny").state is ModelState.FAILED


def test_package_dirs_lists_subdirectories_or_the_directory_itself(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "file.txt").write_text("x")
    assert [p.name for p in package_dirs(tmp_path)] == ["one", "two"]
    assert [p.name for p in package_dirs(tmp_path, ("two", "absent"))] == ["two"]
    (tmp_path / "manifest.json").write_text("{}")
    assert package_dirs(tmp_path) == [tmp_path]
