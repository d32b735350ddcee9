"""KialiServer: the kiali-server chart on the primary, watching every remote through its own secret.

Replaces the tutorial's ``helm upgrade --install ... kiali-server`` (run twice so Helm ``lookup``
finds the remote secrets) and ``kiali-prepare-remote-cluster.sh``. Facts carried over:

- on each remote, the same chart with ``deployment.remote_cluster_resources_only`` renders the
  ``kiali`` ServiceAccount and a view-only ClusterRole/Binding; a service-account-token Secret
  for that account gives the credentials;
- on the primary, Secret ``kiali-remote-cluster-secret-<remote>`` (label ``kiali.io/multiCluster``,
  annotation ``kiali.io/cluster``) holds one key, the remote's name, with a one-cluster kubeconfig;
- Kiali is told about each secret explicitly (``clustering.clusters``, autodetection off): the
  result does not depend on what exists when the chart renders, and one ``helm install`` suffices.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components import access
from components.cluster import Cluster, default_kubeconfig_path
from components.config import KialiSpec

CHART = "kiali-server"
REPO = "https://kiali.org/helm-charts"
RELEASE = "kiali"
NAMESPACE = "istio-system"
SERVICE_ACCOUNT = "kiali"  # deployment.instance_name
TOKEN_SECRET = "kiali-remote-token"
SECRET_PREFIX = "kiali-remote-cluster-secret-"
MULTICLUSTER_LABEL = "kiali.io/multiCluster"
CLUSTER_ANNOTATION = "kiali.io/cluster"
SERVER_PORT = 20001
WEB_ROOT = "/kiali"
TIMEOUT_SECONDS = 600
# Kiali's token and header logins create clients for the home cluster only.
MULTICLUSTER_AUTH = ("anonymous", "openid", "openshift")


def remote_secret_name(remote: str) -> str:
    return f"{SECRET_PREFIX}{remote}"


def kiali_values(*, spec: KialiSpec, primary: str, remotes: Sequence[str], prometheus_url: str) -> dict:
    """Values of the kiali-server chart on the primary."""
    if spec.auth not in MULTICLUSTER_AUTH:
        raise ValueError(
            f"Kiali auth {spec.auth!r} cannot show remote clusters (its logins build clients for the home "
            f"cluster only); use one of {', '.join(MULTICLUSTER_AUTH)}"
        )
    if len(set(remotes)) != len(remotes) or primary in remotes:
        raise ValueError(f"cluster names must be unique: primary {primary!r}, remotes {list(remotes)}")
    auth: dict = {"strategy": spec.auth}
    if spec.auth == "openid":
        auth["openid"] = {"issuer_uri": spec.openid_issuer_uri, "client_id": spec.openid_client_id}
    return {
        "auth": auth,
        "deployment": {
            "instance_name": SERVICE_ACCOUNT,
            "logger": {"log_level": spec.log_level},
            # Nothing serves an Ingress on plain minikube; Helm's --wait does not wait for Ingress status.
            "ingress": {"enabled": spec.ingress},
        },
        "external_services": {"prometheus": {"url": prometheus_url}},
        # Else Kiali guesses its home cluster from istiod's CLUSTER_ID, or falls back to "Kubernetes".
        "kubernetes_config": {"cluster_name": primary},
        "server": {"port": SERVER_PORT, "web_root": WEB_ROOT},
        "clustering": {
            "autodetect_secrets": {"enabled": False},
            "clusters": [{"name": r, "secret_name": remote_secret_name(r)} for r in remotes],
        },
    }


def remote_values(*, view_only: bool = True) -> dict:
    """Values of the kiali-server chart on a remote: only the account and its (view-only) role."""
    return {
        "auth": {"strategy": "anonymous"},
        "deployment": {
            "instance_name": SERVICE_ACCOUNT,
            "remote_cluster_resources_only": True,
            "cluster_wide_access": True,
            "view_only_mode": view_only,
        },
    }


def port_forward_command(context: str, kubeconfig: str | None = None) -> str:
    """How to reach Kiali from the laptop; ``--kubeconfig`` only when kubectl would not find the context itself."""
    words = ["kubectl", *(["--kubeconfig", kubeconfig] if kubeconfig else []), "--context", context,
             "-n", NAMESPACE, "port-forward", f"svc/{SERVICE_ACCOUNT}", f"{SERVER_PORT}:{SERVER_PORT}"]
    return " ".join(shlex.quote(w) for w in words)


LOCAL_URL = f"http://localhost:{SERVER_PORT}{WEB_ROOT}"


@dataclass
class KialiServerArgs:
    primary: Cluster
    remotes: Sequence[Cluster]
    version: str
    spec: KialiSpec
    prometheus_url: pulumi.Input[str]
    istiod: pulumi.Resource  # the primary istiod Release: Kiali starts after it
    # Per remote cluster name: what must exist before the remote's kiali resources (istio-system).
    remote_after: Mapping[str, Sequence[pulumi.Resource]] = field(default_factory=dict)
    view_only: bool = True


class KialiServer(pulumi.ComponentResource):
    url: str
    port_forward_command: pulumi.Output[str]
    release: k8s.helm.v3.Release
    remote_releases: dict[str, k8s.helm.v3.Release]
    remote_secrets: dict[str, k8s.core.v1.Secret]

    def __init__(self, name: str, args: KialiServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kiali-multicluster:index:KialiServer", name, None, opts)
        primary = args.primary
        self.remote_releases, self.remote_secrets = {}, {}

        def release(resource_name: str, values: pulumi.Input[dict], opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
            return k8s.helm.v3.Release(
                resource_name, chart=CHART, version=args.version, repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=REPO),
                name=RELEASE, namespace=NAMESPACE, values=values, timeout=TIMEOUT_SECONDS, opts=opts,
            )

        for remote in args.remotes:
            rel = release(f"{remote.name}-kiali-remote", remote_values(view_only=args.view_only),
                          remote.opts(self, depends_on=list(args.remote_after.get(remote.name, ()))))
            token = access.token_secret(
                f"{remote.name}-kiali-token", namespace=NAMESPACE, service_account=SERVICE_ACCOUNT,
                secret_name=TOKEN_SECRET, opts=remote.opts(self, depends_on=[rel]),
            )
            # Lives on the primary: the primary's opts, after the primary's istio-system exists.
            secret = access.access_secret(
                f"{primary.name}-kiali-remote-secret-{remote.name}",
                name=remote_secret_name(remote.name),
                namespace=NAMESPACE,
                cluster=remote.name,
                labels={MULTICLUSTER_LABEL: "true"},
                annotations={CLUSTER_ANNOTATION: remote.name},
                kubeconfig_text=access.token_kubeconfig(remote.name, remote.api_server_url, token),
                opts=primary.opts(self, depends_on=[args.istiod, token]),
            )
            self.remote_releases[remote.name], self.remote_secrets[remote.name] = rel, secret

        remote_names = [r.name for r in args.remotes]
        values = pulumi.Output.from_input(args.prometheus_url).apply(
            lambda url: kiali_values(spec=args.spec, primary=primary.name, remotes=remote_names, prometheus_url=url)
        )
        # Its pod mounts every remote secret (not optional): create them first.
        self.release = release(f"{primary.name}-kiali", values,
                               primary.opts(self, depends_on=[args.istiod, *self.remote_secrets.values()]))
        self.url = LOCAL_URL
        own_kubeconfig = None if primary.kubeconfig_path == default_kubeconfig_path() else primary.kubeconfig_path
        self.port_forward_command = primary.context.apply(lambda ctx: port_forward_command(ctx, own_kubeconfig))
        self.register_outputs({"url": self.url, "portForwardCommand": self.port_forward_command})
