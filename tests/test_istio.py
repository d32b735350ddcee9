"""Istio primary-remote: pure renderers against the upstream facts, then the whole program under mocks.

Upstream facts used below (istio/istio 1.30.3 unless noted; kiali.io tutorial f66f1ec):
- gen-eastwest-gateway.sh output: labels istio=eastwestgateway, app=istio-eastwestgateway,
  topology.istio.io/network=<net>; env ISTIO_META_REQUESTED_NETWORK_VIEW; ports 15021/15443/15012/15017.
- gateway chart: name defaults to the release, selector label istio = name without "istio-",
  networkGateway adds the network label, the env and those four ports; values schema is closed.
- samples/multicluster/expose-istiod.yaml and expose-services.yaml (networking.istio.io/v1).
- tutorial west IstioOperator: profile remote, injectionPath /inject/cluster/<c>/net/<net>,
  remotePilotAddress = the east east-west gateway's LB IP.
- istioctl create-remote-secret: istio-remote-secret-<c>, label istio/multiCluster, annotation
  networking.istio.io/cluster, one key <c>, token of istio-reader-service-account.
"""

from __future__ import annotations

import base64
import shlex
import stat
import subprocess

import kubernetes
import pytest
import yaml
from pulumi_kubernetes.core.v1 import outputs as k8s_out

from components import istio
from components.ca import CACERTS_KEYS
from harness import (
    FAKE_CLUSTER_CA,
    RecordingMocks,
    existing_clusters,
    is_secret_envelope,
    run_main,
    stack_config,
    three_remotes,
    unwrap,
)
from tools import need

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
NS = "kubernetes:core/v1:Namespace"
SVC = "kubernetes:core/v1:Service"
CMD = "command:local:Command"
GATEWAY = "kubernetes:networking.istio.io/v1:Gateway"
VS = "kubernetes:networking.istio.io/v1:VirtualService"
EXPOSED = ("istiod-gateway", "istiod-vs", "cross-network-gateway")

# Facts from the tutorial's east-west gateway (gen-eastwest-gateway.sh output).
TUTORIAL_EW_LABELS = {"istio": "eastwestgateway", "app": "istio-eastwestgateway"}
TUTORIAL_EW_PORTS = {"status-port": 15021, "tls": 15443, "tls-istiod": 15012, "tls-webhook": 15017}
# Top-level keys the gateway chart's closed values schema accepts (a subset is enough here).
GATEWAY_SCHEMA_KEYS = {"name", "networkGateway", "service", "labels", "env", "global", "revision", "annotations",
                       "podAnnotations", "resources", "autoscaling", "serviceAccount", "kind", "replicaCount"}
PEM = "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n"




# --- pure renderers ------------------------------------------------------------------------------


def test_namespace_metadata_primary_and_remote():
    primary = istio.namespace_metadata("network1")
    assert primary == {"name": "istio-system", "labels": {"topology.istio.io/network": "network1"}}
    remote = istio.namespace_metadata("network2", control_plane="east")
    assert remote["labels"] == {"topology.istio.io/network": "network2"}
    assert remote["annotations"] == {"topology.istio.io/controlPlaneClusters": "east"}


def test_cacerts_entries_are_exactly_the_four_files():
    full = {k: f"v-{k}" for k in reversed(CACERTS_KEYS)}
    assert list(istio.cacerts_entries(full)) == list(CACERTS_KEYS)
    with pytest.raises(ValueError, match="missing: \\['ca-key.pem'\\]"):
        istio.cacerts_entries({k: "x" for k in CACERTS_KEYS if k != "ca-key.pem"})
    with pytest.raises(ValueError, match="unexpected: \\['tls.key'\\]"):
        istio.cacerts_entries({**full, "tls.key": "x"})


def test_primary_istiod_values_match_the_tutorial():
    spec = istio.istiod_primary_release(cluster="east", network="network1", mesh_id="mesh1", hub="gcr.io/istio-release")
    assert (spec.chart, spec.name) == ("istiod", "istiod")
    g = spec.values["global"]
    assert (g["meshID"], g["multiCluster"]["clusterName"], g["network"]) == ("mesh1", "east", "network1")
    assert g["hub"] == "gcr.io/istio-release"
    # Helm env values must be strings: a YAML boolean would not render as "true".
    assert spec.values["pilot"]["env"]["EXTERNAL_ISTIOD"] == "true"
    assert spec.timeout >= 600


def test_remote_istiod_values_match_the_tutorial():
    bundle = istio.ca_bundle(PEM)
    spec = istio.istiod_remote_release(cluster="west", network="network2", mesh_id="mesh1", hub="docker.io/istio",
                                       pilot_address="192.168.50.20", injection_ca_bundle=bundle)
    v = spec.values
    assert (spec.chart, spec.name, v["profile"]) == ("istiod", "istiod", "remote")
    assert v["istiodRemote"]["injectionPath"] == "/inject/cluster/west/net/network2"
    assert base64.b64decode(v["istiodRemote"]["injectionCABundle"]).decode() == PEM
    g = v["global"]
    assert g["remotePilotAddress"] == "192.168.50.20"
    assert (g["multiCluster"]["clusterName"], g["network"], g["meshID"], g["hub"]) == ("west", "network2", "mesh1", "docker.io/istio")
    assert "pilot" not in v  # EXTERNAL_ISTIOD is the primary's, the remote runs no istiod


def test_ca_bundle_refuses_anything_but_a_pem():
    with pytest.raises(ValueError, match="PEM"):
        istio.ca_bundle("not a certificate")


def test_base_release_profile():
    assert istio.base_release(remote=True).values == {"profile": "remote"}
    assert "profile" not in istio.base_release(remote=False).values
    assert istio.base_release(remote=False).chart == "base"


@pytest.mark.parametrize("network", ["network1", "network2"])
def test_eastwest_gateway_values_come_out_as_the_tutorials_gateway(network):
    spec = istio.eastwest_gateway_release(network)
    v = spec.values
    assert (spec.chart, spec.name, v["name"]) == ("gateway", "istio-eastwestgateway", "istio-eastwestgateway")
    assert set(v) <= GATEWAY_SCHEMA_KEYS, "the gateway chart rejects unknown top-level values"
    # networkGateway: the chart's switch for the network label, the REQUESTED_NETWORK_VIEW env and the four ports.
    assert v["networkGateway"] == network
    assert v["service"]["type"] == "LoadBalancer"
    # The chart's selector labels, derived from the name, equal the tutorial's gateway labels.
    name = v["name"]
    assert {"istio": name.removeprefix("istio-"), "app": name} == TUTORIAL_EW_LABELS
    # Labels, env and ports set here as well would be rendered twice by the chart.
    assert "labels" not in v and "env" not in v and "ports" not in v["service"]
    assert spec.timeout >= 600


def test_exposed_objects_are_expose_istiod_and_expose_services():
    objs = {o.name: o for o in istio.exposed_objects()}
    assert list(objs) == list(EXPOSED)
    for o in objs.values():
        assert o.api_version == "networking.istio.io/v1"
        assert o.metadata() == {"name": o.name, "namespace": "istio-system"}

    gw = objs["istiod-gateway"]
    assert gw.kind == "Gateway" and gw.spec["selector"] == {"istio": "eastwestgateway"}
    servers = {s["port"]["number"]: s for s in gw.spec["servers"]}
    assert set(servers) == {15012, 15017}
    for s in servers.values():
        assert s["port"]["protocol"].upper() == "TLS" and s["tls"] == {"mode": "PASSTHROUGH"} and s["hosts"] == ["*"]

    vs = objs["istiod-vs"]
    assert vs.kind == "VirtualService" and vs.spec["gateways"] == ["istiod-gateway"] and vs.spec["hosts"] == ["*"]
    routes = {}
    for r in vs.spec["tls"]:
        (match,) = r["match"]
        (route,) = r["route"]
        assert match["sniHosts"] == ["*"]
        assert route["destination"]["host"] == "istiod.istio-system.svc.cluster.local"
        routes[match["port"]] = route["destination"]["port"]["number"]
    assert routes == {15012: 15012, 15017: 443}

    cross = objs["cross-network-gateway"]
    assert cross.kind == "Gateway" and cross.spec["selector"] == {"istio": "eastwestgateway"}
    (server,) = cross.spec["servers"]
    assert server["port"]["number"] == 15443 and server["port"]["protocol"].upper() == "TLS"
    assert server["tls"] == {"mode": "AUTO_PASSTHROUGH"} and server["hosts"] == ["*.local"]

    # Every port the expose objects use is one the east-west gateway Service opens.
    used = {s["port"]["number"] for o in (gw, cross) for s in o.spec["servers"]}
    assert used <= set(TUTORIAL_EW_PORTS.values())


def test_exposed_objects_are_fresh_each_call():
    a = istio.exposed_objects()
    a[0].spec["selector"]["istio"] = "changed"
    assert istio.exposed_objects()[0].spec["selector"] == {"istio": "eastwestgateway"}


@pytest.mark.parametrize("status", [
    {"loadBalancer": {"ingress": [{"ip": "192.168.50.20"}]}},
    {"load_balancer": {"ingress": [{"ip": "192.168.50.20"}, {"ip": "192.168.50.21"}]}},
    k8s_out.ServiceStatus(load_balancer=k8s_out.LoadBalancerStatus(ingress=[k8s_out.LoadBalancerIngress(ip="192.168.50.20")])),
])
def test_lb_ip_from_status_takes_the_first_ip(status):
    assert istio.lb_ip_from_status(status, "svc") == "192.168.50.20"


def test_lb_ip_from_status_refuses_a_hostname():
    status = {"loadBalancer": {"ingress": [{"hostname": "a1b2.elb.amazonaws.com"}]}}
    with pytest.raises(istio.LoadBalancerError) as e:
        istio.lb_ip_from_status(status, "Service istio-system/istio-eastwestgateway on east")
    msg = str(e.value)
    assert "a1b2.elb.amazonaws.com" in msg and "remotePilotAddress must be an IP" in msg and "istio#45014" in msg
    assert "on east" in msg


@pytest.mark.parametrize("status", [None, {}, {"loadBalancer": {}}, {"loadBalancer": {"ingress": []}},
                                    k8s_out.ServiceStatus()])
def test_lb_ip_from_status_without_ingress_points_at_metallb(status):
    with pytest.raises(istio.LoadBalancerError, match="no LoadBalancer address.*MetalLB"):
        istio.lb_ip_from_status(status, "svc")


def test_lb_ip_from_status_refuses_garbage():
    with pytest.raises(istio.LoadBalancerError, match="not an IP"):
        istio.lb_ip_from_status({"loadBalancer": {"ingress": [{"ip": "pending"}]}}, "svc")
    with pytest.raises(istio.LoadBalancerError, match="without ip or hostname"):
        istio.lb_ip_from_status({"loadBalancer": {"ingress": [{"ports": []}]}}, "svc")


def test_remote_secret_metadata_is_istioctls():
    m = istio.remote_secret_metadata("west")
    assert m.name == "istio-remote-secret-west"
    assert m.labels == {"istio/multiCluster": "true"}
    assert m.annotations == {"networking.istio.io/cluster": "west"}


@pytest.mark.parametrize("path,expected", [
    ("~/.kube/config", '"$HOME"/.kube/config'),
    ("~", '"$HOME"'),
    ("/tmp/my kube/config", "'/tmp/my kube/config'"),
    ("~/dir with space/c", "\"$HOME\"/'dir with space/c'"),
])
def test_shell_path_quotes_and_keeps_home(path, expected):
    assert istio.shell_path(path) == expected


def test_wait_command_argv():
    cmd = istio.ca_root_cert_wait_command("/k/config", "west", cluster="west", primary="east", timeout_seconds=120)
    argv = shlex.split(cmd.split(" || ")[0])
    assert argv == ["kubectl", "--kubeconfig", "/k/config", "--context", "west", "-n", "istio-system", "wait",
                    "--for=create", "configmap/istio-ca-root-cert", "--timeout=120s"]
    with pytest.raises(ValueError):
        istio.ca_root_cert_wait_command("/k", "west", cluster="west", primary="east", timeout_seconds=0)


@pytest.fixture
def fake_kubectl(tmp_path):
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    args_file = tmp_path / "args"
    script = bin_dir / "kubectl"
    script.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" > "$ARGS_FILE"\nexit "${FAKE_RC:-0}"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)

    def sh(cmd: str, rc: int = 0) -> tuple[subprocess.CompletedProcess, list[str]]:
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "ARGS_FILE": str(args_file), "FAKE_RC": str(rc)}
        proc = subprocess.run(["/bin/sh", "-c", cmd], env=env, capture_output=True, text=True, timeout=30)
        return proc, args_file.read_text().splitlines()

    return sh, home


def test_wait_command_runs_in_sh_and_fails_clearly(fake_kubectl):
    sh, home = fake_kubectl
    ctx = "it's a context"
    cmd = istio.ca_root_cert_wait_command("~/.kube/config", ctx, cluster="west", primary="east")
    ok, argv = sh(cmd)
    assert ok.returncode == 0 and ok.stderr == ""
    assert argv[:4] == ["--kubeconfig", f"{home}/.kube/config", "--context", ctx]
    assert f"--timeout={istio.CA_ROOT_CERT_TIMEOUT_SECONDS}s" in argv
    failed, _ = sh(cmd, rc=1)
    assert failed.returncode == 1
    assert "istio-system/istio-ca-root-cert did not appear" in failed.stderr
    assert "istio-remote-secret-west on east" in failed.stderr


def test_wait_command_passes_shellcheck(tmp_path):
    shellcheck = need("shellcheck")
    for path, ctx in (("~/.kube/config", "west"), ("/etc/kube config", "a'b")):
        script = tmp_path / "wait.sh"
        script.write_text("#!/bin/sh\n" + istio.ca_root_cert_wait_command(path, ctx, cluster="west", primary="east") + "\n")
        proc = subprocess.run([shellcheck, "-s", "sh", str(script)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout


# --- the whole program under mocks (east-west stack) ---------------------------------------------


@pytest.fixture(scope="module")
def ew(tmp_path_factory):
    return run_main(stack_config())




def kubeconfig_of(res, cluster: str) -> tuple[dict, bool]:
    rec = res.named(f"{cluster}-istio-remote-secret", SECRET)
    raw = rec.inputs["stringData"]
    data = unwrap(raw)
    assert list(data) == [cluster], "one key: the remote cluster's name"
    secret = is_secret_envelope(raw) or is_secret_envelope(raw.get(cluster))
    return yaml.safe_load(data[cluster]), secret


def load_with_kubernetes_client(cfg: dict) -> kubernetes.client.Configuration:
    conf = kubernetes.client.Configuration()
    # No context= argument: like istiod and Kiali, the loader needs current-context.
    kubernetes.config.load_kube_config_from_dict(cfg, client_configuration=conf, persist_config=False)
    return conf


def test_component_types(ew):
    types = {r.name: r.typ for r in ew.records if r.typ.startswith("kiali-multicluster:index:Istio")}
    assert types == {"east-istio": "kiali-multicluster:index:IstioPrimary", "west-istio": "kiali-multicluster:index:IstioRemote"}


@pytest.mark.parametrize("cluster,network", [("east", "network1"), ("west", "network2")])
def test_istio_system_namespace_and_cacerts(ew, cluster, network):
    ns = ew.named(f"{cluster}-istio-system", NS)
    assert ns.provider_name == f"{cluster}-k8s"
    meta = ns.plain["metadata"]
    assert meta["name"] == "istio-system" and meta["labels"] == {"topology.istio.io/network": network}
    if cluster == "west":
        assert meta["annotations"] == {"topology.istio.io/controlPlaneClusters": "east"}
    else:
        assert "annotations" not in meta
    cacerts = ew.named(f"{cluster}-cacerts", SECRET)
    assert cacerts.provider_name == f"{cluster}-k8s"
    assert cacerts.plain["metadata"] == {"name": "cacerts", "namespace": "istio-system"}
    raw = cacerts.inputs["stringData"]
    assert set(unwrap(raw)) == set(CACERTS_KEYS)
    assert is_secret_envelope(raw) or all(is_secret_envelope(v) for v in raw.values())
    # This cluster's intermediate, not the other's: the locality is in the subject (L=<cluster>).
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(cacerts.plain["stringData"]["ca-cert.pem"].encode())
    assert f"L={cluster}" in cert.subject.rfc4514_string()
    urn = ew.urn_of(f"{cluster}-cacerts", SECRET)
    assert ew.depends_on(urn, ew.urn_of(f"{cluster}-istio-system", NS), transitive=False)


@pytest.mark.parametrize("cluster", ["east", "west"])
def test_every_release_is_pinned_named_and_patient(ew, cluster):
    version = stack_config()["versions"]["istio"]
    releases = {r.name: r.plain for r in ew.of_type(RELEASE) if r.provider_name == f"{cluster}-k8s"}
    expected = {f"{cluster}-istio-base": ("base", "istio-base"), f"{cluster}-istiod": ("istiod", "istiod"),
                f"{cluster}-eastwestgateway": ("gateway", "istio-eastwestgateway")}
    assert set(expected) <= set(releases)
    for res_name, (chart, release_name) in expected.items():
        r = releases[res_name]
        assert (r["chart"], r["name"], r["namespace"]) == (chart, release_name, "istio-system"), res_name
        assert r["version"] == version
        assert r["repositoryOpts"]["repo"] == "https://istio-release.storage.googleapis.com/charts"
        assert int(r["timeout"]) >= 600
        assert not r.get("skipAwait") and not r.get("createNamespace")


def test_primary_install_order(ew):
    u = lambda n, t=None: ew.urn_of(n, t)  # noqa: E731
    ns, cacerts, base = u("east-istio-system", NS), u("east-cacerts", SECRET), u("east-istio-base", RELEASE)
    istiod, gw = u("east-istiod", RELEASE), u("east-eastwestgateway", RELEASE)
    assert ew.depends_on(base, ns, transitive=False)
    assert ew.depends_on(istiod, base, transitive=False) and ew.depends_on(istiod, cacerts, transitive=False)
    # The injector before the gateway pods (image: auto), MetalLB before the LoadBalancer Service.
    assert ew.depends_on(gw, istiod, transitive=False)
    assert ew.depends_on(gw, u("east-metallb-pool"), transitive=False)
    for name in EXPOSED:
        obj = ew.named(f"east-{name}")
        assert obj.provider_name == "east-k8s"
        assert obj.plain["metadata"] == {"name": name, "namespace": "istio-system"}
        assert ew.depends_on(u(f"east-{name}"), istiod, transitive=False)
    assert not [r for r in ew.records if any(r.name == f"west-{n}" for n in EXPOSED)], "expose objects are primary only"


def test_primary_istiod_values(ew):
    v = ew.named("east-istiod", RELEASE).plain["values"]
    assert v["global"]["meshID"] == stack_config()["mesh"]["id"]
    assert v["global"]["multiCluster"]["clusterName"] == "east" and v["global"]["network"] == "network1"
    assert v["global"]["hub"] == "gcr.io/istio-release"
    assert v["pilot"]["env"]["EXTERNAL_ISTIOD"] == "true"


def test_exposed_objects_reach_the_cluster_as_rendered(ew):
    for obj in istio.exposed_objects():
        rec = ew.named(f"east-{obj.name}")
        assert rec.typ == f"kubernetes:{obj.api_version}:{obj.kind}"
        assert rec.plain["spec"] == obj.spec


def test_discovery_address_is_read_from_the_gateway_service(ew):
    read = ew.urn_of("east-eastwestgateway-service", SVC)
    q = ew.requests[read]
    assert q["read"] and q["id"] == "istio-system/istio-eastwestgateway"
    assert ew.named("east-eastwestgateway-service", SVC).provider_name == "east-k8s"
    assert ew.depends_on(read, ew.urn_of("east-eastwestgateway", RELEASE), transitive=False)
    expected = ew.mocks.lb_ip("east-k8s", "istio-system/istio-eastwestgateway")
    assert ew.outputs["discoveryAddress"] == (expected, False)
    # The remote is fed exactly that address, and its istiod waits for the read.
    west_istiod = ew.named("west-istiod", RELEASE).plain["values"]
    assert west_istiod["global"]["remotePilotAddress"] == expected
    assert ew.depends_on(ew.urn_of("west-istiod", RELEASE), read, transitive=False)


def test_gateway_service_read_id_comes_from_the_release(tmp_path, monkeypatch):
    """The read's id is built from the Release's status, not a literal (first preview of a fresh stack)."""
    original = RecordingMocks.new_resource

    def renamed(self, args):
        rid, out = original(self, args)
        if args.typ == RELEASE and args.name == "east-eastwestgateway":
            out["status"] = dict(out["status"], name="renamed-by-helm", namespace="other-ns")
        return rid, out

    monkeypatch.setattr(RecordingMocks, "new_resource", renamed)
    res = run_main(stack_config())
    assert res.requests[res.urn_of("east-eastwestgateway-service", SVC)]["id"] == "other-ns/renamed-by-helm"


def test_remote_istiod_values(ew):
    v = ew.named("west-istiod", RELEASE).plain["values"]
    assert v["profile"] == "remote"
    assert v["istiodRemote"]["injectionPath"] == "/inject/cluster/west/net/network2"
    assert v["global"]["multiCluster"]["clusterName"] == "west" and v["global"]["network"] == "network2"
    root = ew.named("west-cacerts", SECRET).plain["stringData"]["root-cert.pem"]
    assert base64.b64decode(v["istiodRemote"]["injectionCABundle"]).decode() == root
    assert ew.named("west-istio-base", RELEASE).plain["values"] == {"profile": "remote"}
    urn = ew.urn_of("west-istiod", RELEASE)
    assert ew.depends_on(urn, ew.urn_of("west-istio-base", RELEASE), transitive=False)
    assert ew.depends_on(urn, ew.urn_of("west-cacerts", SECRET), transitive=False)


def test_reader_token_waits_for_its_service_account_and_rights(ew):
    tok = ew.named("west-istio-reader-token", SECRET)
    assert tok.provider_name == "west-k8s"
    p = tok.plain
    assert p["type"] == "kubernetes.io/service-account-token"
    assert p["metadata"]["namespace"] == "istio-system"
    ann = p["metadata"]["annotations"]
    assert ann["kubernetes.io/service-account.name"] == "istio-reader-service-account"
    assert ann["pulumi.com/waitFor"] == "jsonpath={.data.token}"
    urn = ew.urn_of("west-istio-reader-token", SECRET)
    assert ew.depends_on(urn, ew.urn_of("west-istio-base", RELEASE), transitive=False)  # the ServiceAccount
    assert ew.depends_on(urn, ew.urn_of("west-istiod", RELEASE), transitive=False)  # its ClusterRoleBinding


def test_remote_secret_on_the_primary(ew):
    rec = ew.named("west-istio-remote-secret", SECRET)
    assert rec.provider_name == "east-k8s"
    meta = rec.plain["metadata"]
    assert (meta["name"], meta["namespace"]) == ("istio-remote-secret-west", "istio-system")
    assert meta["labels"] == {"istio/multiCluster": "true"}
    assert meta["annotations"] == {"networking.istio.io/cluster": "west"}
    # Created once the primary exposes istiod (so east's istio-system and istiod exist).
    secret_urn = ew.urn_of("west-istio-remote-secret", SECRET)
    for exposed in ("east-istiod-gateway", "east-istiod-vs", "east-cross-network-gateway"):
        assert ew.depends_on(secret_urn, ew.urn_of(exposed), transitive=False), exposed
    cfg, secret = kubeconfig_of(ew, "west")
    assert secret, "the kubeconfig must travel as a secret"
    assert cfg["current-context"] == "west"
    assert [c["name"] for c in cfg["clusters"]] == [x["name"] for x in cfg["contexts"]] == [x["name"] for x in cfg["users"]] == ["west"]
    conf = load_with_kubernetes_client(cfg)
    assert conf.host == ew.outputs["apiServers"][0]["west"] == "https://192.168.50.3:8443"
    with open(conf.ssl_ca_cert) as f:
        assert f.read() == FAKE_CLUSTER_CA
    assert conf.api_key["BearerToken"] == "Bearer " + cfg["users"][0]["user"]["token"]
    assert "istio-reader-service-account" in cfg["users"][0]["user"]["token"]  # the mock's token for that account
    urn = ew.urn_of("west-istio-remote-secret", SECRET)
    assert ew.depends_on(urn, ew.urn_of("west-istio-reader-token", SECRET), transitive=False)
    assert ew.outputs["istioRemoteSecrets"] == ({"west": "istio-system/istio-remote-secret-west"}, False)


def test_remote_ready_handle_gates_the_remote_gateway(ew):
    u = ew.urn_of
    wait = u("west-istio-ca-root-cert", CMD)
    handle = [u("west-istiod", RELEASE), u("west-istio-remote-secret", SECRET), u("west-metallb-pool"), wait,
              *(u(f"east-{n}") for n in EXPOSED)]
    gw = u("west-eastwestgateway", RELEASE)
    for h in handle:
        assert ew.depends_on(gw, h, transitive=False), h
    v = ew.named("west-eastwestgateway", RELEASE).plain["values"]
    assert v["networkGateway"] == "network2" and v["name"] == "istio-eastwestgateway"
    # The wait itself only starts once the primary can lead the remote.
    for h in (u("west-istiod", RELEASE), u("west-istio-remote-secret", SECRET), *(u(f"east-{n}") for n in EXPOSED)):
        assert ew.depends_on(wait, h, transitive=False), h


def test_wait_command_targets_the_remote(ew):
    from components.cluster import default_kubeconfig_path

    rec = ew.named("west-istio-ca-root-cert", CMD)
    assert rec.plain["create"] == istio.ca_root_cert_wait_command(default_kubeconfig_path(), "west", cluster="west", primary="east")
    assert rec.plain["triggers"] == [ew.named("west-minikube", CMD).resource_id or "west-minikube-id"]
    assert ew.effective_deleted_with(ew.urn_of("west-istio-ca-root-cert", CMD)) == "", "a Command is never deleted_with"


def test_istio_resources_are_deleted_with_their_cluster(ew):
    owners = {"east-k8s": ew.urn_of("east-minikube", CMD), "west-k8s": ew.urn_of("west-minikube", CMD)}
    istio_parents = {ew.urn_of("east-istio"), ew.urn_of("west-istio")}
    checked = set()
    for urn, q in ew.requests.items():
        if q["parent"] in istio_parents and q["type"].startswith("kubernetes:") and not q["read"]:
            provider = q["provider"].split("::")[-2]
            assert ew.effective_deleted_with(urn) == owners[provider], q["name"]
            checked.add((provider, q["name"]))
    per_cluster = ("istio-system", "cacerts", "istio-base", "istiod", "eastwestgateway")
    assert checked == {
        *(("east-k8s", f"east-{n}") for n in (*per_cluster, *EXPOSED)),
        *(("west-k8s", f"west-{n}") for n in (*per_cluster, "istio-reader-token")),
        ("east-k8s", "west-istio-remote-secret"),  # on the primary, deleted with the primary
    }


def _plaintext(value, needles: list[str], path: str = "") -> list[str]:
    if is_secret_envelope(value):
        return []
    if isinstance(value, dict):
        return [h for k, v in value.items() for h in _plaintext(v, needles, f"{path}.{k}")]
    if isinstance(value, list):
        return [h for i, v in enumerate(value) for h in _plaintext(v, needles, f"{path}[{i}]")]
    if isinstance(value, str):
        return [path for n in needles if n in value]
    return []


def test_no_secret_in_plaintext(ew):
    cfg, _ = kubeconfig_of(ew, "west")
    token = cfg["users"][0]["user"]["token"]
    keys = [ew.named(f"{c}-cacerts", SECRET).plain["stringData"]["ca-key.pem"] for c in ("east", "west")]
    kubeconfig_text = unwrap(ew.named("west-istio-remote-secret", SECRET).inputs["stringData"])["west"]
    needles = [token, *keys, kubeconfig_text]
    assert all(needles) and all("PRIVATE KEY" in k for k in keys)
    for rec in ew.records:
        assert _plaintext(rec.inputs, needles) == [], rec.name
    for name, (value, is_secret) in ew.outputs.items():
        assert is_secret or _plaintext(value, needles) == [], name


def test_hostname_load_balancer_fails_clearly(tmp_path):
    with pytest.raises(Exception, match=r"hostname 'gw\.example\.com'.*remotePilotAddress must be an IP"):
        run_main(stack_config(),
                 lb_overrides={"istio-system/istio-eastwestgateway": {"loadBalancer": {"ingress": [{"hostname": "gw.example.com"}]}}})


def test_missing_load_balancer_ip_fails_clearly(tmp_path):
    with pytest.raises(Exception, match="no LoadBalancer address"):
        run_main(stack_config(), lb_overrides={"istio-system/istio-eastwestgateway": {"loadBalancer": {}}})


def test_three_remotes_get_three_of_everything(tmp_path):
    res = run_main(three_remotes())
    remotes = ("west", "north", "south")
    ip = res.mocks.lb_ip("east-k8s", "istio-system/istio-eastwestgateway")
    assert len([r for r in res.records if r.typ == "kiali-multicluster:index:IstioRemote"]) == 3
    assert len([r for r in res.records if r.typ == "kiali-multicluster:index:IstioPrimary"]) == 1
    secrets = [r for r in res.of_type(SECRET) if r.name.endswith("-istio-remote-secret")]
    assert sorted(r.plain["metadata"]["name"] for r in secrets) == sorted(f"istio-remote-secret-{n}" for n in remotes)
    assert {r.provider_name for r in secrets} == {"east-k8s"}
    for n, octet in zip(remotes, (3, 4, 5)):
        v = res.named(f"{n}-istiod", RELEASE).plain["values"]
        assert v["global"]["remotePilotAddress"] == ip
        assert v["istiodRemote"]["injectionPath"] == f"/inject/cluster/{n}/net/network-{n}"
        assert res.named(f"{n}-istio-system", NS).plain["metadata"]["labels"] == {"topology.istio.io/network": f"network-{n}"}
        cfg, secret = kubeconfig_of(res, n)
        assert secret and load_with_kubernetes_client(cfg).host == f"https://192.168.50.{octet}:8443"
        gw = res.urn_of(f"{n}-eastwestgateway", RELEASE)
        assert res.depends_on(gw, res.urn_of(f"{n}-istio-ca-root-cert", CMD), transitive=False)
        assert res.depends_on(gw, res.urn_of(f"{n}-metallb-pool"), transitive=False)
        assert res.named(f"{n}-eastwestgateway", RELEASE).provider_name == f"{n}-k8s"
    assert len([r for r in res.of_type(CMD) if r.name.endswith("-istio-ca-root-cert")]) == 3
    assert len([r for r in res.of_type(RELEASE) if r.name.endswith("-eastwestgateway")]) == 4
    assert len([r for r in res.of_type(RELEASE) if r.name.endswith("-istiod")]) == 4
    assert len([r for r in res.records if r.name.endswith("-istiod-vs")]) == 1
    assert res.outputs["istioRemoteSecrets"][0] == {n: f"istio-system/istio-remote-secret-{n}" for n in remotes}


def test_existing_clusters_need_no_metallb(tmp_path):
    res = run_main(existing_clusters())
    for cluster in ("east", "west"):
        gw = res.urn_of(f"{cluster}-eastwestgateway", RELEASE)
        deps = set(res.requests[gw]["dependencies"])
        assert not [d for d in deps if "ConfigMapPatch" in d]
    for urn, q in res.requests.items():
        if q["type"].startswith("kubernetes:") and q["name"].startswith(("east-", "west-")):
            assert res.effective_deleted_with(urn) == "", f"{q['name']} must be deleted from an existing cluster"
    wait = res.named("west-istio-ca-root-cert", CMD).plain
    assert shlex.split(wait["create"])[:5] == ["kubectl", "--kubeconfig", "/home/me/west.yaml", "--context", "kind-west"]
    assert "triggers" not in wait or not wait["triggers"]
    cfg, _ = kubeconfig_of(res, "west")
    assert load_with_kubernetes_client(cfg).host == "https://172.18.0.3:6443"
    assert res.outputs["discoveryAddress"][0] == res.mocks.lb_ip("east-k8s", "istio-system/istio-eastwestgateway")


def test_every_east_west_gateway_address_is_exported(ew):
    # Each cluster's gateway Service is read back (id from its own release) and exported by cluster.
    addresses, secret = ew.outputs["eastWestGateways"]
    assert not secret
    assert addresses == {"east": "192.168.50.20", "west": "192.168.50.30"}
    west_read = ew.urn_of("west-eastwestgateway-service", SVC)
    assert ew.requests[west_read]["read"]
    assert ew.depends_on(west_read, ew.urn_of("west-eastwestgateway", RELEASE))
