"""The whole program under mocks: docker network, clusters, MetalLB, providers, deleted_with, mesh CA."""


import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding

from components.ca import CACERTS_KEYS, MeshCA, MeshCAArgs, cert_chain
from components.cluster import default_kubeconfig_path, metallb_config
from harness import existing_clusters, is_secret_envelope, run, run_main, stack_config, three_remotes, unwrap

CMD = "command:local:Command"
PROVIDER = "pulumi:providers:kubernetes"


@pytest.fixture(scope="module")
def ew():
    return run_main()




def test_docker_network_comes_first_and_clusters_start_concurrently(ew):
    net = ew.urn_of("docker-network-istio", CMD)
    east, west = ew.urn_of("east-minikube", CMD), ew.urn_of("west-minikube", CMD)
    assert ew.depends_on(east, net) and ew.depends_on(west, net)
    assert not ew.depends_on(east, west) and not ew.depends_on(west, east)
    assert ew.requests[net]["deleteBeforeReplace"]
    net_inputs = ew.named("docker-network-istio", CMD).plain
    assert net_inputs["triggers"] == ["istio", "192.168.50.0/24", "192.168.50.1"]
    assert "network-delete" in net_inputs["delete"]


@pytest.mark.parametrize("name,ip", [("east", "192.168.50.2"), ("west", "192.168.50.3")])
def test_minikube_profile_commands(ew, name, ip):
    start = ew.named(f"{name}-minikube", CMD).plain
    assert f"--static-ip {ip}" in start["create"]
    assert f"--profile {name}" in start["create"] and "--network istio" in start["create"]
    assert start["create"].startswith("python3 tools/minikube_ops.py start ")
    # What minikube cannot change in place replaces the cluster (normalised: 8g -> 8192 MB).
    assert start["triggers"] == ["docker", "istio", "192.168.50.0/24", ip, 8192, 4, "v1.34.0"]
    assert start["update"] == f"python3 tools/minikube_ops.py status --profile {name} --static-ip {ip}"
    assert start["delete"] == f"python3 tools/minikube_ops.py delete --profile {name}"
    urn = ew.urn_of(f"{name}-minikube", CMD)
    assert ew.requests[urn]["deleteBeforeReplace"]
    addon = ew.urn_of(f"{name}-metallb-addon", CMD)
    assert ew.depends_on(addon, urn)
    # A re-created cluster (new start id) gets the addon again.
    assert ew.named(f"{name}-metallb-addon", CMD).plain["triggers"] == [f"{name}-minikube-id"]


@pytest.mark.parametrize("name,pool", [("east", "192.168.50.20-192.168.50.29"), ("west", "192.168.50.30-192.168.50.39")])
def test_metallb_pool_patch(ew, name, pool):
    rec = ew.named(f"{name}-metallb-pool", "kubernetes:core/v1:ConfigMapPatch")
    p = rec.plain
    assert p["metadata"]["name"] == "config" and p["metadata"]["namespace"] == "metallb-system"
    assert p["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"
    assert p["data"]["config"] == metallb_config(pool)
    assert f"addresses:\n  - {pool}\n" in p["data"]["config"] and "protocol: layer2" in p["data"]["config"]
    assert rec.provider_name == f"{name}-k8s"
    urn = ew.urn_of(f"{name}-metallb-pool")
    assert ew.depends_on(urn, ew.urn_of(f"{name}-metallb-addon", CMD))


@pytest.mark.parametrize("name", ["east", "west"])
def test_providers_read_the_kubeconfig_file_by_context(ew, name):
    p = ew.named(f"{name}-k8s", PROVIDER).plain
    assert p["kubeconfig"] == default_kubeconfig_path()
    assert p["context"] == name
    assert p["clusterIdentifier"] == f"{name}-{name}-minikube-id"
    assert p["enableConfigMapMutable"] == "true" and p["enableSecretMutable"] == "true"
    assert p["deleteUnreachable"] == "false"
    # The context is derived from the start command, so it stays unknown until the profile exists
    # (a fresh stack's first preview never configures a provider against a missing cluster).
    provider = ew.requests[ew.urn_of(f"{name}-k8s", PROVIDER)]
    start = ew.urn_of(f"{name}-minikube", CMD)
    assert start in provider["propertyDependencies"]["context"]
    assert start in provider["propertyDependencies"]["clusterIdentifier"]


def test_kubeconfig_path_follows_minikube():
    assert default_kubeconfig_path({}) == "~/.kube/config"
    assert default_kubeconfig_path({"KUBECONFIG": "/a/first:/b/second"}) == "/a/first"
    assert default_kubeconfig_path({"KUBECONFIG": ":/b/second"}) == "/b/second"


def _cluster_of_provider(result) -> dict[str, str]:
    """provider resource name -> URN of that cluster's start command."""
    return {f"{n}-k8s": result.urn_of(f"{n}-minikube", CMD)
            for n in {r.name[: -len("-minikube")] for r in result.of_type(CMD) if r.name.endswith("-minikube")}}


def assert_teardown_coverage(result):
    owners = _cluster_of_provider(result)
    k8s = [r for r in result.records if r.typ.startswith("kubernetes:") and not r.read]
    assert k8s, "no Kubernetes resources registered"
    for rec in k8s:
        assert rec.provider and "::default_" not in rec.provider, f"{rec.name} has no explicit provider"
        urn = result.urn_of(rec.name, rec.typ)
        assert result.effective_deleted_with(urn) == owners[rec.provider_name], rec.name
    for urn, q in result.requests.items():
        if q["type"] == CMD:
            assert result.effective_deleted_with(urn) == "", f"{q['name']} would be skipped on destroy"


def test_every_cluster_resource_is_deleted_with_its_cluster(ew):
    assert_teardown_coverage(ew)


def test_exports(ew):
    assert ew.outputs["contexts"] == ({"east": "east", "west": "west"}, False)
    assert ew.outputs["nodeIps"] == ({"east": "192.168.50.2", "west": "192.168.50.3"}, False)
    assert ew.outputs["apiServers"][0] == {"east": "https://192.168.50.2:8443", "west": "https://192.168.50.3:8443"}
    assert ew.outputs["loadBalancerRanges"][0] == {"east": "192.168.50.20-192.168.50.29", "west": "192.168.50.30-192.168.50.39"}


def test_three_remotes_get_three_of_everything():
    r = run_main(three_remotes())
    starts = sorted(rec.name for rec in r.of_type(CMD) if rec.name.endswith("-minikube"))
    assert starts == ["east-minikube", "north-minikube", "south-minikube", "west-minikube"]
    pools = {rec.provider_name: rec.plain["data"]["config"] for rec in r.of_type("kubernetes:core/v1:ConfigMapPatch")}
    assert pools["south-k8s"] == metallb_config("192.168.50.50-192.168.50.59")
    assert len(r.of_type(PROVIDER)) == 4
    assert len([x for x in r.of_type(CMD) if x.name.startswith("docker-network")]) == 1
    assert_teardown_coverage(r)


def test_existing_clusters_create_nothing_but_providers():
    r = run_main(existing_clusters())
    assert not [x for x in r.of_type(CMD) if "minikube_ops" in str(x.plain.get("create"))]
    assert not r.of_type("kubernetes:core/v1:ConfigMapPatch")
    east, west = r.named("east-k8s", PROVIDER).plain, r.named("west-k8s", PROVIDER).plain
    assert (east["context"], east["clusterIdentifier"]) == ("kind-east", "existing-kind-east")
    assert (west["kubeconfig"], west["context"]) == ("/home/me/west.yaml", "kind-west")
    assert r.outputs["apiServers"][0] == {"east": "https://172.18.0.2:6443", "west": "https://172.18.0.3:6443"}
    for rec in r.records:
        if rec.typ.startswith("kubernetes:") and not rec.read:
            assert rec.provider_name in ("east-k8s", "west-k8s"), rec.name


# --- the mesh CA -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_run():
    def program():
        ca = MeshCA("mesh-ca", MeshCAArgs(clusters=["east", "west"]))
        pulumi.export("cacerts", ca.cacerts)
        pulumi.export("root", ca.root_cert_pem)
    return run(program, stack_config())


def test_cacerts_are_four_secret_entries_per_cluster(ca_run):
    value, secret = ca_run.outputs["cacerts"]
    assert secret
    assert set(value) == {"east", "west"}
    for entries in value.values():
        assert tuple(sorted(entries)) == tuple(sorted(CACERTS_KEYS))
    assert ca_run.outputs["root"][1]


def _cert(pem):
    return x509.load_pem_x509_certificate(pem.encode())


def _chain(pem: str) -> list:
    return x509.load_pem_x509_certificates(pem.encode())


@pytest.mark.parametrize("cluster", ["east", "west"])
def test_intermediate_chains_to_the_shared_root(ca_run, cluster):
    cacerts = ca_run.outputs["cacerts"][0]
    e = cacerts[cluster]
    root, inter = _cert(e["root-cert.pem"]), _cert(e["ca-cert.pem"])
    # root: self-signed CA, O=Istio CN=Root CA, 4096-bit, signing usages
    assert root.subject.rfc4514_string() == "CN=Root CA,O=Istio"
    assert root.issuer == root.subject
    assert root.public_key().key_size == 4096
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.digital_signature and ku.key_encipherment and ku.crl_sign
    assert (root.not_valid_after_utc - root.not_valid_before_utc).days == 3650
    # intermediate: signed by the root, CA, L=<cluster>, SAN istiod.istio-system.svc
    assert inter.subject.rfc4514_string() == f"CN=Intermediate CA,O=Istio,L={cluster}"
    assert inter.issuer == root.subject
    root.public_key().verify(inter.signature, inter.tbs_certificate_bytes, padding.PKCS1v15(), inter.signature_hash_algorithm)
    inter.verify_directly_issued_by(root)
    bc = inter.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca
    san = inter.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc"]
    assert inter.public_key().key_size == 4096
    # ca-key.pem is the intermediate's key
    key = serialization.load_pem_private_key(e["ca-key.pem"].encode(), password=None)
    assert key.public_key().public_numbers() == inter.public_key().public_numbers()
    # cert-chain.pem: intermediate first, then root
    chain = _chain(e["cert-chain.pem"])
    assert [c.subject for c in chain] == [inter.subject, root.subject]
    assert chain[0].fingerprint(inter.signature_hash_algorithm) == inter.fingerprint(inter.signature_hash_algorithm)


def test_clusters_share_the_root_but_not_the_intermediate(ca_run):
    c = ca_run.outputs["cacerts"][0]
    assert c["east"]["root-cert.pem"] == c["west"]["root-cert.pem"]
    assert c["east"]["ca-cert.pem"] != c["west"]["ca-cert.pem"]
    assert c["east"]["ca-key.pem"] != c["west"]["ca-key.pem"]


def test_intermediate_requests_path_length_zero(ca_run):
    for cluster in ("east", "west"):
        cert = ca_run.named(f"mesh-ca-{cluster}-cert", "tls:index/locallySignedCert:LocallySignedCert").plain
        assert cert["isCaCertificate"] is True and cert["maxPathLength"] == 0
        assert set(cert["allowedUses"]) == {"cert_signing", "crl_signing", "digital_signature", "key_encipherment"}


def test_ca_private_keys_never_travel_in_plaintext(ca_run):
    checked = 0
    for rec in ca_run.records:
        for field in ("caPrivateKeyPem", "privateKeyPem"):
            if field in rec.inputs:
                assert is_secret_envelope(rec.inputs[field]), f"{rec.name}.{field} is plaintext"
                assert "PRIVATE KEY" in unwrap(rec.inputs[field])
                checked += 1
    assert checked == 5  # the root certificate, two CSRs, two signed intermediates


def test_cert_chain_joins_pems_in_order():
    assert cert_chain("A\n", "B\n") == "A\nB\n"
    assert cert_chain("A", "B\n") == "A\nB\n"
