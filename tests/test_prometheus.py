"""PrometheusFederation: the pure federation job and config, the addon per cluster role, and the
component under mocks (providers, deleted_with, LoadBalancer after MetalLB, one ConfigMap owner).

The real-Prometheus checks (promtool, a federation on loopback) are in test_federation_real.py.
"""

import asyncio
import copy
import gc
import os

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components import manifests as M
from components import prometheus as P
from harness import offline_fixtures_dir, run, stack_config

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
ADDON_FIXTURE = os.path.join(FIXTURES, "istio", "prometheus.yaml")
WEST_PROM = "192.168.50.31:9090"  # west pool 192.168.50.30-39: the mocks give istio-system/prometheus start + 1


# --- shared helpers (test_kiali.py imports them) ---------------------------------------------------


def fixture_docs() -> list[dict]:
    with open(ADDON_FIXTURE, encoding="utf-8") as f:
        return M.parse(f.read())


def fixture_prometheus_yml() -> str:
    return M.select(fixture_docs(), "ConfigMap", "prometheus")[0]["data"]["prometheus.yml"]




EXTRA_REMOTES = [("north", "192.168.50.4", "40-49"), ("south", "192.168.50.5", "50-59")]


def stack(tmp_path, remotes: int = 1) -> dict:
    """The east-west stack config, offline, optionally with more remotes (up to 3)."""
    cfg = copy.deepcopy(stack_config())
    cfg["manifests"] = {"offlineDir": offline_fixtures_dir(), "cacheDir": str(tmp_path / "cache")}
    west = cfg["remotes"][0]
    for i, (name, ip, lb) in enumerate(EXTRA_REMOTES[: remotes - 1]):
        r = copy.deepcopy(west)
        r.update(name=name, network=f"network{3 + i}", loadBalancerRange=lb)
        r["minikube"]["staticIp"] = ip
        r.pop("travels", None)
        cfg["remotes"].append(r)
    return cfg


def observability_program():
    """Clusters plus sections 5's components, with a Namespace standing in for each istiod Release."""

    def program():
        from components import config as stack_config_mod
        from components.cluster import create_clusters
        from components.kiali import KialiServer, KialiServerArgs
        from components.manifests import ManifestSource
        from components.prometheus import PrometheusFederation, PrometheusFederationArgs

        cfg = stack_config_mod.load()
        source = ManifestSource(cache_dir=cfg.manifests.cache_dir, offline_dir=cfg.manifests.offline_dir)
        clusters = create_clusters(cfg.clusters, cfg.minikube, cfg.versions.kubernetes, {c.name: cfg.lb_pool(c) for c in cfg.clusters})
        primary = clusters[cfg.primary.name]
        remotes = [clusters[r.name] for r in cfg.remotes]
        istiod = {n: k8s.core.v1.Namespace(f"{n}-istiod-stand-in", metadata={"name": "istio-system"}, opts=c.opts(c))
                  for n, c in clusters.items()}
        prometheus = PrometheusFederation("prometheus", PrometheusFederationArgs(
            primary=primary, remotes=remotes, source=source, istio_version=cfg.versions.istio,
            after={n: [r] for n, r in istiod.items()},
        ))
        kiali = KialiServer("kiali", KialiServerArgs(
            primary=primary, remotes=remotes, version=cfg.versions.kiali, spec=cfg.kiali,
            prometheus_url=prometheus.primary_url, istiod=istiod[primary.name],
            remote_after={r.name: [istiod[r.name]] for r in remotes},
        ))
        pulumi.export("kialiUrl", kiali.url)
        pulumi.export("kialiPortForward", kiali.port_forward_command)
        pulumi.export("prometheusUrl", prometheus.primary_url)
        pulumi.export("remotePrometheus", prometheus.remote_addresses)

    return program


def jobs_of(prometheus_yml: str) -> dict[str, dict]:
    return {j["job_name"]: j for j in yaml.safe_load(prometheus_yml)["scrape_configs"]}


def addon_records(res, cluster: str):
    return [r for r in res.records if r.name.startswith(f"{cluster}-prometheus-")]


# --- pure: federation job and config ---------------------------------------------------------------


def test_federation_job_has_exactly_kialis_shape():
    assert P.federation_job("west", WEST_PROM) == {
        "job_name": "federate-west",
        "scrape_interval": "15s",
        "honor_labels": True,
        "metrics_path": "/federate",
        "params": {"match[]": ['{job="kubernetes-pods"}']},
        "static_configs": [{"targets": ["192.168.50.31:9090"], "labels": {"cluster": "west"}}],
    }


@pytest.mark.parametrize("address", ["192.168.50.31", "", "http://192.168.50.31:9090", None])
def test_federation_job_needs_host_and_port(address):
    with pytest.raises(ValueError, match="host:port"):
        P.federation_job("west", address)


def test_with_federation_puts_jobs_first_and_keeps_everything_else():
    text = fixture_prometheus_yml()
    jobs = [P.federation_job("west", WEST_PROM), P.federation_job("north", "192.168.50.41:9090")]
    out = yaml.safe_load(P.with_federation(text, jobs))
    before = yaml.safe_load(text)
    assert out["scrape_configs"][:2] == jobs
    assert out["scrape_configs"][2:] == before["scrape_configs"]  # every addon job unchanged, in order
    assert {k: v for k, v in out.items() if k != "scrape_configs"} == {k: v for k, v in before.items() if k != "scrape_configs"}
    assert list(out) == list(before)  # key order kept (rule_files stays after scrape_configs)
    assert "federate" not in text  # input untouched


def test_with_federation_refuses_duplicate_jobs():
    text = fixture_prometheus_yml()
    with pytest.raises(ValueError, match="duplicate scrape jobs: federate-west"):
        P.with_federation(text, [P.federation_job("west", WEST_PROM)] * 2)
    once = P.with_federation(text, [P.federation_job("west", WEST_PROM)])
    with pytest.raises(ValueError, match="federate-west"):
        P.with_federation(once, [P.federation_job("west", WEST_PROM)])
    with pytest.raises(ValueError, match="kubernetes-pods"):
        P.with_federation(text, [{"job_name": "kubernetes-pods"}])


# --- pure: the addon per role -------------------------------------------------------------------------


def test_addon_for_a_remote_only_turns_the_service_into_a_load_balancer():
    docs = fixture_docs()
    out = P.addon_docs(docs, remote=True)
    assert [(d["kind"], d["metadata"]["name"]) for d in out] == [(d["kind"], d["metadata"]["name"]) for d in docs]
    svc = M.select(out, "Service", "prometheus")[0]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["ports"][0]["port"] == 9090
    changed = [d for d, o in zip(docs, out) if d != o]
    assert [d["kind"] for d in changed] == ["Service"]
    assert M.select(docs, "Service")[0]["spec"]["type"] == "ClusterIP"  # input untouched


def test_addon_for_the_primary_only_adds_federation_jobs():
    docs = fixture_docs()
    out = P.addon_docs(docs, federate={"west": WEST_PROM})
    assert M.select(out, "Service")[0]["spec"]["type"] == "ClusterIP"
    cm, cm0 = M.select(out, "ConfigMap")[0], M.select(docs, "ConfigMap")[0]
    assert {k: v for k, v in cm["data"].items() if k != "prometheus.yml"} == {k: v for k, v in cm0["data"].items() if k != "prometheus.yml"}
    assert jobs_of(cm["data"]["prometheus.yml"]) == {"federate-west": P.federation_job("west", WEST_PROM),
                                                     **jobs_of(cm0["data"]["prometheus.yml"])}
    assert [d for d, o in zip(docs, out) if d != o] == [cm0]
    assert all(d.get("metadata", {}).get("namespace") == "istio-system"
               for d in out if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"))


@pytest.mark.parametrize("drop", P.ADDON_KINDS)
def test_an_addon_missing_an_object_fails_clearly(drop):
    docs = [d for d in fixture_docs() if d["kind"] != drop]
    with pytest.raises(M.ManifestError, match=f"missing {drop}"):
        P.addon_docs(docs)


def test_no_address_from_metallb_fails_clearly():
    class S:  # the shape of a typed ServiceStatus
        load_balancer = type("LB", (), {"ingress": []})()

    with pytest.raises(ValueError, match="west: Service istio-system/prometheus .* no external address.*metallb-system"):
        P.lb_address("west", S())
    assert P.lb_address("west", type("St", (), {"load_balancer": type("LB", (), {"ingress": [
        type("I", (), {"ip": "192.168.50.31", "hostname": None})()]})()})()) == WEST_PROM


# --- the component under mocks --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def east_west(tmp_path_factory):
    return run(observability_program(), stack(tmp_path_factory.mktemp("ew")))


def test_the_addon_lands_on_every_cluster_through_its_provider(east_west):
    res = east_west
    for cluster in ("east", "west"):
        recs = addon_records(res, cluster)
        kinds = sorted(r.typ.split(":")[-1] for r in recs)
        assert kinds == sorted(P.ADDON_KINDS)
        for r in recs:
            assert r.provider_name == f"{cluster}-k8s"
            assert r.plain["metadata"]["name"] == "prometheus"
            if r.typ.split(":")[-1] not in ("ClusterRole", "ClusterRoleBinding"):
                assert r.plain["metadata"]["namespace"] == "istio-system"
            urn = res.urn_of(r.name)
            assert res.effective_deleted_with(urn) == res.urn_of(f"{cluster}-minikube")
            assert res.requests[urn]["parent"] == res.urn_of("prometheus")
            # After istio-system exists (the istiod stand-in).
            assert res.depends_on(urn, res.urn_of(f"{cluster}-istiod-stand-in"))


def test_only_the_remote_service_is_a_load_balancer_after_metallb(east_west):
    res = east_west
    west = res.named("west-prometheus-service-istio-system-prometheus")
    east = res.named("east-prometheus-service-istio-system-prometheus")
    assert west.plain["spec"]["type"] == "LoadBalancer"
    assert east.plain["spec"]["type"] == "ClusterIP"
    assert res.depends_on(res.urn_of(west.name), res.urn_of("west-metallb-pool"))
    assert not res.depends_on(res.urn_of(east.name), res.urn_of("east-metallb-pool"))


def test_the_primary_config_map_federates_the_remote_and_keeps_the_addon_jobs(east_west):
    cm = east_west.named("east-prometheus-configmap-istio-system-prometheus").plain
    jobs = jobs_of(cm["data"]["prometheus.yml"])
    assert jobs["federate-west"]["static_configs"] == [{"targets": [WEST_PROM], "labels": {"cluster": "west"}}]
    assert jobs["federate-west"] == P.federation_job("west", WEST_PROM)
    assert {k: v for k, v in jobs.items() if k != "federate-west"} == jobs_of(fixture_prometheus_yml())
    west_cm = east_west.named("west-prometheus-configmap-istio-system-prometheus").plain
    assert west_cm["data"]["prometheus.yml"] == fixture_prometheus_yml()  # a remote keeps the addon config


def test_one_resource_owns_the_primary_config_map(east_west):
    owners = [r for r in east_west.records
              if r.provider_name == "east-k8s" and "ConfigMap" in r.typ
              and (r.plain.get("metadata") or {}).get("name") == "prometheus"
              and (r.plain.get("metadata") or {}).get("namespace") == "istio-system"]
    assert [r.name for r in owners] == ["east-prometheus-configmap-istio-system-prometheus"]
    assert owners[0].typ == "kubernetes:core/v1:ConfigMap"


def test_deployments_wait_for_their_config_map(east_west):
    res = east_west
    for c in ("east", "west"):
        dep = res.urn_of(f"{c}-prometheus-deployment-istio-system-prometheus")
        assert res.depends_on(dep, res.urn_of(f"{c}-prometheus-configmap-istio-system-prometheus"), transitive=False)
        assert res.depends_on(dep, res.urn_of(f"{c}-prometheus-serviceaccount-istio-system-prometheus"), transitive=False)


def test_outputs_give_the_urls(east_west):
    assert east_west.outputs["prometheusUrl"] == ("http://prometheus.istio-system:9090", False)
    assert east_west.outputs["remotePrometheus"] == ({"west": WEST_PROM}, False)


def test_no_chart_v4_no_yaml_v2_no_invokes(east_west):
    types = {r.typ for r in east_west.records}
    assert not any(t.startswith(("kubernetes:helm.sh/v4", "kubernetes:yaml")) for t in types)
    assert east_west.mocks.calls == []


def test_three_remotes_give_three_federation_jobs(tmp_path):
    res = run(observability_program(), stack(tmp_path, remotes=3))
    cm = res.named("east-prometheus-configmap-istio-system-prometheus").plain
    jobs = jobs_of(cm["data"]["prometheus.yml"])
    expected = {"west": "192.168.50.31:9090", "north": "192.168.50.41:9090", "south": "192.168.50.51:9090"}
    assert [n for n in jobs if n.startswith("federate-")] == [f"federate-{r}" for r in expected]
    for remote, addr in expected.items():
        assert jobs[f"federate-{remote}"] == P.federation_job(remote, addr)
        svc = res.named(f"{remote}-prometheus-service-istio-system-prometheus")
        assert svc.plain["spec"]["type"] == "LoadBalancer" and svc.provider_name == f"{remote}-k8s"
    assert res.outputs["remotePrometheus"] == (expected, False)
    names = [r.name for r in res.records]
    assert len(names) == len(set(names))


def expect_failure(match: str, *args, **kw):
    """``run`` must fail with ``match``. The failed registrations leave futures whose exception
    nobody awaited; mark them seen so asyncio does not print them at interpreter exit."""
    with pytest.raises(Exception, match=match):
        run(*args, **kw)
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.Future) and obj.done() and not obj.cancelled():
            obj.exception()


def test_a_remote_without_a_load_balancer_address_fails_clearly(tmp_path):
    expect_failure("west: Service istio-system/prometheus .*no external address", observability_program(), stack(tmp_path),
                   lb_overrides={"istio-system/prometheus": {"loadBalancer": {}}})


def test_preview_registers_the_same_objects(tmp_path):
    res = run(observability_program(), stack(tmp_path), preview=True)
    assert res.named("west-prometheus-service-istio-system-prometheus").plain["spec"]["type"] == "LoadBalancer"
    assert len(addon_records(res, "east")) == len(addon_records(res, "west")) == len(P.ADDON_KINDS)


# --- the whole program (east-west and three remotes) ----------------------------------------------------


def istiod_urn(res, cluster: str) -> str:
    found = [u for u, q in res.requests.items() if q["type"] == "kubernetes:helm.sh/v3:Release"
             and res.named(q["name"]).plain.get("name") == "istiod" and res.named(q["name"]).provider_name == f"{cluster}-k8s"]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    from harness import run_main

    return run_main(stack(tmp_path_factory.mktemp("main")))


def test_whole_program_federates_west_beside_istio(whole):
    res = whole
    cm = res.named("east-prometheus-configmap-istio-system-prometheus").plain
    assert jobs_of(cm["data"]["prometheus.yml"])["federate-west"] == P.federation_job("west", WEST_PROM)
    for cluster in ("east", "west"):
        istiod = istiod_urn(res, cluster)
        namespace = res.urn_of(f"{cluster}-istio-system", "kubernetes:core/v1:Namespace")
        for r in addon_records(res, cluster):
            assert r.provider_name == f"{cluster}-k8s"
            # in istio-system once it exists, but not held back behind istiod (off the critical path)
            assert res.depends_on(res.urn_of(r.name), namespace)
            assert not res.depends_on(res.urn_of(r.name), istiod)
            assert res.effective_deleted_with(res.urn_of(r.name)) == res.urn_of(f"{cluster}-minikube")
    west_svc = res.urn_of("west-prometheus-service-istio-system-prometheus")
    assert res.depends_on(west_svc, res.urn_of("west-metallb-pool"))
    assert res.outputs["prometheusUrl"] == ("http://prometheus.istio-system:9090", False)
    assert res.outputs["remotePrometheus"] == ({"west": WEST_PROM}, False)


def test_whole_program_three_remotes_three_federation_jobs(tmp_path):
    from harness import run_main

    res = run_main(stack(tmp_path, remotes=3))
    jobs = jobs_of(res.named("east-prometheus-configmap-istio-system-prometheus").plain["data"]["prometheus.yml"])
    assert sorted(n for n in jobs if n.startswith("federate-")) == ["federate-north", "federate-south", "federate-west"]
    assert jobs["federate-south"]["static_configs"] == [{"targets": ["192.168.50.51:9090"], "labels": {"cluster": "south"}}]
