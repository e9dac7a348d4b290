"""Whatever a config file holds, loading it ends in a Config or in ConfigError's listing (each
problem naming the file, and the field where there is one): never a traceback. Property-based:
the sample config mutated (a key removed, renamed, a value replaced by anything YAML can say),
its text cut or spliced, and bytes that are not even text."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firebreak.config import Config, ConfigError, load_config

SAMPLE = Path(__file__).parents[3] / "config" / "firebreak.example.yaml"
SAMPLE_TEXT = SAMPLE.read_text()
SAMPLE_DATA: dict[str, Any] = yaml.safe_load(SAMPLE_TEXT)

_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Anything YAML can say, and the shapes a config has.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["1h", "0s", "-5m", "30x", "*/5 * * * *", "127.0.0.1:0", "FR", "file:"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=8,
)


def _places(data: object, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every key and list item in data."""
    found = [here] if here else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _places(value, (*here, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _places(value, (*here, index))
    return found


PLACES = _places(SAMPLE_DATA)


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(SAMPLE_DATA)
    for _ in range(draw(st.integers(1, 4))):
        place = draw(st.sampled_from(PLACES))
        parent: Any = data
        try:
            for part in place[:-1]:
                parent = parent[part]
            last = place[-1]
            parent[last]
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["remove", "replace", "rename"]))
        if action == "remove":
            del parent[last]
        elif action == "replace":
            parent[last] = draw(_values)
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = parent.pop(last)
    return data


def _loads_or_lists_its_problems(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "firebreak.yaml"
    path.write_bytes(raw)
    try:
        config = load_config(path)
    except ConfigError as error:
        assert error.problems, "an error with nothing in it"
        for line in error.render().splitlines():
            assert line.startswith(f"{path}"), line
        return
    assert isinstance(config, Config)


@_SETTINGS
@given(data=_mutated())
def test_a_mutated_config_loads_or_lists_what_is_wrong(tmp_path: Path, data: object) -> None:
    _loads_or_lists_its_problems(tmp_path, yaml.safe_dump(data, allow_unicode=True).encode())


@_SETTINGS
@given(cut=st.integers(0, len(SAMPLE_TEXT)), junk=st.text(max_size=20), keep=st.integers(0, 40))
def test_a_cut_or_spliced_config_loads_or_lists_what_is_wrong(
    tmp_path: Path, cut: int, junk: str, keep: int
) -> None:
    text = SAMPLE_TEXT[:cut] + junk + SAMPLE_TEXT[cut + keep :]
    _loads_or_lists_its_problems(tmp_path, text.encode())


@_SETTINGS
@given(raw=st.binary(max_size=300))
def test_any_bytes_load_or_list_what_is_wrong(tmp_path: Path, raw: bytes) -> None:
    _loads_or_lists_its_problems(tmp_path, raw)


def test_the_sample_itself_loads() -> None:
    assert isinstance(load_config(SAMPLE), Config)
