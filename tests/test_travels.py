"""TravelsApp: pure renderers, the component under mocks, and the whole program with the east-west stack."""

from __future__ import annotations

import os

import pulumi
import pulumi_kubernetes as k8s
import pytest

import harness
from components import manifests, travels
from components.manifests import ManifestError, ManifestSource

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TRAVELS_FIXTURES = os.path.join(FIXTURES, "travels")
COMMIT = "7ee391299c08f0770e3f0da4fba0fc1aca8948f2"
NS = "kubernetes:core/v1:Namespace"
SVC = "kubernetes:core/v1:Service"
DEP = "kubernetes:apps/v1:Deployment"
SECRET = "kubernetes:core/v1:Secret"


def load_fixtures(*files: str) -> dict[str, list[dict]]:
    src = ManifestSource(offline_dir=TRAVELS_FIXTURES)
    return {f: src.load(manifests.travels_url(COMMIT, f)) for f in files}


# --- pure renderers ------------------------------------------------------------------------------


def test_namespace_doc_turns_injection_on():
    doc = travels.namespace_doc("travel-agency")
    assert doc == {"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "travel-agency", "labels": {"istio-injection": "enabled"}}}
    # Fresh dicts: callers may not mutate a shared label map.
    doc["metadata"]["labels"]["x"] = "y"
    assert travels.namespace_doc("a")["metadata"]["labels"] == {"istio-injection": "enabled"}


def test_remote_services_are_the_six_namespace_sameness_services():
    svcs = travels.remote_services()
    assert [s["metadata"]["name"] for s in svcs] == ["travels", "insurances", "hotels", "flights", "discounts", "cars"]
    for s in svcs:
        name = s["metadata"]["name"]
        assert s["kind"] == "Service" and s["apiVersion"] == "v1"
        assert s["metadata"]["namespace"] == "travel-agency"
        assert s["metadata"]["labels"] == {"app": name}
        assert s["spec"] == {"ports": [{"name": "http", "port": 8000}], "selector": {"app": name}}


def test_render_primary_places_each_file_in_its_namespace():
    plan = travels.render_primary(load_fixtures(*travels.files_for("primary")))
    assert [n["metadata"]["name"] for n in plan.namespaces] == ["travel-agency", "travel-portal", "travel-control"]
    assert all(n["metadata"]["labels"] == {"istio-injection": "enabled"} for n in plan.namespaces)
    keys = {travels.key(d) for d in plan.docs}
    assert {
        "Secret/travel-agency/mysql-credentials", "Service/travel-agency/travels", "Deployment/travel-agency/travels-v1",
        "Deployment/travel-portal/travels", "Service/travel-portal/travels", "Deployment/travel-portal/voyages",
        "Deployment/travel-control/control", "Service/travel-control/control",
    } <= keys
    # Workloads are split from what they read, so they can wait for the injector.
    assert {d["kind"] for d in plan.workloads} == {"Deployment"}
    assert "Deployment" not in {d["kind"] for d in plan.objects}


def test_render_primary_does_not_mutate_the_loaded_documents():
    files = load_fixtures(*travels.files_for("primary"))
    travels.render_primary(files)
    assert all("namespace" not in d["metadata"] for docs in files.values() for d in docs)


def test_render_primary_overrides_a_namespace_an_upstream_file_might_carry():
    files = load_fixtures(*travels.files_for("primary"))
    files["travel_control.yaml"][0]["metadata"]["namespace"] = "default"
    plan = travels.render_primary(files)
    assert "Deployment/travel-control/control" in {travels.key(d) for d in plan.docs}


def test_render_remote_takes_only_the_listed_deployments_plus_the_services():
    files = load_fixtures("travels-v2.yaml", "travels-v3.yaml")
    plan = travels.render_remote(files, ["travels-v2", "travels-v3"])
    assert [n["metadata"]["name"] for n in plan.namespaces] == ["travel-agency"]
    assert [travels.key(d) for d in plan.workloads] == ["Deployment/travel-agency/travels-v2", "Deployment/travel-agency/travels-v3"]
    assert [w["spec"]["template"]["metadata"]["labels"] for w in plan.workloads] == [
        {"app": "travels", "version": "v2"}, {"app": "travels", "version": "v3"}]
    assert sorted(travels.key(d) for d in plan.objects) == sorted(f"Service/travel-agency/{s}" for s in travels.REMOTE_SERVICES)

    only_v3 = travels.render_remote(load_fixtures("travels-v3.yaml"), ["travels-v3"])
    assert [w["metadata"]["name"] for w in only_v3.workloads] == ["travels-v3"]
    assert travels.files_for("remote", ["travels-v3"]) == ["travels-v3.yaml"]


def test_render_remote_selects_by_name_and_rejects_a_file_without_the_deployment():
    v2 = load_fixtures("travels-v2.yaml")["travels-v2.yaml"]
    extra = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated"}}
    plan = travels.render_remote({"travels-v2.yaml": [extra, *v2]}, ["travels-v2"])
    assert "ConfigMap/travel-agency/unrelated" not in {travels.key(d) for d in plan.docs}
    with pytest.raises(ManifestError, match="0 Deployment.*'travels-v2'"):
        travels.render_remote({"travels-v2.yaml": [extra]}, ["travels-v2"])
    with pytest.raises(ManifestError, match="travels-v3.yaml was not loaded"):
        travels.render_remote({"travels-v2.yaml": v2}, ["travels-v3"])


def test_roles_are_validated():
    with pytest.raises(ValueError, match="role"):
        travels.files_for("secondary")
    with pytest.raises(ValueError, match="remote only"):
        travels.files_for("primary", ["travels-v2"])
    with pytest.raises(ValueError, match="at least one deployment"):
        travels.render_remote({}, [])


# --- the component under mocks -------------------------------------------------------------------


def _component_program(role: str, deployments: tuple = ()):
    """The clusters of the east-west stack, a stand-in for the dependency handle, and one TravelsApp."""

    def program():
        from components.cluster import create_clusters
        from components.config import parse

        cfg = parse(harness.stack_config())
        clusters = create_clusters(cfg.clusters, cfg.minikube, cfg.versions.kubernetes,
                                   {c.name: cfg.lb_pool(c) for c in cfg.clusters})
        cluster = clusters["east" if role == "primary" else "west"]
        after = [
            k8s.core.v1.ConfigMap(f"stand-in-{i}", metadata={"name": f"stand-in-{i}", "namespace": "default"},
                                  opts=pulumi.ResourceOptions(provider=cluster.provider))
            for i in range(2)
        ]
        travels.TravelsApp(f"{cluster.name}-travels", travels.TravelsAppArgs(
            cluster=cluster, source=ManifestSource(offline_dir=TRAVELS_FIXTURES), commit=COMMIT,
            role=role, deployments=deployments, after=after,
        ))

    return harness.run(program, harness.stack_config())


@pytest.fixture(scope="module")
def primary_run():
    return _component_program("primary")


@pytest.fixture(scope="module")
def remote_run():
    return _component_program("remote", ("travels-v2", "travels-v3"))


def _children(res, cluster: str) -> list:
    return [r for r in res.records if r.typ.startswith("kubernetes:") and r.name.startswith(f"{cluster}-travels-")]


def test_component_type_and_unique_cluster_qualified_names(primary_run, remote_run):
    for res, cluster in ((primary_run, "east"), (remote_run, "west")):
        comp = res.named(f"{cluster}-travels")
        assert comp.typ == travels.TYPE
        names = [r.name for r in _children(res, cluster)]
        assert len(names) == len(set(names))
    # `travels` is a Service in two namespaces of the primary and on the remote.
    primary_names = {r.name for r in _children(primary_run, "east")}
    assert {"east-travels-service-travel-agency-travels", "east-travels-service-travel-portal-travels",
            "east-travels-deployment-travel-portal-travels"} <= primary_names
    assert "west-travels-service-travel-agency-travels" in {r.name for r in _children(remote_run, "west")}
    assert primary_run.mocks.calls == [] and remote_run.mocks.calls == []  # typed resources, no invokes


def test_every_child_uses_its_cluster_provider_and_is_deleted_with_it(primary_run, remote_run):
    for res, cluster in ((primary_run, "east"), (remote_run, "west")):
        lifecycle = res.urn_of(f"{cluster}-minikube", "command:local:Command")
        comp = res.urn_of(f"{cluster}-travels", travels.TYPE)
        children = _children(res, cluster)
        assert children
        for rec in children:
            urn = res.urn_of(rec.name, rec.typ)
            assert rec.provider_name == f"{cluster}-k8s", rec.name
            assert res.requests[urn]["parent"] == comp
            assert res.requests[urn]["deletedWith"] == lifecycle, rec.name


def test_primary_namespaces_labelled_and_objects_in_their_namespaces(primary_run):
    namespaces = {r.plain["metadata"]["name"]: r for r in primary_run.of_type(NS)}
    assert set(namespaces) == {"travel-agency", "travel-portal", "travel-control"}
    assert all(r.plain["metadata"]["labels"] == {"istio-injection": "enabled"} for r in namespaces.values())
    placed = {(r.typ, r.plain["metadata"]["namespace"], r.plain["metadata"]["name"]) for r in _children(primary_run, "east")
              if r.typ != NS}
    assert (DEP, "travel-agency", "travels-v1") in placed
    assert (DEP, "travel-portal", "travels") in placed
    assert (SVC, "travel-portal", "travels") in placed
    assert (DEP, "travel-control", "control") in placed
    assert (SECRET, "travel-agency", "mysql-credentials") in placed


def test_workloads_wait_for_namespace_config_and_the_dependency_handle(primary_run, remote_run):
    for res, cluster in ((primary_run, "east"), (remote_run, "west")):
        handles = [res.urn_of(f"stand-in-{i}") for i in range(2)]
        deployments = [r for r in _children(res, cluster) if r.typ == DEP]
        assert deployments
        for dep in deployments:
            urn = res.urn_of(dep.name, DEP)
            ns = res.urn_of(f"{cluster}-travels-namespace-{dep.plain['metadata']['namespace']}", NS)
            assert res.depends_on(urn, ns, transitive=False), f"{dep.name} must wait for its labelled namespace"
            for h in handles:
                assert res.depends_on(urn, h, transitive=False), f"{dep.name} must wait for the Istio handle"
    secret = primary_run.urn_of("east-travels-secret-travel-agency-mysql-credentials", SECRET)
    assert primary_run.depends_on(primary_run.urn_of("east-travels-deployment-travel-agency-travels-v1", DEP), secret,
                                  transitive=False)
    # Namespaces and Services do not wait for Istio: only pods need the injector.
    for res, cluster in ((primary_run, "east"), (remote_run, "west")):
        for rec in _children(res, cluster):
            if rec.typ in (NS, SVC):
                urn = res.urn_of(rec.name, rec.typ)
                assert not any(res.depends_on(urn, res.urn_of(f"stand-in-{i}")) for i in range(2)), rec.name
            if rec.typ == SVC:
                ns = res.urn_of(f"{cluster}-travels-namespace-{rec.plain['metadata']['namespace']}", NS)
                assert res.depends_on(res.urn_of(rec.name, rec.typ), ns, transitive=False)


def test_remote_gets_namespace_listed_deployments_and_six_services(remote_run):
    children = _children(remote_run, "west")
    assert [r.plain["metadata"] for r in children if r.typ == NS] == [
        {"name": "travel-agency", "labels": {"istio-injection": "enabled"}}]
    deps = sorted((r.plain["metadata"]["namespace"], r.plain["metadata"]["name"]) for r in children if r.typ == DEP)
    assert deps == [("travel-agency", "travels-v2"), ("travel-agency", "travels-v3")]
    svcs = {r.plain["metadata"]["name"]: r.plain for r in children if r.typ == SVC}
    assert set(svcs) == set(travels.REMOTE_SERVICES)
    for name, svc in svcs.items():
        assert svc["metadata"]["namespace"] == "travel-agency"
        assert svc["spec"]["selector"] == {"app": name}
        assert [(p["name"], int(p["port"])) for p in svc["spec"]["ports"]] == [("http", 8000)]


# --- the whole program (east-west stack) ---------------------------------------------------------


@pytest.fixture(scope="module")
def whole():
    return harness.run_main(harness.stack_config())  # manifests from the fixtures (harness default)


def test_whole_program_places_travels_on_the_right_clusters(whole):
    east = [r for r in whole.records if r.name.startswith("east-travels-") and r.typ.startswith("kubernetes:")]
    west = [r for r in whole.records if r.name.startswith("west-travels-") and r.typ.startswith("kubernetes:")]
    assert {r.provider_name for r in east} == {"east-k8s"}
    assert {r.provider_name for r in west} == {"west-k8s"}
    assert {r.plain["metadata"]["name"] for r in east if r.typ == NS} == {"travel-agency", "travel-portal", "travel-control"}
    assert all(r.plain["metadata"]["labels"]["istio-injection"] == "enabled" for r in east + west if r.typ == NS)
    assert {r.plain["metadata"]["name"] for r in west if r.typ == NS} == {"travel-agency"}
    assert sorted(r.plain["metadata"]["name"] for r in west if r.typ == DEP) == ["travels-v2", "travels-v3"]
    assert {r.plain["metadata"]["name"] for r in west if r.typ == SVC} == set(travels.REMOTE_SERVICES)
    assert ("travel-portal", "travels") in {(r.plain["metadata"]["namespace"], r.plain["metadata"]["name"])
                                           for r in east if r.typ == DEP}
    for rec in east + west:
        cluster = rec.name.split("-", 1)[0]
        urn = whole.urn_of(rec.name, rec.typ)
        assert whole.effective_deleted_with(urn) == whole.urn_of(f"{cluster}-minikube", "command:local:Command")


def test_whole_program_orders_workloads_after_istio(whole):
    istiod = whole.urn_of("east-istiod", "kubernetes:helm.sh/v3:Release")
    west_istiod = whole.urn_of("west-istiod", "kubernetes:helm.sh/v3:Release")
    remote_secret = whole.urn_of("west-istio-remote-secret")
    ca_root = whole.urn_of("west-istio-ca-root-cert", "command:local:Command")
    for rec in whole.of_type(DEP):
        urn = whole.urn_of(rec.name, DEP)
        if rec.name.startswith("east-travels-"):
            assert whole.depends_on(urn, istiod, transitive=False), rec.name
        elif rec.name.startswith("west-travels-"):
            for handle in (west_istiod, remote_secret, ca_root):
                assert whole.depends_on(urn, handle, transitive=False), rec.name
            # The remote workloads never go ahead of the primary's istiod either (through expose-istiod).
            assert whole.depends_on(urn, istiod), rec.name
    assert whole.outputs["travels"][0] == {
        "east": {"namespaces": ["travel-agency", "travel-portal", "travel-control"],
                 "deployments": ["travel-agency/travels-v1", "travel-agency/cars-v1", "travel-portal/travels",
                                 "travel-portal/voyages", "travel-control/control"]},
        "west": {"namespaces": ["travel-agency"], "deployments": ["travel-agency/travels-v2", "travel-agency/travels-v3"]},
    }


def test_a_remote_without_travels_gets_no_travels_objects():
    cfg = harness.stack_config()
    cfg["remotes"] = [{k: v for k, v in r.items() if k != "travels"} for r in cfg["remotes"]]
    res = harness.run_main(cfg)
    assert not [r for r in res.records if r.name.startswith("west-travels")]
    assert [r for r in res.records if r.name.startswith("east-travels-")]
    assert set(res.outputs["travels"][0]) == {"east"}
