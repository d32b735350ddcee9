"""Command-line tools of the project (minikube_ops, verify, bench) and one test helper.

``need(tool)``: a test that needs an external program (prometheus, shellcheck, ...) calls it;
without the program the test is skipped locally and FAILS when KMC_REQUIRE_TOOLS is set (CI).
It lives here because ``tools`` is the first ``tools`` module on the test path.
"""

import os
import shutil


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path:
        return path
    import pytest

    msg = f"{tool} is not installed (CI installs it: see .ci/run)"
    if os.environ.get("KMC_REQUIRE_TOOLS"):
        pytest.fail(msg)
    pytest.skip(msg)
