"""The moto patches: applied on the pinned version only, each one exercised by the self-test."""

from __future__ import annotations

import time

import moto
import pytest

from emotionctl.local import moto_patches
from emotionctl.local.moto_patches import MotoPatchError


def test_patches_apply_and_pass_their_self_test(moto_server):
    moto_patches.apply()
    moto_patches.apply()  # idempotent
    moto_patches.self_test()


def test_a_different_moto_version_is_refused(monkeypatch):
    monkeypatch.setattr(moto_patches, "_applied", False)
    monkeypatch.setattr(moto, "__version__", "99.0.0")
    with pytest.raises(MotoPatchError, match=r"written for moto 5\.2\.5"):
        moto_patches.apply()


def test_self_test_fails_loudly_when_a_patch_is_undone(moto_server, monkeypatch):
    moto_patches.apply()
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback,
        state_task_service_ecs,
    )

    monkeypatch.setattr(state_task_service_callback, "time", time)  # a plain sleep again, not woken by task stops
    with pytest.raises(MotoPatchError, match="patch 3"):
        moto_patches.self_test()
    monkeypatch.undo()

    def no_op(self, parameters, boto_service_name=None, service_action_name=None):
        return None

    monkeypatch.setattr(state_task_service_ecs.StateTaskServiceEcs, "_normalise_parameters", no_op)
    with pytest.raises(MotoPatchError, match="patch 1"):
        moto_patches.self_test()


def test_an_upstream_fix_of_the_ecs_normalisation_is_detected(moto_server, monkeypatch):
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service

    def upstream_fixed(self, parameters, boto_service_name=None, service_action_name=None):
        parameters["cluster"] = parameters.pop("Cluster")

    monkeypatch.setattr(state_task_service.StateTaskService, "_normalise_parameters", upstream_fixed)
    with pytest.raises(MotoPatchError, match="remove patch 1"):
        moto_patches._require_upstream_still_broken(moto_patches._modules())


def test_reporting_an_exit_code_for_an_unknown_task_says_so(moto_server):
    moto_patches.apply()
    assert moto_patches.report_task_exit("arn:aws:ecs:us-east-1:123456789012:task/none/none", 1, "x") is False
