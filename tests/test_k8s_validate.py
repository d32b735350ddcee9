"""Every core Kubernetes object the program renders validates (strict) for the Kubernetes version minikube runs.

The objects are taken from the whole program under mocks (whatever it registers), rebuilt as the
API server would receive them. Helm releases render their objects inside the chart and are not
objects themselves; Istio custom resources have no schema in kubernetes-validate and are skipped
by (group, kind), explicitly: an unknown kind fails instead of being skipped silently.
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

import harness
from tools import graph as G

# Custom resources whose CRDs come with a chart (kubernetes-validate knows only built-in kinds).
CRD_KINDS = {
    ("networking.istio.io", "Gateway"),
    ("networking.istio.io", "VirtualService"),
    ("networking.istio.io", "DestinationRule"),
    ("networking.istio.io", "ServiceEntry"),
    ("networking.istio.io", "Sidecar"),
    ("security.istio.io", "PeerAuthentication"),
    ("security.istio.io", "AuthorizationPolicy"),
    ("telemetry.istio.io", "Telemetry"),
    ("kiali.io", "Kiali"),
}
NOT_OBJECTS = {"kubernetes:helm.sh/v3:Release"}  # a release, not an object


def api_version_of(typ: str) -> str:
    """``kubernetes:apps/v1:Deployment`` -> ``apps/v1``; core -> ``v1``."""
    group_version = typ.split(":")[1]
    return group_version.removeprefix("core/")


def rendered_objects(result: harness.Result) -> list[tuple[str, dict]]:
    """(resource, object) for every Kubernetes object the program creates itself."""
    out = []
    inputs = G.inputs_by_urn(result.requests, result.records)
    for urn, q in result.requests.items():
        typ = q["type"]
        if not typ.startswith("kubernetes:") or q["read"] or typ in NOT_OBJECTS:
            continue
        doc = copy.deepcopy(harness.unwrap(inputs[urn]))
        doc.setdefault("apiVersion", api_version_of(typ))
        doc.setdefault("kind", typ.rsplit(":", 1)[-1].removesuffix("Patch"))
        out.append((G.short(urn), doc))
    return out


def kubernetes_version() -> str:
    return harness.stack_config()["versions"]["kubernetes"].removeprefix("v")


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> list[tuple[str, dict]]:
    objs = rendered_objects(harness.run_main())
    objs += [(f"existing-west {n}", d) for n, d in rendered_objects(harness.run_main(harness.existing_west()))]
    return objs




def problems(name: str, doc: dict, version: str, patch: bool) -> list[str]:
    group = doc["apiVersion"].rsplit("/", 1)[0] if "/" in doc["apiVersion"] else ""
    if (group, doc["kind"]) in CRD_KINDS:
        return []
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name}: no schema for {doc['apiVersion']}/{doc['kind']} in Kubernetes {version}: "
                "a removed API, or a CRD kind to add to CRD_KINDS"]
    except kubernetes_validate.ValidationError as e:
        if patch and e.validator == "required":
            return []  # a patch names only the fields it owns
        where = "/".join(str(p) for p in e.absolute_path) or "<root>"
        return [f"{name}: {doc['kind']} {(doc.get('metadata') or {}).get('name')}: {where}: {e.message}"]
    return []


def test_the_version_minikube_runs_has_schemas():
    assert kubernetes_validate.validate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
                                        kubernetes_version(), strict=True)


def test_the_validator_rejects_what_the_api_server_would():
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"ports": [{"port": "http"}], "tyep": "LoadBalancer"}}
    assert problems("bad", bad, kubernetes_version(), patch=False)
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}}
    assert "CRD_KINDS" in problems("widget", unknown, kubernetes_version(), patch=False)[0]


def test_every_rendered_object_validates_strictly(objects):
    version = kubernetes_version()
    found = []
    for name, doc in objects:
        found += problems(name, doc, version, patch=name.split("::")[0].endswith("Patch"))
    assert not found, f"invalid for Kubernetes {version} (strict):\n" + "\n".join(found)


def test_the_check_covers_the_core_kinds_the_program_renders(objects):
    kinds = {doc["kind"] for _, doc in objects}
    assert {"Namespace", "Secret", "Service", "Deployment", "ConfigMap"} <= kinds, kinds
