"""Direct notifications, for shops without Prometheus: webhooks and dead-man's-switch pings."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator

from firebreak.config.base import Duration, Strict

Event = Literal["success", "partial", "failure", "recovery"]


class Webhook(Strict):
    """An HTTP POST after every cycle whose outcome is in ``on``."""

    url: str = Field(
        pattern=r"^https?://",
        description="Where to POST (may contain ${ENV_VAR} references, for tokens).",
        examples=["https://ntfy.example.net/backups"],
    )
    on: list[Event] = Field(
        default_factory=lambda: list[Event](["failure", "partial", "recovery"]),
        description=(
            "Which cycle outcomes notify: success, partial, failure, and recovery (the first "
            "success after a failure)."
        ),
    )
    template: str | None = Field(
        default=None,
        description=(
            "The body, with $source, $event, $status, $sites_ok, $sites_total, $failed_sites, "
            "$message and $json_message (JSON-escaped, for Slack-style bodies). Default: a JSON "
            "document with all of them."
        ),
        examples=['{"text": "$json_message"}'],
    )
    content_type: str | None = Field(
        default=None,
        description="Content-Type of the body (default: JSON; text/plain with a template).",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request headers; values may contain ${ENV_VAR} references.",
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), description="Give up on the request after this long."
    )


class Healthchecks(Strict):
    """Dead-man's-switch pings (healthchecks.io style): start, success and fail URLs."""

    start: str | None = Field(
        default=None, pattern=r"^https?://", description="GET when a cycle starts."
    )
    success: str | None = Field(
        default=None, pattern=r"^https?://", description="GET when a cycle succeeds."
    )
    fail: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="GET when a cycle fails or is partial.",
    )


class Notify(Strict):
    webhooks: list[Webhook] = Field(default_factory=list, description="Webhooks for every source.")

    @field_validator("webhooks")
    @classmethod
    def _some_event(cls, value: list[Webhook]) -> list[Webhook]:
        for index, hook in enumerate(value):
            if not hook.on:
                raise ValueError(f"webhooks[{index}].on is empty: it would never notify")
        return value
