"""Stack config: the committed file parses to the tutorial's values; bad input fails before any resource."""

import copy
from pathlib import Path

import pytest
import yaml

from components import config as C
from harness import STACK_FILE, run_main, stack_config


def base() -> dict:
    return copy.deepcopy(stack_config())


def test_stack_file_holds_the_tutorial_values():
    cfg = C.parse(stack_config())
    assert cfg.mesh_id == "mesh1"
    assert (cfg.versions.istio, cfg.versions.kubernetes, cfg.versions.kiali) == ("1.30.3", "v1.34.0", "2.29.0")
    assert cfg.versions.travels == "7ee391299c08f0770e3f0da4fba0fc1aca8948f2"
    assert cfg.minikube == C.MinikubeNetwork(name="istio", subnet="192.168.50.0/24", gateway="192.168.50.1", driver="docker")
    assert (cfg.primary.name, cfg.primary.network) == ("east", "network1")
    assert cfg.primary.minikube == C.MinikubeSpec(memory_mb=8192, cpus=4, static_ip="192.168.50.2")
    assert [(r.name, r.network, r.travels) for r in cfg.remotes] == [("west", "network2", ("travels-v2", "travels-v3"))]
    assert cfg.remotes[0].minikube.static_ip == "192.168.50.3"
    assert cfg.lb_pool(cfg.primary) == "192.168.50.20-192.168.50.29"
    assert cfg.lb_pool(cfg.remotes[0]) == "192.168.50.30-192.168.50.39"
    assert cfg.kiali == C.KialiSpec(auth="anonymous", log_level="debug", ingress=True)


def test_only_the_config_map_of_the_stack_file_is_read(tmp_path):
    # `pulumi stack select --create` appends encryptionsalt: to the committed file.
    text = Path(STACK_FILE).read_text(encoding="utf-8") + "encryptionsalt: v1:abc:v1:def:ghi\nsecretsprovider: passphrase\n"
    p = tmp_path / "Pulumi.east-west.yaml"
    p.write_text(text)
    assert C.read_stack_file(str(p)) == stack_config()
    assert "encryptionsalt" in yaml.safe_load(text)


def test_memory_sizes_normalise_to_megabytes():
    assert C.parse_memory_mb("8g") == 8192
    assert C.parse_memory_mb("8192mb") == 8192
    assert C.parse_memory_mb("8GB") == 8192
    assert C.parse_memory_mb("8192m") == 8192
    assert C.parse_memory_mb("eight") is None


def test_existing_clusters_parse_without_minikube():
    raw = base()
    del raw["minikube"]
    raw["primary"] = {"name": "east", "network": "network1",
                      "existing": {"context": "kind-east", "apiServer": "https://172.18.0.2:6443"}}
    raw["remotes"] = [{"name": "west", "network": "network2", "kubeconfig": "/tmp/west.kubeconfig",
                       "existing": {"context": "kind-west", "apiServer": "https://172.18.0.3:6443/"}}]
    cfg = C.parse(raw)
    assert cfg.minikube is None
    assert cfg.primary.existing == C.ExistingSpec(context="kind-east", api_server="https://172.18.0.2:6443")
    assert cfg.remotes[0].kubeconfig == "/tmp/west.kubeconfig"
    assert cfg.lb_pool(cfg.primary) is None


def _set(raw: dict, path: str, value):
    """Set a dotted path like ``remotes.0.minikube.memory``; value DELETE removes it."""
    parts = path.split(".")
    node = raw
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if value is DELETE:
        if isinstance(node, list):
            del node[int(last)]
        else:
            del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


DELETE = object()

# (id, edits, the config key the error must name, words the message must contain)
BAD = [
    ("name-not-dns", [("primary.name", "East_1")], "primary.name", "DNS-1123"),
    ("name-duplicate", [("remotes.0.name", "east")], "remotes[0].name", "already used"),
    ("network-duplicate", [("remotes.0.network", "network1")], "remotes[0].network", "already used"),
    ("network-is-cluster-name", [("remotes.0.network", "west")], "remotes[0].network", "also a cluster name"),
    ("mesh-id-empty", [("mesh.id", "")], "mesh.id", "non-empty"),
    ("mesh-missing", [("mesh", DELETE)], "mesh", "required"),
    ("istio-version", [("versions.istio", "1.30")], "versions.istio", "1.30.3"),
    ("kubernetes-version", [("versions.kubernetes", "1.34.0")], "versions.kubernetes", "v1.34.0"),
    ("travels-commit", [("versions.travels", "master")], "versions.travels", "40-character"),
    ("memory-unparseable", [("remotes.0.minikube.memory", "8x")], "remotes[0].minikube.memory", "8g or 8192mb"),
    ("memory-too-small", [("primary.minikube.memory", "2g")], "primary.minikube.memory", "minimum"),
    ("cpus-too-few", [("primary.minikube.cpus", 1)], "primary.minikube.cpus", "at least 2"),
    ("subnet-not-24", [("minikube.subnet", "192.168.0.0/16")], "minikube.subnet", "private IPv4 /24"),
    ("subnet-public", [("minikube.subnet", "8.8.8.0/24")], "minikube.subnet", "private IPv4 /24"),
    ("subnet-garbage", [("minikube.subnet", "192.168.50.1/24")], "minikube.subnet", "not a network address"),
    ("docker-network-is-cluster-name", [("minikube.network", "west")], "minikube.network", "also a cluster name"),
    ("driver-unsupported", [("minikube.driver", "virtualbox")], "minikube.driver", "static-ip"),
    ("ip-outside-subnet", [("remotes.0.minikube.staticIp", "192.168.60.3")], "remotes[0].minikube.staticIp", "not a host address"),
    ("ip-is-gateway", [("primary.minikube.staticIp", "192.168.50.1")], "primary.minikube.staticIp", "gateway"),
    ("ip-duplicate", [("remotes.0.minikube.staticIp", "192.168.50.2")], "remotes[0].minikube.staticIp", "already used"),
    ("ip-inside-lb-range", [("primary.minikube.staticIp", "192.168.50.35")], "primary.minikube.staticIp", "inside"),
    ("lb-range-reversed", [("primary.loadBalancerRange", "29-20")], "primary.loadBalancerRange", "2 <= A <= B <= 254"),
    ("lb-range-format", [("primary.loadBalancerRange", "20..29")], "primary.loadBalancerRange", "A-B"),
    ("lb-range-overlap", [("remotes.0.loadBalancerRange", "25-35")], "remotes[0].loadBalancerRange", "overlaps"),
    ("lb-range-shares-an-end", [("remotes.0.loadBalancerRange", "29-35")], "remotes[0].loadBalancerRange", "overlaps"),
    ("lb-range-below-2", [("primary.loadBalancerRange", "1-9")], "primary.loadBalancerRange", "2 <= A <= B <= 254"),
    ("lb-range-above-254", [("remotes.0.loadBalancerRange", "250-255")], "remotes[0].loadBalancerRange", "2 <= A <= B <= 254"),
    ("kubeconfig-on-minikube", [("primary.kubeconfig", "/tmp/k")], "primary.kubeconfig", "only applies to existing clusters"),
    ("lb-range-missing", [("primary.loadBalancerRange", DELETE)], "primary.loadBalancerRange", "required"),
    ("minikube-and-existing", [("remotes.0.existing", {"context": "w", "apiServer": "https://10.0.0.3:6443"})],
     "remotes[0]", "exactly one of"),
    ("neither-minikube-nor-existing", [("remotes.0.minikube", DELETE)], "remotes[0]", "exactly one of"),
    ("existing-http", [("remotes.0.minikube", DELETE), ("remotes.0.loadBalancerRange", DELETE),
                       ("remotes.0.existing", {"context": "w", "apiServer": "http://10.0.0.3:6443"})],
     "remotes[0].existing.apiServer", "https URL"),
    ("existing-loopback", [("remotes.0.minikube", DELETE), ("remotes.0.loadBalancerRange", DELETE),
                           ("remotes.0.existing", {"context": "w", "apiServer": "https://127.0.0.1:6443"})],
     "remotes[0].existing.apiServer", "loopback"),
    ("existing-with-lb-range", [("remotes.0.minikube", DELETE),
                                ("remotes.0.existing", {"context": "w", "apiServer": "https://10.0.0.3:6443"})],
     "remotes[0].loadBalancerRange", "not allowed with existing"),
    ("remotes-empty", [("remotes", [])], "remotes", "non-empty"),
    ("unknown-top-key", [("remote", [])], "remote", "unknown config key"),
    ("unknown-nested-key", [("primary.minikube.memroy", "8g")], "primary.minikube.memroy", "unknown key"),
    ("kiali-token-auth", [("kiali.auth", "token")], "kiali.auth", "home cluster only"),
    ("kiali-openid-without-issuer", [("kiali.auth", "openid"), ("kiali.openid", {"clientId": "kiali"})],
     "kiali.openid.issuerUri", "is required"),
    ("kiali-openid-http-issuer", [("kiali.auth", "openid"), ("kiali.openid", {"issuerUri": "http://idp", "clientId": "k"})],
     "kiali.openid.issuerUri", "https URL"),
    ("kiali-openid-with-anonymous", [("kiali.openid", {"issuerUri": "https://idp", "clientId": "k"})], "kiali.openid", "only applies"),
    ("kiali-log-level", [("kiali.logLevel", "verbose")], "kiali.logLevel", "log level"),
    ("travels-unknown", [("remotes.0.travels", ["travels-v2", "travels-v9"])], "remotes[0].travels[1]", "travels-v3"),
    ("travels-listed-twice", [("remotes.0.travels", ["travels-v2", "travels-v2"])], "remotes[0].travels", "twice"),
    ("travels-on-primary", [("primary.travels", ["travels-v2"])], "primary.travels", "unknown key"),
]


@pytest.mark.parametrize("edits,key,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_fails_before_any_resource(edits, key, words):
    raw = base()
    for path, value in edits:
        _set(raw, path, value)
    with pytest.raises(C.ConfigError) as pure:
        C.parse(raw)
    full_key = f"kiali-multicluster:{key}"
    matching = [msg for k, msg in pure.value.problems if k == full_key]
    assert matching, f"no problem reported for {full_key}: {pure.value.problems}"
    assert any(words in msg for msg in matching), matching

    # The whole program stops at config loading: nothing is registered.
    sink: list = []
    with pytest.raises(Exception) as run_err:
        run_main(raw, sink=sink)
    assert full_key in str(run_err.value)
    assert sink[0].records == []
    assert [q["type"] for q in sink[0].requests.values()] == ["pulumi:pulumi:Stack"]


def test_openid_settings_reach_the_spec():
    raw = base()
    raw["kiali"] = {"auth": "openid", "openid": {"issuerUri": "https://idp.example.com/realms/mesh", "clientId": "kiali"}}
    k = C.parse(raw).kiali
    assert (k.auth, k.openid_issuer_uri, k.openid_client_id) == ("openid", "https://idp.example.com/realms/mesh", "kiali")


def test_every_problem_is_reported_at_once():
    raw = base()
    _set(raw, "primary.minikube.cpus", 1)
    _set(raw, "kiali.auth", "header")
    _set(raw, "versions.istio", "latest")
    with pytest.raises(C.ConfigError) as e:
        C.parse(raw)
    keys = {k for k, _ in e.value.problems}
    assert {"kiali-multicluster:primary.minikube.cpus", "kiali-multicluster:kiali.auth",
            "kiali-multicluster:versions.istio"} <= keys
    assert "3 problem(s)" in str(e.value)
