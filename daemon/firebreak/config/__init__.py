"""The configuration: pydantic model, YAML loading, error rendering, generated reference."""

from __future__ import annotations

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
