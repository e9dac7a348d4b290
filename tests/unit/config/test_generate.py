"""The schema, the sample config and docs/configuration.md are generated from the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firebreak.config import load_config, parse_config
from firebreak.config.generate import EXAMPLE_PATH, generated_files
from firebreak.config.model import Config

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("relative", sorted(generated_files(), key=str), ids=str)
def test_committed_copy_matches_the_model(relative: Path) -> None:
    committed = (ROOT / relative).read_text(encoding="utf-8")
    assert committed == generated_files()[relative], (
        f"{relative} is out of date with the config model: run `make generate` and commit it"
    )


def test_example_is_a_valid_config_with_every_key_mentioned() -> None:
    text = (ROOT / EXAMPLE_PATH).read_text()
    config = parse_config(text, str(EXAMPLE_PATH), base_dir=ROOT)
    assert len(config.sites) == 3 and "www" in config.sources
    for model in (Config, *(type(v) for v in (config.sites["gra"], config.sources["www"]))):
        for key in model.model_fields:
            assert f"{key}:" in text, f"{model.__name__}.{key} is missing from the example"


def test_schema_rejects_unknown_keys_like_the_model() -> None:
    schema = json.loads(generated_files()[Path("config/schema.json")])
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Site"]["additionalProperties"] is False
    assert set(schema["required"]) == {"sites", "sources"}


def test_demo_config_is_valid() -> None:
    config = load_config(ROOT / "deploy" / "demo" / "firebreak.yaml")
    assert len(config.sites) >= 3
    kinds = {site.repository.split(":")[0] for site in config.sites.values()}
    assert "rest" in kinds


def test_every_section_of_the_config_has_a_reference_table() -> None:
    import typing

    from pydantic import BaseModel

    from firebreak.config import generate

    def models(annotation: object, found: set[type[BaseModel]]) -> set[type[BaseModel]]:
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if is_model and annotation not in found:
            found.add(annotation)
            for field in annotation.model_fields.values():
                models(field.annotation, found)
        for argument in typing.get_args(annotation):
            models(argument, found)
        return found

    assert models(Config, set()) == set(generate._MODELS)
