"""The configuration: pydantic model, YAML loading, error rendering, generated reference.

The model and the loader (pydantic, YAML) are imported when one of their names is first
asked for, so that a light module of this package (durations, fingerprint) costs only itself:
``firebreak status`` asking the daemon never builds the model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firebreak.config.loader import ConfigError, Problem, load_config, parse_config
    from firebreak.config.model import Config, Location, Site, Source

__all__ = [
    "Config",
    "ConfigError",
    "Location",
    "Problem",
    "Site",
    "Source",
    "load_config",
    "parse_config",
]

_HOMES = {
    "ConfigError": "loader",
    "Problem": "loader",
    "load_config": "loader",
    "parse_config": "loader",
    "Config": "model",
    "Location": "model",
    "Site": "model",
    "Source": "model",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
