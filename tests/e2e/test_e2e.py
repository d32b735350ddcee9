"""Opt-in end-to-end run on real clusters: make up -> make verify -> make destroy -> no profile left.

Runs only with KMC_E2E=1 (``make e2e``) and docker, minikube, kubectl and the Pulumi CLI on PATH.
Otherwise the whole module is skipped on purpose: this is an opt-in, not a missing test tool, so
it does not go through ``tools.need`` and CI (which never sets KMC_E2E) does not count it.

KMC_E2E_STACK picks the stack (default east-west). ``make destroy`` runs even when up or verify
failed; each step's output goes to a log file whose tail is shown on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

REQUIRED = ("docker", "minikube", "kubectl", "pulumi")
if os.environ.get("KMC_E2E") != "1":
    pytest.skip("opt-in end-to-end run: set KMC_E2E=1 (make e2e); it builds real minikube clusters", allow_module_level=True)
_missing = [t for t in REQUIRED if shutil.which(t) is None]
if _missing:
    pytest.skip(f"KMC_E2E=1, but {', '.join(_missing)} not on PATH: the end-to-end run needs {', '.join(REQUIRED)}",
                allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from components.config import parse, read_stack_file  # noqa: E402
from tools.minikube_ops import minikube_home  # noqa: E402

pytestmark = pytest.mark.e2e
STACK = os.environ.get("KMC_E2E_STACK", "east-west")
# Upper bounds, not expectations: first image pulls on a laptop dominate `up`.
UP_TIMEOUT = 75 * 60
VERIFY_TIMEOUT = 20 * 60
DESTROY_TIMEOUT = 30 * 60


def make(target: str, log_dir, timeout: int) -> tuple[int, str]:
    log = log_dir / f"{target}.log"
    with open(log, "w", encoding="utf-8") as f:
        try:
            rc = subprocess.run(["make", target, f"STACK={STACK}"], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = -1
            f.write(f"\n[e2e] make {target} did not finish within {timeout}s\n")
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return rc, "\n".join(lines[-60:]) + f"\n[e2e] full log: {log}"


def stack_profiles() -> list[str]:
    cfg = parse(read_stack_file(os.path.join(ROOT, f"Pulumi.{STACK}.yaml")))
    return [c.name for c in cfg.clusters if c.minikube is not None]


def leftover_profiles(names: list[str]) -> list[str]:
    """Profiles of the stack that minikube, its home directory or docker still know."""
    left = set()
    proc = subprocess.run(["minikube", "profile", "list", "-o", "json"], capture_output=True, text=True, timeout=120)
    try:
        doc = json.loads(proc.stdout or "{}")
    except ValueError:
        doc = {}
    for p in (doc.get("valid") or []) + (doc.get("invalid") or []):
        if p.get("Name") in names:
            left.add(p["Name"])
    for n in names:
        if os.path.exists(os.path.join(minikube_home(), "profiles", n)):
            left.add(n)
        if subprocess.run(["docker", "container", "inspect", n], capture_output=True, timeout=60).returncode == 0:
            left.add(n)
    return sorted(left)


def test_up_verify_destroy(tmp_path):
    profiles = stack_profiles()
    assert profiles, f"stack {STACK} has no minikube cluster to tear down"
    failures = []
    try:
        rc, tail = make("up", tmp_path, UP_TIMEOUT)
        if rc != 0:
            failures.append(f"make up failed ({rc}):\n{tail}")
        else:
            rc, tail = make("verify", tmp_path, VERIFY_TIMEOUT)
            if rc != 0:
                failures.append(f"make verify failed ({rc}):\n{tail}")
    finally:
        rc, tail = make("destroy", tmp_path, DESTROY_TIMEOUT)
        if rc != 0:
            failures.append(f"make destroy failed ({rc}):\n{tail}")
    left = leftover_profiles(profiles)
    if left:
        failures.append(f"minikube profile(s) of stack {STACK} left after destroy: {', '.join(left)} "
                        f"(remove with: minikube delete -p {' -p '.join(left)})")
    assert not failures, "\n\n".join(failures)
