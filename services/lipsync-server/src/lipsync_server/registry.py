"""Models by name: which are loading, ready or failed, and the engine that runs each.

Names are only ever looked up here; no request field is ever joined into a file path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from lipsync_server.engines.base import Engine
from lipsync_server.errors import ModelNotFoundError, ModelUnavailableError, UnsupportedEngineError
from lipsync_server.packages.model import ModelPackage

logger = logging.getLogger(__name__)

PackageLoader = Callable[[Path, str | None], ModelPackage]


class ModelState(Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    state: ModelState
    source: Path
    package: ModelPackage | None = None
    engine: Engine | None = None
    error: str = ""


@dataclass(frozen=True)
class ReadyModel:
    package: ModelPackage
    engine: Engine


class ModelRegistry:
    """Thread-safe: loads run in worker threads while requests read from the event loop."""

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()

    def set(self, entry: ModelEntry) -> None:
        with self._lock:
            self._entries[entry.name] = entry

    def remove(self, name: str) -> bool:
        with self._lock:
            return self._entries.pop(name, None) is not None

    def entries(self) -> list[ModelEntry]:
        with self._lock:
            return sorted(self._entries.values(), key=lambda entry: entry.name)

    def ready_names(self) -> list[str]:
        return [entry.name for entry in self.entries() if entry.state is ModelState.READY]

    def entry(self, name: str) -> ModelEntry:
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFoundError(name, self.ready_names())
        return entry

    def get(self, name: str) -> ReadyModel:
        """The ready model `name`, or ModelNotFoundError / ModelUnavailableError."""
        entry = self.entry(name)
        if entry.state is ModelState.LOADING:
            raise ModelUnavailableError(f"model {name!r} is still loading; retry shortly")
        if entry.state is ModelState.FAILED or entry.package is None or entry.engine is None:
            raise ModelUnavailableError(f"model {name!r} failed to load: {entry.error}")
        return ReadyModel(entry.package, entry.engine)


def engine_for(package: ModelPackage, engines: Mapping[str, Engine]) -> Engine:
    engine = engines.get(package.engine)
    if engine is None:
        available = ", ".join(sorted(engines)) or "none"
        raise UnsupportedEngineError(
            package.root,
            f"engine {package.engine!r} is not available in this server (available engines: {available})",
        )
    return engine


def load_model(
    registry: ModelRegistry,
    source: Path,
    name: str,
    load_package: PackageLoader,
    engines: Mapping[str, Engine],
    *,
    rename: bool = False,
) -> ModelEntry:
    """Load, prepare and warm one package (blocking: call from a worker thread) and record the outcome.

    `name` is the registry key while loading; the package's own name replaces it unless `rename`.
    Failures are recorded as FAILED entries, logged, and re-raised for callers that report them.
    """
    registry.set(ModelEntry(name, ModelState.LOADING, source))
    try:
        package = load_package(source, name if rename else None)
        if package.name != name:
            registry.remove(name)
            name = package.name
        engine = engine_for(package, engines)
        package = engine.prepare(package)
        engine.warm_up(package)
    except Exception as exc:
        entry = ModelEntry(name, ModelState.FAILED, source, error=str(exc))
        registry.set(entry)
        logger.error("model %s from %s failed to load: %s", name, source, exc)
        raise
    entry = ModelEntry(name, ModelState.READY, source, package, engine)
    registry.set(entry)
    logger.info(
        "model %s ready: engine=%s frames=%d %dx%d fps=%g",
        name,
        package.engine,
        package.frame_count,
        package.width,
        package.height,
        package.fps,
    )
    return entry


def package_dirs(models_dir: Path, only: tuple[str, ...] = ()) -> list[Path]:
    """Package directories under `models_dir`: the directory itself when it is a package, else each
    non-hidden subdirectory (a broken one is still listed, so its failure is reported)."""
    if (models_dir / "manifest.json").is_file() or (models_dir / "package_info.json").is_file():
        return [models_dir]
    candidates = sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if only:
        by_name = {p.name: p for p in candidates}
        missing = [name for name in only if name not in by_name]
        if missing:
            logger.error("requested models not found in %s: %s", models_dir, ", ".join(missing))
        candidates = [by_name[name] for name in only if name in by_name]
    return candidates
