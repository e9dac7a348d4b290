"""Basic auth on /metrics: a refusal takes the same work whether the name exists or not."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from firebreak.metrics import http
from firebreak.metrics.http import BasicAuth

HASHED = bcrypt.hashpw(b"scrape-pw", bcrypt.gensalt(rounds=5)).decode()


def _header(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def test_an_unknown_name_costs_a_bcrypt_check_like_a_wrong_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = BasicAuth({"prometheus": HASHED})
    checked: list[bytes] = []
    real = bcrypt.checkpw

    def counted(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(http.bcrypt, "checkpw", counted)
    assert not auth.allows(_header("prometheus", "wrong"))
    assert not auth.allows(_header("nobody", "scrape-pw"))
    # Two full checks, at the users' cost ($2b$05$), neither of them skipped.
    assert len(checked) == 2
    assert all(hashed.startswith(b"$2b$05$") for hashed in checked)
    assert auth.allows(_header("prometheus", "scrape-pw"))
    assert not auth.allows(None) and not auth.allows("Basic !!!") and not auth.allows("Bearer x")
