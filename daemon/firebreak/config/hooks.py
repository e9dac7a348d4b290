"""Commands around a source's cycle: before it, after it, and after it failed."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field, model_validator

from firebreak.config.base import Duration, Strict

DEFAULT_HOOK_TIMEOUT = timedelta(minutes=10)


class HookCommand(Strict):
    """A hook with its own timeout, or one that needs a shell. A plain list of words is
    the same as ``{argv: [...]}``."""

    argv: list[str] | None = Field(
        default=None,
        min_length=1,
        description="The program and its arguments, run without a shell.",
        examples=[["systemctl", "stop", "app"]],
    )
    shell: str | None = Field(
        default=None,
        min_length=1,
        description="A command line for /bin/sh -c, when pipes or redirections are needed.",
        examples=["pg_ctl status || exit 1"],
    )
    timeout: Duration = Field(
        default=DEFAULT_HOOK_TIMEOUT,
        description="Stop it (SIGINT to its process group, SIGKILL 10 s later) after this long.",
    )

    @model_validator(mode="after")
    def _one_way(self) -> HookCommand:
        if (self.argv is None) == (self.shell is None):
            raise ValueError("give either argv (a list of words) or shell (a command line)")
        return self

    @property
    def words(self) -> tuple[str, ...]:
        if self.shell is not None:
            return ("/bin/sh", "-c", self.shell)
        assert self.argv is not None
        return tuple(self.argv)


Hook = Annotated[list[str], Field(min_length=1)] | HookCommand


def as_command(hook: Hook) -> HookCommand:
    return hook if isinstance(hook, HookCommand) else HookCommand(argv=hook)


class Hooks(Strict):
    """Commands run once per cycle of a source, in order. Each gets FIREBREAK_SOURCE,
    FIREBREAK_CYCLE_ID and FIREBREAK_SITES in its environment; after and on_failure also
    FIREBREAK_OUTCOME and FIREBREAK_FAILED_SITES."""

    before: list[Hook] | None = Field(
        default=None,
        description=(
            "Before the cycle. One that fails or times out fails the cycle at every site "
            "(HookFailed): no backup runs."
        ),
        examples=[[["/usr/local/bin/app-freeze"]]],
    )
    after: list[Hook] | None = Field(
        default=None,
        description="After every site has ended, whatever happened.",
        examples=[[["/usr/local/bin/app-thaw"]]],
    )
    on_failure: list[Hook] | None = Field(
        default=None,
        description="After every site has ended, when the cycle did not succeed everywhere.",
    )

    def effective(self, defaults: Hooks) -> Hooks:
        """These hooks, each phase not given taken from the defaults."""
        return Hooks(
            before=self.before if self.before is not None else defaults.before,
            after=self.after if self.after is not None else defaults.after,
            on_failure=self.on_failure if self.on_failure is not None else defaults.on_failure,
        )
