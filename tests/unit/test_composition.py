"""One composition root pattern: collaborators built once per process, injected in tests, settings validated."""

from __future__ import annotations

import pytest
from emotion_shared.composition import CompositionRoot
from emotion_shared.config import ConfigError
from emotion_shared.sweeper import SweeperSettings


def test_a_root_builds_once_and_an_override_is_undone_after_its_block() -> None:
    builds: list[int] = []

    def build() -> dict[str, int]:
        builds.append(1)
        return {"n": len(builds)}

    root = CompositionRoot("test", build)
    assert builds == []  # nothing at import: built at the first invocation (cold start)
    first = root.get()
    assert root.get() is first and builds == [1]
    with root.override({"n": 99}) as injected:
        assert root.get() is injected
    assert root.get() is first and builds == [1]


def test_an_override_before_the_first_build_leaves_the_root_unbuilt() -> None:
    root: CompositionRoot[str] = CompositionRoot("test", lambda: "built")
    with root.override("injected"):
        assert root.get() == "injected"
    assert "built=False" in repr(root)
    assert root.get() == "built"


def test_sweeper_settings_are_env_settings_with_their_own_label() -> None:
    assert SweeperSettings.from_env({"ECS_CLUSTER": "c"}).provisioning_grace_seconds == 300
    with pytest.raises(ConfigError, match="invalid sweeper configuration: PROVISIONING_GRACE_SECONDS"):
        SweeperSettings.from_env({"PROVISIONING_GRACE_SECONDS": "-1"})
