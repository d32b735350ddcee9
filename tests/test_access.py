"""components.access: the one-cluster kubeconfig (pure), token Secrets and access Secrets (under mocks).

Facts: istioctl create-remote-secret and kiali-prepare-remote-cluster.sh both write a kubeconfig with
one cluster, one context and one user named after the remote, and current-context set; client-go
(istiod, Kiali) fails with "no configuration has been provided" without current-context.
"""

from __future__ import annotations

import base64

import kubernetes
import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components import access
from harness import FAKE_CLUSTER_CA, is_secret_envelope, run, unwrap

SECRET = "kubernetes:core/v1:Secret"
CA_B64 = base64.b64encode(FAKE_CLUSTER_CA.encode()).decode()


def load(text: str) -> kubernetes.client.Configuration:
    conf = kubernetes.client.Configuration()
    # No context= argument: the loader must find current-context, as client-go does.
    kubernetes.config.load_kube_config_from_dict(yaml.safe_load(text), client_configuration=conf, persist_config=False)
    return conf


def test_kubeconfig_loads_with_the_kubernetes_client():
    text = access.kubeconfig("west", "https://192.168.50.3:8443", CA_B64, "s3cr3t-token")
    conf = load(text)
    assert conf.host == "https://192.168.50.3:8443"
    assert conf.api_key["BearerToken"] == "Bearer s3cr3t-token"
    with open(conf.ssl_ca_cert) as f:
        assert f.read() == FAKE_CLUSTER_CA


def test_kubeconfig_has_one_cluster_context_user_and_current_context():
    doc = yaml.safe_load(access.kubeconfig("north", "https://10.0.0.4:6443", CA_B64, "t"))
    assert doc["current-context"] == "north"
    assert [c["name"] for c in doc["clusters"]] == ["north"]
    assert doc["contexts"] == [{"name": "north", "context": {"cluster": "north", "user": "north"}}]
    assert doc["users"] == [{"name": "north", "user": {"token": "t"}}]
    assert doc["clusters"][0]["cluster"]["certificate-authority-data"] == CA_B64


def test_kubeconfig_without_current_context_would_not_load():
    """Guards the reason current-context is set: the client refuses a kubeconfig without one."""
    doc = yaml.safe_load(access.kubeconfig("west", "https://10.0.0.3:6443", CA_B64, "t"))
    del doc["current-context"]
    with pytest.raises(Exception):  # noqa: B017 - the client raises ConfigException or KeyError by version
        kubernetes.config.load_kube_config_from_dict(doc, client_configuration=kubernetes.client.Configuration(),
                                                     persist_config=False)


@pytest.mark.parametrize("server", ["http://10.0.0.3:6443", "10.0.0.3:6443", ""])
def test_kubeconfig_needs_an_https_server(server):
    with pytest.raises(ValueError, match="https"):
        access.kubeconfig("west", server, CA_B64, "t")


def test_decode_b64_round_trip():
    assert access.decode_b64(base64.b64encode(b"token-\xc3\xa9").decode()) == "token-\u00e9"


@pytest.fixture(scope="module")
def wired():
    def program():
        p = k8s.Provider("p", kubeconfig="/dev/null")
        sa = k8s.core.v1.ServiceAccount("sa", metadata={"name": "reader", "namespace": "ns"},
                                        opts=pulumi.ResourceOptions(provider=p))
        tok = access.token_secret("tok", namespace="ns", service_account="reader",
                                  opts=pulumi.ResourceOptions(provider=p, depends_on=[sa]))
        named = access.token_secret("named", namespace="ns", service_account="reader", secret_name="custom",
                                    opts=pulumi.ResourceOptions(provider=p, depends_on=[sa]))
        text = access.token_kubeconfig("west", "https://10.0.0.3:6443", tok)
        access.access_secret("acc", name="remote-west", namespace="istio-system", cluster="west",
                             labels={"l": "1"}, annotations={"a": "2"}, kubeconfig_text=text,
                             opts=pulumi.ResourceOptions(provider=p))
        pulumi.export("kubeconfig", text)
        pulumi.export("named", named.metadata.name)

    return run(program, {})


def test_token_secret_is_a_service_account_token_awaited_for_its_token(wired):
    tok = wired.named("tok", SECRET).plain
    assert tok["type"] == "kubernetes.io/service-account-token"
    assert tok["metadata"]["name"] == "reader-token" and tok["metadata"]["namespace"] == "ns"
    ann = tok["metadata"]["annotations"]
    assert ann["kubernetes.io/service-account.name"] == "reader"
    assert ann["pulumi.com/waitFor"] == "jsonpath={.data.token}"
    assert int(ann["pulumi.com/timeoutSeconds"]) > 5  # longer than the built-in 5 s Secret await
    assert wired.depends_on(wired.urn_of("tok", SECRET), wired.urn_of("sa"), transitive=False)
    assert wired.outputs["named"] == ("custom", False)


def test_token_kubeconfig_is_secret_and_built_from_the_token_secret(wired):
    text, secret = wired.outputs["kubeconfig"]
    assert secret
    conf = load(text)
    assert conf.host == "https://10.0.0.3:6443"
    # The mock fills data.token (base64) for service-account-token Secrets; the kubeconfig holds it decoded.
    assert conf.api_key["BearerToken"] == "Bearer token-tok-reader"


def test_access_secret_holds_one_secret_key(wired):
    rec = wired.named("acc", SECRET)
    meta = rec.plain["metadata"]
    assert (meta["name"], meta["namespace"], meta["labels"], meta["annotations"]) == (
        "remote-west", "istio-system", {"l": "1"}, {"a": "2"})
    raw = rec.inputs["stringData"]
    assert is_secret_envelope(raw) or is_secret_envelope(raw["west"])
    assert list(unwrap(raw)) == ["west"]
    assert unwrap(raw)["west"] == wired.outputs["kubeconfig"][0]


def test_token_kubeconfig_without_a_token_fails_clearly():
    def program():
        p = k8s.Provider("p", kubeconfig="/dev/null")
        not_a_token = k8s.core.v1.Secret("plain", metadata={"name": "x", "namespace": "ns"},
                                         opts=pulumi.ResourceOptions(provider=p))
        pulumi.export("kubeconfig", access.token_kubeconfig("west", "https://10.0.0.3:6443", not_a_token))

    with pytest.raises(Exception, match="has no token yet"):
        run(program, {})
