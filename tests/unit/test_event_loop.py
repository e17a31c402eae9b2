import asyncio
import sys

import pytest

from orchestrator import event_loop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not installed on Windows")
def test_uvloop_runs_the_coroutine_on_uvloop() -> None:
    assert event_loop.run(_loop_module(), "uvloop").startswith("uvloop")


def test_asyncio_runs_the_coroutine_on_the_standard_loop() -> None:
    assert event_loop.run(_loop_module(), "asyncio").startswith("asyncio")


def test_the_settings_take_the_loop_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.errors import SettingsError
    from orchestrator.settings import load_settings

    assert load_settings().event_loop == "uvloop"
    monkeypatch.setenv("ORCHESTRA_EVENT_LOOP", "asyncio")
    assert load_settings().event_loop == "asyncio"
    monkeypatch.setenv("ORCHESTRA_EVENT_LOOP", "trio")
    with pytest.raises(SettingsError, match="ORCHESTRA_EVENT_LOOP"):
        load_settings()
