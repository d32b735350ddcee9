"""Cross-cluster access, shared by Istio and Kiali: service-account tokens and one-cluster kubeconfigs.

Both ``istioctl create-remote-secret`` and Kiali's ``kiali-prepare-remote-cluster.sh`` end in the
same object: a Secret on the primary whose single key (the remote cluster's name) holds a
kubeconfig with one cluster, one context, one user and ``current-context`` set. This module
renders that kubeconfig (pure) and creates the token Secret and the access Secret (thin wiring).
"""

from __future__ import annotations

import base64

import pulumi
import pulumi_kubernetes as k8s
import yaml

TOKEN_WAIT = "jsonpath={.data.token}"  # the built-in awaiter gives up on token Secrets after 5 s
TOKEN_TIMEOUT_SECONDS = "300"


def kubeconfig(cluster: str, server: str, ca_data: str, token: str) -> str:
    """A kubeconfig with exactly one cluster/context/user named ``cluster`` and current-context set.

    ``ca_data`` is base64 PEM (as in a token Secret's ``ca.crt`` data); ``token`` is the decoded token.
    """
    if not server.startswith("https://"):
        raise ValueError(f"kubeconfig server for {cluster} must be an https URL, got {server!r}")
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": cluster,
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": cluster}}],
        "users": [{"name": cluster, "user": {"token": token}}],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def decode_b64(value: str) -> str:
    return base64.b64decode(value).decode()


def token_secret(resource_name: str, *, namespace: str, service_account: str, opts: pulumi.ResourceOptions,
                 secret_name: str | None = None) -> k8s.core.v1.Secret:
    """A long-lived ``kubernetes.io/service-account-token`` Secret, awaited until the token is filled.

    ``opts`` must make it depend on whatever creates the ServiceAccount: a token Secret created
    before its account is deleted by Kubernetes.
    """
    return k8s.core.v1.Secret(
        resource_name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=secret_name or f"{service_account}-token",
            namespace=namespace,
            annotations={
                "kubernetes.io/service-account.name": service_account,
                "pulumi.com/waitFor": TOKEN_WAIT,
                "pulumi.com/timeoutSeconds": TOKEN_TIMEOUT_SECONDS,
            },
        ),
        type="kubernetes.io/service-account-token",
        opts=opts,
    )


def token_kubeconfig(cluster: str, server: pulumi.Input[str], token: k8s.core.v1.Secret) -> pulumi.Output[str]:
    """The one-cluster kubeconfig for ``cluster`` from a token Secret's data; a secret end to end."""

    def render(args: list) -> str:
        srv, data = args
        data = data or {}
        if not data.get("token"):
            raise ValueError(f"the service-account token Secret for {cluster} has no token yet")
        if not data.get("ca.crt"):
            raise ValueError(f"the service-account token Secret for {cluster} has no ca.crt")
        return kubeconfig(cluster, srv, data["ca.crt"], decode_b64(data["token"]))

    return pulumi.Output.secret(pulumi.Output.all(server, token.data).apply(render))


def access_secret(resource_name: str, *, name: str, namespace: str, cluster: str, labels: dict, annotations: dict,
                  kubeconfig_text: pulumi.Input[str], opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret:
    """The Secret on the primary holding ``{cluster: kubeconfig}`` (Istio's and Kiali's shape)."""
    return k8s.core.v1.Secret(
        resource_name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=labels, annotations=annotations),
        string_data={cluster: pulumi.Output.secret(kubeconfig_text)},
        opts=opts,
    )

