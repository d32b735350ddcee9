"""The one manifest loader: offline override, on-disk cache keyed by URL, clear network errors,
parsing, pure transformations and typed resources with names unique per cluster and namespace."""

import io
import os
import urllib.error

import pulumi
import pytest

from components import manifests as M
from harness import run, stack_config

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "istio")
URL = M.istio_addon_url("1.30.3")


class FakeOpener:
    def __init__(self, text=None, error=None):
        self.text, self.error, self.urls = text, error, []

    def __call__(self, url, timeout):
        self.urls.append((url, timeout))
        if self.error:
            raise self.error
        return io.BytesIO(self.text.encode())


def test_urls_are_pinned_to_the_release_and_commit():
    assert URL == "https://raw.githubusercontent.com/istio/istio/1.30.3/samples/addons/prometheus.yaml"
    assert M.travels_url("7ee391299c08f0770e3f0da4fba0fc1aca8948f2", "travels-v2.yaml") == (
        "https://raw.githubusercontent.com/kiali/demos/7ee391299c08f0770e3f0da4fba0fc1aca8948f2/travels/travels-v2.yaml")


def test_offline_dir_wins_and_never_touches_the_network(tmp_path):
    opener = FakeOpener(error=AssertionError("network used"))
    src = M.ManifestSource(cache_dir=str(tmp_path / "cache"), offline_dir=FIXTURE_DIR)
    docs = M.parse(src.fetch(URL, opener=opener))
    assert {d["kind"] for d in docs} >= {"ConfigMap", "Service", "Deployment"}
    assert opener.urls == []
    # The full host/path layout is found as well as the bare file name.
    nested = tmp_path / "off" / "raw.githubusercontent.com/istio/istio/1.30.3/samples/addons"
    nested.mkdir(parents=True)
    (nested / "prometheus.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nested}\n")
    src2 = M.ManifestSource(cache_dir=str(tmp_path / "cache"), offline_dir=str(tmp_path / "off"))
    assert src2.load(URL)[0]["metadata"]["name"] == "nested"


def test_missing_offline_file_names_the_url_the_paths_and_the_key(tmp_path):
    src = M.ManifestSource(cache_dir=str(tmp_path), offline_dir=str(tmp_path / "empty"))
    with pytest.raises(M.ManifestError) as e:
        src.fetch(URL)
    msg = str(e.value)
    assert URL in msg and "kiali-multicluster:manifests.offlineDir" in msg and "prometheus.yaml" in msg


def test_fetch_caches_by_url_and_reuses_the_cache(tmp_path):
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
    src = M.ManifestSource(cache_dir=str(tmp_path / "cache"))
    first = FakeOpener(text)
    assert src.fetch(URL, opener=first) == text
    assert [u for u, _ in first.urls] == [URL] and first.urls[0][1] == M.FETCH_TIMEOUT_SECONDS
    assert os.path.isfile(src.cache_path(URL))
    second = FakeOpener(error=AssertionError("fetched twice"))
    assert src.fetch(URL, opener=second) == text and second.urls == []
    # Another version is another URL, hence another cache entry.
    other = M.istio_addon_url("1.29.0")
    assert src.cache_path(other) != src.cache_path(URL)
    third = FakeOpener("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    assert "name: b" in src.fetch(other, opener=third) and len(third.urls) == 1


def test_network_failure_names_the_url_and_the_override(tmp_path):
    src = M.ManifestSource(cache_dir=str(tmp_path / "cache"))
    with pytest.raises(M.ManifestError) as e:
        src.fetch(URL, opener=FakeOpener(error=urllib.error.URLError("no route to host")))
    msg = str(e.value)
    assert URL in msg and "no route to host" in msg
    assert "kiali-multicluster:manifests.offlineDir" in msg
    assert "raw.githubusercontent.com/istio/istio/1.30.3/samples/addons/prometheus.yaml" in msg
    assert not os.path.exists(src.cache_path(URL))  # nothing half-written is cached


def test_parse_flattens_lists_and_drops_empty_documents():
    text = """
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}
- {apiVersion: v1, kind: Secret, metadata: {name: b}}
---
---
apiVersion: v1
kind: Service
metadata: {name: c}
"""
    assert [(d["kind"], d["metadata"]["name"]) for d in M.parse(text)] == [("ConfigMap", "a"), ("Secret", "b"), ("Service", "c")]


@pytest.mark.parametrize("text, words", [
    ("a: [1, 2", "not valid YAML"),
    ("- just\n- a list\n", "without apiVersion/kind"),
    ("kind: ConfigMap\nmetadata: {name: x}\n", "without apiVersion/kind"),
])
def test_parse_rejects_what_is_not_a_manifest(text, words):
    with pytest.raises(M.ManifestError, match=words):
        M.parse(text, source="some.yaml")


def test_in_namespace_is_pure_and_leaves_cluster_scoped_objects_alone():
    docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}]
    out = M.in_namespace(docs, "travel-agency")
    assert out[0]["metadata"]["namespace"] == "travel-agency" and "namespace" not in out[1]["metadata"]
    assert "namespace" not in docs[0]["metadata"]  # input untouched


def test_resource_names_are_unique_per_cluster_namespace_and_kind():
    svc = {"kind": "Service", "metadata": {"name": "travels", "namespace": "travel-agency"}}
    other_ns = {"kind": "Service", "metadata": {"name": "travels", "namespace": "travel-portal"}}
    dep = {"kind": "Deployment", "metadata": {"name": "travels", "namespace": "travel-agency"}}
    crole = {"kind": "ClusterRole", "metadata": {"name": "prometheus"}}
    names = {M.resource_name(p, d) for p in ("east", "west") for d in (svc, other_ns, dep, crole)}
    assert len(names) == 8
    assert M.resource_name("west", svc) == "west-service-travel-agency-travels"
    assert M.resource_name("east", crole) == "east-clusterrole-prometheus"


def _create_program(docs):
    import pulumi_kubernetes as k8s

    def program():
        prov = k8s.Provider("east-k8s", kubeconfig="{}")
        M.create("east-x", docs, pulumi.ResourceOptions(provider=prov))

    return program


def test_create_registers_typed_resources_with_every_field():
    with open(os.path.join(FIXTURE_DIR, "prometheus.yaml"), encoding="utf-8") as f:
        docs = M.parse(f.read())
    res = run(_create_program(docs), stack_config())
    types = sorted(r.typ for r in res.records if r.typ.startswith("kubernetes:") and r.typ != "pulumi:providers:kubernetes")
    assert types == sorted([
        "kubernetes:core/v1:ServiceAccount", "kubernetes:core/v1:ConfigMap", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", "kubernetes:core/v1:Service", "kubernetes:apps/v1:Deployment",
    ])
    crb = res.named("east-x-clusterrolebinding-prometheus").plain
    assert crb["roleRef"]["name"] == "prometheus" and crb["subjects"][0]["namespace"] == "istio-system"
    assert res.named("east-x-configmap-istio-system-prometheus").plain["data"]["prometheus.yml"].startswith("global:")
    assert all(r.provider_name == "east-k8s" for r in res.records if r.typ.startswith("kubernetes:core"))
    assert res.mocks.calls == []  # no kubernetes:yaml:decode or any other invoke


@pytest.mark.parametrize("docs, words", [
    ([{"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g"}}], "no typed resource"),
    ([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "bogus": 1}], "unexpected top-level field 'bogus'"),
    ([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}}] * 2, "appears twice"),
])
def test_create_refuses_what_it_cannot_represent(docs, words):
    with pytest.raises(Exception, match=words):
        run(_create_program(docs), stack_config())
