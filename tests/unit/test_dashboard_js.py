"""The dashboard's own unit tests (dashboard/test/*.test.ts: the REST client against a real HTTP server on
127.0.0.1, validation messages by field, the CSV), run by Node's test runner inside the Python suite."""

from __future__ import annotations

import shutil
import subprocess

from emotionctl.dashboard.site import REPO_ROOT

DASHBOARD = REPO_ROOT / "dashboard"


def test_the_dashboards_node_tests_pass() -> None:
    node = shutil.which("node")
    assert node is not None, "node is missing: the dashboard needs Node.js >= 20.19 (make setup)"
    assert (DASHBOARD / "node_modules" / "esbuild").is_dir(), "the dashboard's packages are missing: make setup"
    run = subprocess.run([node, "test/run.mjs"], cwd=DASHBOARD, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ℹ fail 0" in run.stdout and "ℹ pass 0" not in run.stdout, run.stdout
