"""Tests that need an external tool skip without it locally and fail without it in CI."""

import os
import shutil

import pytest


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path:
        return path
    msg = f"{tool} is not installed (CI installs it: see .ci/run)"
    if os.environ.get("KMC_REQUIRE_TOOLS"):
        pytest.fail(msg)
    pytest.skip(msg)
