"""Clusters: the shared docker network, MinikubeCluster (pulumi-command) and ExistingCluster.

Both cluster kinds expose the same outputs (``Cluster``), which is all later components see:
its name and mesh network, the explicit ``kubernetes.Provider``, the kube context, the API
server URL reachable from another cluster's pods, the MetalLB pool, what a LoadBalancer
Service must wait for, and the resource everything on the cluster is ``deleted_with``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from components.config import ClusterSpec, MinikubeNetwork

OPS = "tools/minikube_ops.py"  # run by the system python3 from the project directory


def ops_command(*args: str) -> str:
    """A shell command line running one minikube_ops subcommand, every argument quoted."""
    return " ".join(["python3", OPS, *(shlex.quote(a) for a in args)])


def default_kubeconfig_path(environ: dict | None = None) -> str:
    """The file minikube writes its contexts to: the first entry of $KUBECONFIG, else ~/.kube/config."""
    env = os.environ if environ is None else environ
    for part in env.get("KUBECONFIG", "").split(os.pathsep):
        if part:
            return part
    return "~/.kube/config"


def kube_context(spec: ClusterSpec) -> str:
    """A cluster's kubeconfig context: minikube names it after the profile; an existing cluster says it."""
    return spec.existing.context if spec.existing else spec.name


def kubeconfig_file(spec: ClusterSpec, default: str) -> str:
    """The kubeconfig holding that context: an existing cluster's own file, else the default."""
    return spec.kubeconfig or default


def _field(obj, name: str):
    """A field of a typed Pulumi output object or of a raw API dict (camelCase or snake_case)."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def lb_ingress(status) -> tuple[str | None, str | None] | None:
    """(ip, hostname) of a Service status's first LoadBalancer ingress entry; None when it has no entry."""
    lb = _field(status, "load_balancer") or _field(status, "loadBalancer")
    ingress = _field(lb, "ingress") or []
    if not ingress:
        return None
    return _field(ingress[0], "ip"), _field(ingress[0], "hostname")


def metallb_config(pool: str) -> str:
    """The layer2 pool ConfigMap data the minikube MetalLB addon (v0.9.6) reads from metallb-system/config."""
    return f"address-pools:\n- name: default\n  protocol: layer2\n  addresses:\n  - {pool}\n"


def minikube_triggers(spec: ClusterSpec, net: MinikubeNetwork, kubernetes_version: str) -> list:
    """Everything minikube cannot change in place: a change replaces the cluster (visible in preview)."""
    mk = spec.minikube
    return [net.driver, net.name, net.subnet, mk.static_ip, mk.memory_mb, mk.cpus, kubernetes_version]


class Cluster(pulumi.ComponentResource):
    """Outputs shared by MinikubeCluster and ExistingCluster."""

    name: str
    network: str
    provider: k8s.Provider
    context: pulumi.Output[str]
    node_ip: pulumi.Output[str] | None
    api_server_url: pulumi.Output[str]
    lb_range: str | None
    # The kubeconfig file holding ``context`` (for kubectl steps and `make verify`).
    kubeconfig_path: str
    # Resource every object on this cluster is deleted_with (None: the cluster outlives the stack).
    lifecycle: pulumi.Resource | None
    # What a LoadBalancer Service on this cluster must wait for to get an address.
    lb_ready: list[pulumi.Resource]

    def opts(self, parent: pulumi.Resource, *, depends_on: Sequence[pulumi.Resource] = (),
             **extra) -> pulumi.ResourceOptions:
        """Options for a Kubernetes object on this cluster: its provider, its parent, deleted with it."""
        return pulumi.ResourceOptions(
            parent=parent,
            provider=self.provider,
            deleted_with=self.lifecycle,
            depends_on=list(depends_on) or None,
            **extra,
        )


    def _outputs(self) -> dict:
        return {
            "name": self.name,
            "network": self.network,
            "context": self.context,
            "nodeIp": self.node_ip,
            "apiServerUrl": self.api_server_url,
            "lbRange": self.lb_range,
        }


def docker_network(net: MinikubeNetwork, opts: pulumi.ResourceOptions | None = None) -> command.local.Command:
    """One docker network for every profile, created before any of them (minikube#14799, #19284).

    Its stdout records whether this stack created the network, so delete removes only its own.
    """
    args = ["--name", net.name, "--subnet", net.subnet, "--gateway", net.gateway]
    return command.local.Command(
        f"docker-network-{net.name}",
        create=ops_command("network-create", *args),
        update=ops_command("network-update", *args),
        delete=ops_command("network-delete", "--name", net.name),
        triggers=[net.name, net.subnet, net.gateway],
        opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(delete_before_replace=True), opts),
    )


@dataclass
class MinikubeClusterArgs:
    spec: ClusterSpec
    network: MinikubeNetwork
    kubernetes_version: str
    lb_pool: str
    docker_network: pulumi.Resource
    kubeconfig_path: str = "~/.kube/config"


class MinikubeCluster(Cluster):
    """A minikube profile on the shared network with its static IP, MetalLB and an explicit provider."""

    def __init__(self, name: str, args: MinikubeClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kiali-multicluster:index:MinikubeCluster", name, None, opts)
        spec, net, mk = args.spec, args.network, args.spec.minikube
        self.name, self.network = spec.name, spec.network
        self.lb_range = args.lb_pool
        self.kubeconfig_path = args.kubeconfig_path

        # The profile itself. Not deleted_with anything: destroy must run `minikube delete`.
        self.start = command.local.Command(
            f"{name}-minikube",
            create=ops_command(
                "start", "--profile", spec.name, "--driver", net.driver, "--network", net.name,
                "--static-ip", mk.static_ip, "--memory-mb", str(mk.memory_mb), "--cpus", str(mk.cpus),
                "--kubernetes-version", args.kubernetes_version,
            ),
            update=ops_command("status", "--profile", spec.name, "--static-ip", mk.static_ip),
            delete=ops_command("delete", "--profile", spec.name),
            triggers=minikube_triggers(spec, net, args.kubernetes_version),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.docker_network], delete_before_replace=True),
        )
        self.lifecycle = self.start
        # Triggered by the start command's id: a re-created cluster gets the addon again.
        self.metallb_addon = command.local.Command(
            f"{name}-metallb-addon",
            create=ops_command("metallb", "--profile", spec.name),
            triggers=[self.start.id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.start]),
        )

        # The provider re-reads the kubeconfig file on every run (Docker Desktop moves the API port);
        # the context is gated on the start command so a fresh stack's first preview stays unknown.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=args.kubeconfig_path,
            context=self.start.id.apply(lambda _: kube_context(spec)),
            cluster_identifier=pulumi.Output.concat(spec.name, "-", self.start.id),
            enable_config_map_mutable=True,
            enable_secret_mutable=True,
            delete_unreachable=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.context = self.start.id.apply(lambda _: kube_context(spec))
        self.node_ip = pulumi.Output.from_input(mk.static_ip)
        # The kubeconfig says https://127.0.0.1:<port> on Docker Desktop; pods of the other cluster
        # reach the API server on the shared network instead.
        self.api_server_url = pulumi.Output.from_input(f"https://{mk.static_ip}:8443")

        # The addon ships an unusable pool; own the ConfigMap with a forced server-side-apply patch.
        self.metallb_pool = k8s.core.v1.ConfigMapPatch(
            f"{name}-metallb-pool",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name="config", namespace="metallb-system", annotations={"pulumi.com/patchForce": "true"},
            ),
            data={"config": metallb_config(args.lb_pool)},
            opts=self.opts(self, depends_on=[self.metallb_addon]),
        )
        self.lb_ready = [self.metallb_pool]
        self.register_outputs(self._outputs())


@dataclass
class ExistingClusterArgs:
    spec: ClusterSpec
    kubeconfig_path: str = "~/.kube/config"


class ExistingCluster(Cluster):
    """A cluster the user already has, reached through a kubeconfig context; creates nothing."""

    def __init__(self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kiali-multicluster:index:ExistingCluster", name, None, opts)
        spec, ex = args.spec, args.spec.existing
        self.name, self.network = spec.name, spec.network
        self.lb_range = None
        self.kubeconfig_path = kubeconfig_file(spec, args.kubeconfig_path)
        self.lifecycle = None
        self.lb_ready = []
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig_path,
            context=kube_context(spec),
            cluster_identifier=f"existing-{kube_context(spec)}",
            enable_config_map_mutable=True,
            enable_secret_mutable=True,
            delete_unreachable=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.context = pulumi.Output.from_input(kube_context(spec))
        self.node_ip = None
        self.api_server_url = pulumi.Output.from_input(ex.api_server)
        self.register_outputs(self._outputs())


def create_clusters(specs: Sequence[ClusterSpec], net: MinikubeNetwork | None, kubernetes_version: str,
                    pools: dict[str, str | None]) -> dict[str, Cluster]:
    """Every cluster of the stack, concurrently: no cluster depends on another."""
    path = default_kubeconfig_path()
    network_cmd = docker_network(net) if net is not None and any(s.minikube for s in specs) else None
    clusters: dict[str, Cluster] = {}
    for spec in specs:
        if spec.minikube is not None:
            clusters[spec.name] = MinikubeCluster(spec.name, MinikubeClusterArgs(
                spec=spec, network=net, kubernetes_version=kubernetes_version, lb_pool=pools[spec.name],
                docker_network=network_cmd, kubeconfig_path=path,
            ))
        else:
            clusters[spec.name] = ExistingCluster(spec.name, ExistingClusterArgs(spec=spec, kubeconfig_path=path))
    return clusters
