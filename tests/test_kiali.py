"""KialiServer: chart values (pure), remote access per remote, ordering and secrecy under mocks."""

import pytest
import yaml
from kubernetes import client as kclient
from kubernetes import config as kconfig
from test_prometheus import istiod_urn, observability_program, stack

from components import kiali as K
from components.config import KialiSpec
from harness import FAKE_CLUSTER_CA, b64, is_secret_envelope, run, run_main

TUTORIAL = KialiSpec(auth="anonymous", log_level="debug", ingress=True)
PROM = "http://prometheus.istio-system:9090"


# --- pure ------------------------------------------------------------------------------------------


def test_primary_values_for_the_tutorial():
    assert K.kiali_values(spec=TUTORIAL, primary="east", remotes=["west"], prometheus_url=PROM) == {
        "auth": {"strategy": "anonymous"},
        "deployment": {"instance_name": "kiali", "logger": {"log_level": "debug"}, "ingress": {"enabled": True}},
        "external_services": {"prometheus": {"url": PROM}},
        "kubernetes_config": {"cluster_name": "east"},
        "server": {"port": 20001, "web_root": "/kiali"},
        "clustering": {
            "autodetect_secrets": {"enabled": False},
            "clusters": [{"name": "west", "secret_name": "kiali-remote-cluster-secret-west"}],
        },
    }


def test_primary_values_follow_the_config():
    spec = KialiSpec(auth="openid", log_level="warn", ingress=False,
                     openid_issuer_uri="https://idp.example.com/realms/mesh", openid_client_id="kiali")
    v = K.kiali_values(spec=spec, primary="a", remotes=["b", "c", "d"], prometheus_url="http://p:9090")
    assert v["auth"] == {"strategy": "openid",
                         "openid": {"issuer_uri": "https://idp.example.com/realms/mesh", "client_id": "kiali"}}
    assert v["deployment"]["logger"] == {"log_level": "warn"} and v["deployment"]["ingress"] == {"enabled": False}
    assert v["kubernetes_config"] == {"cluster_name": "a"}
    assert v["external_services"]["prometheus"]["url"] == "http://p:9090"
    assert v["clustering"]["clusters"] == [{"name": n, "secret_name": f"kiali-remote-cluster-secret-{n}"} for n in "bcd"]


@pytest.mark.parametrize("auth", ["token", "header", ""])
def test_logins_that_cannot_reach_remotes_are_refused(auth):
    with pytest.raises(ValueError, match="home cluster only"):
        K.kiali_values(spec=KialiSpec(auth=auth), primary="east", remotes=["west"], prometheus_url=PROM)


def test_cluster_names_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        K.kiali_values(spec=TUTORIAL, primary="east", remotes=["west", "west"], prometheus_url=PROM)
    with pytest.raises(ValueError, match="unique"):
        K.kiali_values(spec=TUTORIAL, primary="east", remotes=["east"], prometheus_url=PROM)


def test_remote_values_render_only_a_view_only_account():
    assert K.remote_values() == {
        "auth": {"strategy": "anonymous"},
        "deployment": {"instance_name": "kiali", "remote_cluster_resources_only": True,
                       "cluster_wide_access": True, "view_only_mode": True},
    }
    assert K.remote_values(view_only=False)["deployment"]["view_only_mode"] is False


def test_port_forward_command():
    assert K.port_forward_command("east") == "kubectl --context east -n istio-system port-forward svc/kiali 20001:20001"
    assert K.port_forward_command("kind-east", "/home/me/my configs/east.yaml") == (
        "kubectl --kubeconfig '/home/me/my configs/east.yaml' --context kind-east -n istio-system port-forward svc/kiali 20001:20001")


# --- under mocks -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def east_west(tmp_path_factory):
    return run(observability_program(), stack(tmp_path_factory.mktemp("ew")))


def test_kiali_release_on_the_primary(east_west):
    res = east_west
    rel = res.named("east-kiali")
    p = rel.plain
    assert rel.typ == "kubernetes:helm.sh/v3:Release" and rel.provider_name == "east-k8s"
    assert (p["chart"], p["version"], p["repositoryOpts"], p["name"], p["namespace"]) == (
        "kiali-server", "2.29.0", {"repo": "https://kiali.org/helm-charts"}, "kiali", "istio-system")
    assert p["timeout"] == 600
    assert not p.get("skipAwait")  # Helm --wait; it does not wait for Ingress status
    assert p["values"] == K.kiali_values(spec=TUTORIAL, primary="east", remotes=["west"], prometheus_url=PROM)
    urn = res.urn_of("east-kiali")
    assert res.effective_deleted_with(urn) == res.urn_of("east-minikube")
    assert res.depends_on(urn, res.urn_of("east-istiod-stand-in"), transitive=False)
    assert res.depends_on(urn, res.urn_of("east-kiali-remote-secret-west"), transitive=False)


def test_remote_gets_the_account_through_the_chart(east_west):
    res = east_west
    rel = res.named("west-kiali-remote")
    p = rel.plain
    assert rel.provider_name == "west-k8s"
    assert (p["chart"], p["version"], p["name"], p["namespace"], p["timeout"]) == ("kiali-server", "2.29.0", "kiali", "istio-system", 600)
    assert p["values"] == K.remote_values()
    urn = res.urn_of("west-kiali-remote")
    assert res.effective_deleted_with(urn) == res.urn_of("west-minikube")
    assert res.depends_on(urn, res.urn_of("west-istiod-stand-in"))


def test_token_secret_on_the_remote_waits_for_the_account(east_west):
    res = east_west
    tok = res.named("west-kiali-token")
    md = tok.plain["metadata"]
    assert tok.provider_name == "west-k8s" and tok.plain["type"] == "kubernetes.io/service-account-token"
    assert md["namespace"] == "istio-system"
    assert md["annotations"]["kubernetes.io/service-account.name"] == "kiali"
    assert md["annotations"]["pulumi.com/waitFor"] == "jsonpath={.data.token}"
    urn = res.urn_of("west-kiali-token")
    assert res.depends_on(urn, res.urn_of("west-kiali-remote"), transitive=False)
    assert res.effective_deleted_with(urn) == res.urn_of("west-minikube")


def test_remote_secret_on_the_primary(east_west):
    res = east_west
    sec = res.named("east-kiali-remote-secret-west")
    md = sec.plain["metadata"]
    assert sec.provider_name == "east-k8s"  # created by a per-remote piece, lives on the primary
    assert (md["name"], md["namespace"]) == ("kiali-remote-cluster-secret-west", "istio-system")
    assert md["labels"] == {"kiali.io/multiCluster": "true"}
    assert md["annotations"] == {"kiali.io/cluster": "west"}
    assert is_secret_envelope(sec.inputs["stringData"])
    assert list(sec.plain["stringData"]) == ["west"]
    urn = res.urn_of(sec.name)
    assert res.effective_deleted_with(urn) == res.urn_of("east-minikube")
    assert res.depends_on(urn, res.urn_of("west-kiali-token"), transitive=False)
    assert res.depends_on(urn, res.urn_of("east-istiod-stand-in"), transitive=False)


def test_remote_kubeconfig_loads_with_the_kubernetes_client(east_west):
    text = east_west.named("east-kiali-remote-secret-west").plain["stringData"]["west"]
    doc = yaml.safe_load(text)
    assert doc["current-context"] == "west"
    assert [c["name"] for c in doc["clusters"]] == [c["name"] for c in doc["contexts"]] == [u["name"] for u in doc["users"]] == ["west"]
    assert doc["clusters"][0]["cluster"]["certificate-authority-data"] == b64(FAKE_CLUSTER_CA)
    cfg = kclient.Configuration()
    kconfig.load_kube_config_from_dict(doc, client_configuration=cfg)  # no context=: needs current-context
    assert cfg.host == "https://192.168.50.3:8443"  # the remote's api_server_url, reachable from east pods
    assert cfg.api_key["BearerToken"] == "Bearer token-west-kiali-token-kiali"  # the decoded token
    with open(cfg.ssl_ca_cert) as f:
        assert f.read() == FAKE_CLUSTER_CA


def test_outputs_say_how_to_reach_kiali_and_leak_no_secret(east_west):
    outs = east_west.outputs
    assert outs["kialiUrl"] == ("http://localhost:20001/kiali", False)
    assert outs["kialiPortForward"] == ("kubectl --context east -n istio-system port-forward svc/kiali 20001:20001", False)
    assert "token-" not in repr(outs)


def test_three_remotes_get_three_kiali_remote_secrets(tmp_path):
    res = run(observability_program(), stack(tmp_path, remotes=3))
    remotes = ["west", "north", "south"]
    ips = {"west": "192.168.50.3", "north": "192.168.50.4", "south": "192.168.50.5"}
    secrets = [r for r in res.of_type("kubernetes:core/v1:Secret") if r.plain["metadata"]["name"].startswith("kiali-remote-cluster-secret-")]
    assert sorted(s.plain["metadata"]["name"] for s in secrets) == sorted(f"kiali-remote-cluster-secret-{r}" for r in remotes)
    kiali = res.urn_of("east-kiali")
    for r in remotes:
        sec = res.named(f"east-kiali-remote-secret-{r}")
        assert sec.provider_name == "east-k8s" and list(sec.plain["stringData"]) == [r]
        doc = yaml.safe_load(sec.plain["stringData"][r])
        assert doc["clusters"][0]["cluster"]["server"] == f"https://{ips[r]}:8443"
        assert res.named(f"{r}-kiali-remote").provider_name == f"{r}-k8s"
        assert res.named(f"{r}-kiali-token").provider_name == f"{r}-k8s"
        assert res.depends_on(kiali, res.urn_of(sec.name), transitive=False)
    clusters = res.named("east-kiali").plain["values"]["clustering"]["clusters"]
    assert clusters == [{"name": r, "secret_name": f"kiali-remote-cluster-secret-{r}"} for r in remotes]


# --- the whole program --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return run_main(stack(tmp_path_factory.mktemp("main")))


def test_whole_program_kiali_after_istiod_and_its_remote_secret(whole):
    res = whole
    kiali = res.urn_of("east-kiali")
    assert res.depends_on(kiali, istiod_urn(res, "east"), transitive=False)
    assert res.depends_on(kiali, res.urn_of("east-kiali-remote-secret-west"), transitive=False)
    # The remote chart holds only an account and its role: it needs istio-system, not istiod.
    west_remote = res.urn_of("west-kiali-remote")
    assert res.depends_on(west_remote, res.urn_of("west-istio-system", "kubernetes:core/v1:Namespace"))
    assert not res.depends_on(west_remote, istiod_urn(res, "west"))
    assert res.named("east-kiali").plain["values"] == K.kiali_values(spec=TUTORIAL, primary="east", remotes=["west"], prometheus_url=PROM)
    # Kiali's secret is its own, next to (not instead of) Istio's remote secret for west.
    names = {r.plain["metadata"]["name"] for r in res.of_type("kubernetes:core/v1:Secret") if r.provider_name == "east-k8s"}
    assert "kiali-remote-cluster-secret-west" in names
    sec = res.named("east-kiali-remote-secret-west")
    assert is_secret_envelope(sec.inputs["stringData"])
    assert yaml.safe_load(sec.plain["stringData"]["west"])["clusters"][0]["cluster"]["server"] == "https://192.168.50.3:8443"
    assert res.outputs["kialiUrl"] == ("http://localhost:20001/kiali", False)
    assert res.outputs["kialiPortForward"][0].startswith("kubectl --context east ")
    assert "token-" not in repr(res.outputs)


def test_whole_program_three_remotes_three_kiali_secrets(tmp_path):
    res = run_main(stack(tmp_path, remotes=3))
    for r in ("west", "north", "south"):
        sec = res.named(f"east-kiali-remote-secret-{r}")
        assert sec.plain["metadata"]["name"] == f"kiali-remote-cluster-secret-{r}" and sec.provider_name == "east-k8s"
        kconfig.load_kube_config_from_dict(yaml.safe_load(sec.plain["stringData"][r]), client_configuration=kclient.Configuration())
    assert [c["name"] for c in res.named("east-kiali").plain["values"]["clustering"]["clusters"]] == ["west", "north", "south"]
