"""Hostile command lines: real commands and options, misspelt, repeated, cut, given values of
the wrong kind or bytes that are not text. Every one ends in an answer (usage, or the error
that names what is wrong, with its exit code), never a traceback."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firebreak.cli.app import COMMANDS, cli

# Usage errors are 2 (click's), like a config that cannot be read; the rest are firebreak's.
ANSWERS = {0, 1, 2, 3, 4, 5}


def _words(top: click.Command) -> list[str]:
    """Every command, subcommand and option name the command knows."""
    words: set[str] = set()
    context = click.Context(top)

    def visit(command: click.Command) -> None:
        for param in command.params:
            words.update(param.opts + param.secondary_opts)
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                words.add(name)
                sub = command.get_command(context, name)
                if sub is not None:
                    visit(sub)

    visit(top)
    return sorted(words)


WORDS = _words(cli)


def _misspelt(word: str, at: int) -> str:
    """The word with one character dropped, doubled or swapped with the next."""
    if len(word) < 2:
        return word + word
    i = at % (len(word) - 1)
    return [
        word[:i] + word[i + 1 :],
        word[:i] + word[i] + word[i:],
        word[:i] + word[i + 1] + word[i] + word[i + 2 :],
    ][at % 3]


def _token() -> st.SearchStrategy[str]:
    known = st.sampled_from(WORDS)
    return st.one_of(
        known,
        st.builds(_misspelt, known, st.integers(0, 1000)),
        st.builds(lambda w, v: f"{w}={v}", known, st.text(max_size=8)),
        st.sampled_from(["--", "-", "", "-1", "1e309", "99999999999999999999", "nan", "--=x"]),
        st.sampled_from(["\udcff\udcfe", "é", "a b", "\n", "$(id)", "../../etc/passwd"]),
        st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=12),
    )


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A config that is not there, and one that loads (three local sites, no restic: what
    needs it ends there, exit 5)."""
    where = tmp_path_factory.mktemp("cli")
    password = where / "password"
    password.write_text("x\n")
    password.chmod(0o600)
    sites = "".join(
        f"  s{n}:\n    repository: {where}/repo{n}\n    password_file: {password}\n"
        f"    location: {{provider: p{n}, region: r{n}, datacenter: d{n}, country: FR}}\n"
        for n in range(3)
    )
    valid = where / "firebreak.yaml"
    valid.write_text(
        f"state_dir: {where}/state\nrestic: {{binary: {where}/no-restic}}\n"
        "placement: {enforce: warn}\n"
        f"sites:\n{sites}sources:\n  www: {{paths: [{where}], sites: [s0, s1, s2]}}\n"
    )
    return [where / "none.yaml", valid]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    which=st.integers(0, 1),
    command=st.sampled_from(sorted(set(COMMANDS) - {"run", "exporter"})),
    data=st.data(),
)
def test_a_hostile_command_line_gets_an_answer_never_a_traceback(
    configs: list[Path], which: int, command: str, data: st.DataObject
) -> None:
    own = cli.get_command(click.Context(cli), command)
    assert own is not None
    # Mostly the command's own words (and names the config holds), so that it runs further.
    likely = st.sampled_from([*_words(own), "www", "s0", "s1", "--json", "--", "1h"])
    tokens = data.draw(st.lists(st.one_of(likely, likely, _token()), max_size=6))
    argv = ["-c", str(configs[which]), command, *tokens]
    result = CliRunner().invoke(cli, argv, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{argv}: {result.exception!r}") from result.exception
    assert result.exit_code in ANSWERS, (argv, result.output)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["run", "exporter"])
def test_the_long_running_commands_answer_a_misspelt_flag(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--hots", "x"])
    assert result.exit_code == 2
    assert "No such option '--hots'" in result.output
