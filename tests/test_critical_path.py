"""The critical-path computation of tools/graph.py (used by `make bench`), on small synthetic graphs."""

import random

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import pytest

from components import config as C
from harness import run, stack_config
from tools import graph as G

STEP = "urn:pulumi:s::p::"


def u(name: str, typ: str = "t:index:T") -> str:
    return f"{STEP}{typ}::{name}"


def req(typ="t:index:T", name="x", deps=(), props=None, provider="", parent="", custom=True, read=False):
    return {"type": typ, "name": name, "parent": parent, "dependencies": list(deps), "provider": provider,
            "propertyDependencies": props or {}, "custom": custom, "read": read}


# --- longest path ---------------------------------------------------------------------------------


def test_parallel_chains_cost_the_longest_not_the_sum():
    w = {"a1": 60, "a2": 10, "b1": 30, "b2": 30}
    deps = {"a1": set(), "a2": {"a1"}, "b1": set(), "b2": {"b1"}}
    total, path = G.critical_path(w, deps)
    assert (total, path) == (70, ["a1", "a2"])
    assert G.serial_sum(w) == 130


def test_a_join_waits_for_its_slowest_input():
    # start(60) -> base(10) -> istiod(40) ; start -> metallb(15) ; gateway waits for both
    w = {"start": 60, "base": 10, "istiod": 40, "metallb": 15, "gw": 30}
    deps = {"start": set(), "base": {"start"}, "istiod": {"base"}, "metallb": {"start"}, "gw": {"istiod", "metallb"}}
    total, path = G.critical_path(w, deps)
    assert total == 140
    assert path == ["start", "base", "istiod", "gw"]
    finish = G.finish_times(w, deps)[0]
    assert finish["metallb"] == 75 and finish["gw"] == 140


def test_zero_weight_members_add_nothing_and_do_not_end_the_path():
    w = {"provider": 0, "start": 60, "comp": 0, "app": 45, "tail": 0}
    deps = {"start": set(), "provider": {"start"}, "app": {"provider"}, "comp": set(), "tail": {"app"}}
    total, path = G.critical_path(w, deps)
    assert total == 105
    assert path == ["start", "provider", "app"]


def test_equal_chains_give_the_same_path_whatever_the_insertion_order():
    names = [f"n{i}" for i in range(6)]
    w = dict.fromkeys(names, 10)
    deps = {"n0": set(), "n1": {"n0"}, "n2": {"n1"}, "n3": set(), "n4": {"n3"}, "n5": {"n4"}}
    expected = G.critical_path(w, deps)
    for seed in range(5):
        items = list(deps.items())
        random.Random(seed).shuffle(items)
        assert G.critical_path(w, dict(items)) == expected
    assert expected[0] == 30


def test_a_cycle_is_reported_with_its_members():
    deps = {"a": {"c"}, "b": {"a"}, "c": {"b"}, "d": set()}
    with pytest.raises(G.CycleError) as e:
        G.critical_path(dict.fromkeys(deps, 1), deps)
    msg = str(e.value)
    assert all(n in msg for n in "abc") and "d" not in msg.replace("dependency", "")


def test_a_long_chain_needs_no_recursion():
    n = 20000
    deps = {f"n{i}": ({f"n{i - 1}"} if i else set()) for i in range(n)}
    total, path = G.critical_path(dict.fromkeys(deps, 1), deps)
    assert total == n and len(path) == n and path[0] == "n0"


def test_empty_graph():
    assert G.critical_path({}, {}) == (0.0, [])


# --- what a registration waits for ---------------------------------------------------------------


def test_a_registration_waits_for_dependencies_property_dependencies_and_its_provider():
    prov, start, ns, rel = u("p", "pulumi:providers:kubernetes"), u("start"), u("ns"), u("rel")
    requests = {
        start: req(name="start"),
        prov: req("pulumi:providers:kubernetes", "p", props={"context": [start]}),
        ns: req("kubernetes:core/v1:Namespace", "ns", provider=f"{prov}::p-id"),
        rel: req("kubernetes:helm.sh/v3:Release", "rel", deps=[ns], provider=f"{prov}::p-id"),
    }
    deps = G.build_graph(requests)
    assert deps[ns] == {prov}
    assert deps[rel] == {ns, prov}
    assert deps[prov] == {start}
    assert G.ancestors(deps, rel) == {ns, prov, start}


def test_children_do_not_wait_for_their_parent_and_unregistered_urns_are_dropped():
    comp, child = u("comp", "my:index:Comp"), u("child")
    default_provider = "urn:pulumi:s::p::pulumi:providers:command::default_1_2_1::abc"
    requests = {
        comp: req("my:index:Comp", "comp", custom=False),
        child: req(name="child", parent=comp, provider=default_provider),
    }
    deps = G.build_graph(requests)
    assert deps == {comp: set(), child: set()}


def test_a_read_waits_for_what_produced_its_id():
    producer, read = u("gw"), u("svc", "kubernetes:core/v1:Service")
    requests = {producer: req(name="gw"), read: req("kubernetes:core/v1:Service", "svc", read=True)}
    assert G.build_graph(requests)[read] == set()
    assert G.build_graph(requests, {read: {producer}})[read] == {producer}


def test_read_ids_are_captured_from_a_real_sdk_run():
    """Service.get(id=<output of a Command>) under the mocks: the read's producer is found."""
    reads: dict = {}

    def program():
        cmd = command.local.Command("producer", create="echo istio-system/gw")
        k8s.core.v1.Service.get("gw-service", cmd.stdout.apply(lambda _: "istio-system/gw"))
        k8s.core.v1.Service.get("plain-read", "default/kubernetes")

    with G.capture_read_ids() as captured:
        result = run(program, stack_config())
    reads = G.read_id_urns(captured)
    producer = result.urn_of("producer")
    assert reads[result.urn_of("gw-service")] == {producer}
    assert reads[result.urn_of("plain-read")] == set()
    # The SDK does not list the id's producer among the read's dependencies: only the capture knows.
    assert producer not in result.requests[result.urn_of("gw-service")]["dependencies"]
    assert pulumi.resource.read_resource.__name__ == "read_resource"  # restored


# --- the step model -------------------------------------------------------------------------------


@pytest.mark.parametrize("chart, step", [
    ("base", G.HELM_BASE), ("istiod", G.HELM_ISTIOD), ("gateway", G.HELM_GATEWAY), ("kiali-server", G.HELM_KIALI),
    ("oci://registry/charts/istiod", G.HELM_ISTIOD), ("./charts/gateway-1.30.3.tgz", G.HELM_GATEWAY),
    ("prometheus", G.HELM_OTHER),
])
def test_helm_releases_are_weighted_by_chart(chart, step):
    assert G.classify(G.HELM_RELEASE_TYPE, {"chart": chart}) is step


@pytest.mark.parametrize("line, step", [
    ("python3 tools/minikube_ops.py start --profile east --driver docker", G.MINIKUBE_START),
    ("python3 tools/minikube_ops.py metallb --profile east", G.METALLB),
    ("python3 tools/minikube_ops.py network-create --name istio", G.COMMAND),
    ("kubectl --context west -n istio-system wait --for=create configmap/istio-ca-root-cert", G.COMMAND),
    ("echo 'unterminated", G.COMMAND),
])
def test_commands_are_weighted_by_their_create_line(line, step):
    assert G.classify(G.COMMAND_TYPE, {"create": line}) is step


def test_kubernetes_objects_are_weighted_by_what_they_wait_for():
    assert G.classify(G.SERVICE_TYPE, {"spec": {"type": "LoadBalancer"}}) is G.LOADBALANCER
    assert G.classify(G.SERVICE_TYPE, {"spec": {"type": "ClusterIP"}}) is G.K8S_OBJECT
    assert G.classify(G.SERVICE_TYPE, {}, read=True) is G.LOADBALANCER
    assert G.classify(G.SECRET_TYPE, {"type": "kubernetes.io/service-account-token"}) is G.TOKEN
    assert G.classify(G.SECRET_TYPE, {"type": "Opaque"}) is G.K8S_OBJECT
    assert G.classify("kubernetes:apps/v1:Deployment", {}) is G.WORKLOAD
    assert G.classify("kubernetes:core/v1:ConfigMapPatch", {}) is G.K8S_OBJECT
    assert G.classify("pulumi:providers:kubernetes", {}) is G.PROVIDER
    assert G.classify("my:index:Comp", {}, custom=False) is G.COMPONENT
    assert G.classify("tls:index/privateKey:PrivateKey", {}) is G.TLS


def test_every_model_step_has_a_distinct_label():
    labels = [s.label for s in G.STEP_MODEL]
    assert len(labels) == len(set(labels))


# --- generated stacks --------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 4, 16])
def test_generated_stacks_are_valid_configs(count):
    cfg = C.parse(G.with_remotes(stack_config(), count))
    assert [r.name for r in cfg.remotes] == [f"r{i}" for i in range(1, count + 1)]
    assert len({cfg.lb_pool(c) for c in cfg.clusters}) == count + 1
