"""Unit tests read the settings' defaults, whatever the shell running them exports."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def no_orchestra_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("ORCHESTRA_")]:
        monkeypatch.delenv(name)
