"""Istio primary-remote on separate networks, installed with Helm releases instead of istioctl.

``IstioPrimary`` (the primary cluster): ``istio-system`` labelled with its network, ``cacerts``,
the ``base``/``istiod``/``gateway`` releases, the expose-istiod and expose-services objects, and
``discovery_address``: the east-west gateway's LoadBalancer IP, read back once MetalLB assigned it.

``IstioRemote`` (each remote): ``istio-system`` annotated with the primary as its control plane,
``cacerts``, ``base`` and ``istiod`` with ``profile: remote`` fed ``discovery_address``, the
remote secret on the primary (a service-account token of ``istio-reader-service-account``
turned into a one-cluster kubeconfig by ``components.access``), a wait for the primary to
write ``istio-ca-root-cert`` into the remote, and the remote east-west gateway. ``ready`` lists
everything a pod on the remote needs before it is created (the injector would otherwise skip
it and leave ``image: auto``).

Every Helm values dict, Istio object spec and shell command is rendered by a pure function
below; the two classes only wire them to resources.
"""

from __future__ import annotations

import base64
import ipaddress
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from components import access
from components.ca import CACERTS_KEYS
from components.cluster import Cluster, lb_ingress

PRIMARY_TYPE = "kiali-multicluster:index:IstioPrimary"
REMOTE_TYPE = "kiali-multicluster:index:IstioRemote"

CHART_REPO = "https://istio-release.storage.googleapis.com/charts"
NAMESPACE = "istio-system"
# Helm's default (300 s) is tight for the first image pulls on a laptop.
HELM_TIMEOUT_SECONDS = 600

NETWORK_LABEL = "topology.istio.io/network"
CONTROL_PLANE_ANNOTATION = "topology.istio.io/controlPlaneClusters"
EASTWEST_GATEWAY = "istio-eastwestgateway"
# The gateway chart's selector label: the gateway name without its "istio-" prefix.
EASTWEST_SELECTOR = {"istio": EASTWEST_GATEWAY.removeprefix("istio-")}
ISTIOD_HOST = f"istiod.{NAMESPACE}.svc.cluster.local"
NETWORKING_API = "networking.istio.io/v1"

# What istioctl create-remote-secret uses on the remote, and what it writes on the primary.
READER_SERVICE_ACCOUNT = "istio-reader-service-account"
READER_TOKEN_SECRET = "istio-reader-service-account-istio-remote-secret-token"
REMOTE_SECRET_LABEL = "istio/multiCluster"
REMOTE_SECRET_ANNOTATION = "networking.istio.io/cluster"

# The primary writes istio-ca-root-cert into the remote once it has synced it.
CA_ROOT_CERT_CONFIGMAP = "istio-ca-root-cert"
CA_ROOT_CERT_TIMEOUT_SECONDS = 300


class LoadBalancerError(RuntimeError):
    """The east-west gateway's Service has no usable LoadBalancer IP."""


# --- pure renderers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseSpec:
    """One Helm release of an Istio chart: chart, release name, values, timeout."""

    chart: str
    name: str
    values: dict
    timeout: int = HELM_TIMEOUT_SECONDS


def namespace_metadata(network: str, control_plane: str | None = None) -> dict:
    """``istio-system`` metadata: the network label, and on a remote the primary leading it."""
    meta: dict[str, Any] = {"name": NAMESPACE, "labels": {NETWORK_LABEL: network}}
    if control_plane is not None:
        meta["annotations"] = {CONTROL_PLANE_ANNOTATION: control_plane}
    return meta


def cacerts_entries(cacerts: Mapping[str, Any]) -> dict:
    """The ``cacerts`` Secret's entries: exactly the four files istiod reads, nothing else."""
    keys = set(cacerts)
    if keys != set(CACERTS_KEYS):
        missing = sorted(set(CACERTS_KEYS) - keys)
        extra = sorted(keys - set(CACERTS_KEYS))
        raise ValueError(f"cacerts must hold exactly {', '.join(CACERTS_KEYS)} (missing: {missing}, unexpected: {extra})")
    return {k: cacerts[k] for k in CACERTS_KEYS}


def injection_path(cluster: str, network: str) -> str:
    """The primary istiod's injection endpoint for pods of ``cluster`` on ``network``."""
    return f"/inject/cluster/{cluster}/net/{network}"


def ca_bundle(pem: str) -> str:
    """A webhook caBundle: base64 of the PEM text."""
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("the injection CA bundle must be a PEM certificate")
    return base64.b64encode(pem.encode()).decode()


def base_release(*, remote: bool) -> ReleaseSpec:
    """The ``base`` chart (CRDs, reader ServiceAccount); the remote profile as istio.io installs it."""
    return ReleaseSpec("base", "istio-base", {"profile": "remote"} if remote else {})


def istiod_primary_release(*, cluster: str, network: str, mesh_id: str, hub: str) -> ReleaseSpec:
    """The primary's istiod; EXTERNAL_ISTIOD lets it lead remotes that name it as control plane."""
    return ReleaseSpec("istiod", "istiod", {
        "global": {
            "hub": hub,
            "meshID": mesh_id,
            "multiCluster": {"clusterName": cluster},
            "network": network,
        },
        "pilot": {"env": {"EXTERNAL_ISTIOD": "true"}},
    })


def istiod_remote_release(*, cluster: str, network: str, mesh_id: str, hub: str,
                          pilot_address: pulumi.Input[str], injection_ca_bundle: pulumi.Input[str]) -> ReleaseSpec:
    """A remote's istiod chart (profile remote): the injector webhook and the Service pointing at the primary.

    ``pilot_address`` is the primary's east-west gateway IP; ``injection_ca_bundle`` the base64
    mesh root, which the primary also patches in later, so the webhook works from the start.
    """
    return ReleaseSpec("istiod", "istiod", {
        "profile": "remote",
        "global": {
            "hub": hub,
            "meshID": mesh_id,
            "multiCluster": {"clusterName": cluster},
            "network": network,
            "remotePilotAddress": pilot_address,
        },
        "istiodRemote": {
            "injectionPath": injection_path(cluster, network),
            "injectionCABundle": injection_ca_bundle,
        },
    })


def eastwest_gateway_release(network: str) -> ReleaseSpec:
    """The east-west gateway through the ``gateway`` chart.

    ``networkGateway`` makes the chart add the ``topology.istio.io/network`` label, the
    ``ISTIO_META_REQUESTED_NETWORK_VIEW`` env and the ports 15021/15443/15012/15017; the name
    gives the selector ``istio: eastwestgateway``. Labels, env and ports are not repeated here:
    the chart would render them twice.
    """
    return ReleaseSpec("gateway", EASTWEST_GATEWAY, {
        "name": EASTWEST_GATEWAY,
        "networkGateway": network,
        "service": {"type": "LoadBalancer"},
    })


@dataclass(frozen=True)
class IstioObject:
    """An Istio networking object for ``apiextensions.CustomResource``."""

    kind: str
    name: str
    spec: dict
    api_version: str = NETWORKING_API

    def metadata(self) -> dict:
        return {"name": self.name, "namespace": NAMESPACE}


def _passthrough_server(port_name: str, port: int, mode: str, hosts: list[str]) -> dict:
    return {"port": {"name": port_name, "number": port, "protocol": "TLS"}, "tls": {"mode": mode}, "hosts": hosts}


def _sni_route(port: int, target_port: int) -> dict:
    return {
        "match": [{"port": port, "sniHosts": ["*"]}],
        "route": [{"destination": {"host": ISTIOD_HOST, "port": {"number": target_port}}}],
    }


def exposed_objects() -> list[IstioObject]:
    """What the primary's east-west gateway serves: istiod (XDS, webhook) and mesh services."""
    istiod_gateway = IstioObject("Gateway", "istiod-gateway", {
        "selector": dict(EASTWEST_SELECTOR),
        "servers": [
            _passthrough_server("tls-istiod", 15012, "PASSTHROUGH", ["*"]),
            _passthrough_server("tls-istiodwebhook", 15017, "PASSTHROUGH", ["*"]),
        ],
    })
    istiod_vs = IstioObject("VirtualService", "istiod-vs", {
        "hosts": ["*"],
        "gateways": [istiod_gateway.name],
        # The remote's webhook calls 15017; istiod serves the injector on its Service port 443.
        "tls": [_sni_route(15012, 15012), _sni_route(15017, 443)],
    })
    cross_network = IstioObject("Gateway", "cross-network-gateway", {
        "selector": dict(EASTWEST_SELECTOR),
        "servers": [_passthrough_server("tls", 15443, "AUTO_PASSTHROUGH", ["*.local"])],
    })
    return [istiod_gateway, istiod_vs, cross_network]



def lb_ip_from_status(status: Any, what: str) -> str:
    """The first LoadBalancer ingress IP of a Service status; a clear error for none or a hostname.

    ``remotePilotAddress`` must be an IP: a hostname makes the remote chart render an
    ExternalName Service, which the API server's webhook client cannot call (istio#45014).
    """
    entry = lb_ingress(status)
    if entry is None:
        raise LoadBalancerError(
            f"{what} has no LoadBalancer address: check that the cluster's MetalLB pool is valid "
            "(kubectl -n metallb-system get configmap config) and that the pool has a free address"
        )
    ip, hostname = entry
    if ip:
        try:
            return str(ipaddress.ip_address(ip))
        except ValueError:
            raise LoadBalancerError(f"{what} reports the LoadBalancer address {ip!r}, which is not an IP address") from None
    if hostname:
        raise LoadBalancerError(
            f"{what} got the LoadBalancer hostname {hostname!r} instead of an IP; global.remotePilotAddress must be "
            "an IP (a hostname becomes an ExternalName Service the injection webhook cannot reach, istio#45014): "
            "use a load balancer that assigns IPs (MetalLB) or an NLB with a static IP"
        )
    raise LoadBalancerError(f"{what} has a LoadBalancer ingress entry without ip or hostname: {entry!r}")


@dataclass(frozen=True)
class RemoteSecretMeta:
    name: str
    labels: dict
    annotations: dict


def remote_secret_metadata(cluster: str) -> RemoteSecretMeta:
    """Name, label and annotation of the remote secret istiod on the primary watches."""
    return RemoteSecretMeta(
        name=f"istio-remote-secret-{cluster}",
        labels={REMOTE_SECRET_LABEL: "true"},
        annotations={REMOTE_SECRET_ANNOTATION: cluster},
    )


def shell_path(path: str) -> str:
    """A file path for sh: quoted, with a leading ``~`` kept expandable as ``$HOME``."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        rest = path[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"/'
    return shlex.quote(path)


def ca_root_cert_wait_command(kubeconfig_path: str, context: str, *, cluster: str, primary: str,
                              timeout_seconds: int = CA_ROOT_CERT_TIMEOUT_SECONDS) -> str:
    """Wait (kubectl >= 1.31) until the primary has written istio-ca-root-cert into the remote."""
    if timeout_seconds <= 0:
        raise ValueError("the istio-ca-root-cert wait needs a positive timeout")
    wait = " ".join([
        "kubectl", "--kubeconfig", shell_path(kubeconfig_path), "--context", shlex.quote(context),
        "-n", NAMESPACE, "wait", "--for=create", f"configmap/{CA_ROOT_CERT_CONFIGMAP}",
        f"--timeout={timeout_seconds}s",
    ])
    message = (
        f"{cluster}: {NAMESPACE}/{CA_ROOT_CERT_CONFIGMAP} did not appear within {timeout_seconds}s, so istiod on {primary} "
        f"has not taken over {cluster}. Check {NAMESPACE}/istio-remote-secret-{cluster} on {primary}, the istiod logs on "
        f"{primary} (kubectl --context {primary} -n {NAMESPACE} logs deploy/istiod), and that kubectl is 1.31 or newer."
    )
    return f"{wait} || {{ echo {shlex.quote(message)} >&2; exit 1; }}"


# --- wiring -----------------------------------------------------------------------------------------


def _release(parent: pulumi.Resource, cluster: Cluster, resource_name: str, spec: ReleaseSpec, version: str,
             depends_on: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release:
    return k8s.helm.v3.Release(
        resource_name,
        chart=spec.chart,
        version=version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
        name=spec.name,
        namespace=NAMESPACE,
        values=spec.values,
        timeout=spec.timeout,
        opts=cluster.opts(parent, depends_on=depends_on),
    )


def _eastwest_gateway(parent: pulumi.Resource, c: Cluster, version: str,
                      depends_on: Sequence[pulumi.Resource]) -> tuple[k8s.helm.v3.Release, pulumi.Output[str]]:
    """The east-west gateway release and its LoadBalancer IP, read back once Helm's --wait has seen it.

    The Service read's id comes from the release's outputs: unknown in a fresh stack's first
    preview, so nothing queries a cluster that does not exist yet.
    """
    release = _release(parent, c, f"{c.name}-eastwestgateway", eastwest_gateway_release(c.network), version, depends_on)
    service = k8s.core.v1.Service.get(
        f"{c.name}-eastwestgateway-service",
        pulumi.Output.concat(release.status.namespace, "/", release.status.name),
        opts=c.opts(parent, depends_on=[release]),
    )
    what = f"Service {NAMESPACE}/{EASTWEST_GATEWAY} on {c.name}"
    return release, service.status.apply(lambda s: lb_ip_from_status(s, what))


def _namespace(parent: pulumi.Resource, cluster: Cluster, metadata: dict) -> k8s.core.v1.Namespace:
    return k8s.core.v1.Namespace(f"{cluster.name}-istio-system", metadata=metadata, opts=cluster.opts(parent))


def _cacerts(parent: pulumi.Resource, cluster: Cluster, cacerts: Mapping[str, pulumi.Input[str]],
             namespace: pulumi.Resource) -> k8s.core.v1.Secret:
    return k8s.core.v1.Secret(
        f"{cluster.name}-cacerts",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="cacerts", namespace=NAMESPACE),
        type="Opaque",
        string_data={k: pulumi.Output.secret(v) for k, v in cacerts_entries(cacerts).items()},
        opts=cluster.opts(parent, depends_on=[namespace]),
    )


@dataclass
class IstioPrimaryArgs:
    cluster: Cluster
    mesh_id: str
    version: str
    hub: str
    cacerts: Mapping[str, pulumi.Input[str]]


class IstioPrimary(pulumi.ComponentResource):
    """Istio's control plane for the whole mesh, reachable from the remotes through its east-west gateway."""

    discovery_address: pulumi.Output[str]
    """The east-west gateway's LoadBalancer IP: every remote's ``global.remotePilotAddress``."""
    istiod: k8s.helm.v3.Release
    exposed: list[pulumi.Resource]
    """istiod-gateway, istiod-vs, cross-network-gateway (in that order)."""

    def __init__(self, name: str, args: IstioPrimaryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(PRIMARY_TYPE, name, None, opts)
        c = args.cluster
        cacerts = cacerts_entries(args.cacerts)  # validate before registering anything

        self.namespace = _namespace(self, c, namespace_metadata(c.network))
        self.cacerts = _cacerts(self, c, cacerts, self.namespace)
        self.base = _release(self, c, f"{c.name}-istio-base", base_release(remote=False), args.version, [self.namespace])
        self.istiod = _release(
            self, c, f"{c.name}-istiod",
            istiod_primary_release(cluster=c.name, network=c.network, mesh_id=args.mesh_id, hub=args.hub),
            args.version, [self.base, self.cacerts],
        )
        # The injector must exist before the gateway pods (image: auto), MetalLB before its Service.
        self.eastwest_gateway, self.eastwest_address = _eastwest_gateway(
            self, c, args.version, [self.istiod, *c.lb_ready])
        self.discovery_address = self.eastwest_address

        self.exposed = [
            k8s.apiextensions.CustomResource(
                f"{c.name}-{obj.name}",
                api_version=obj.api_version,
                kind=obj.kind,
                metadata=obj.metadata(),
                spec=obj.spec,
                opts=c.opts(self, depends_on=[self.istiod]),  # the CRDs and the validating webhook
            )
            for obj in exposed_objects()
        ]
        self.register_outputs({
            "discoveryAddress": self.discovery_address,
            "istiodRelease": self.istiod.status,
        })


@dataclass
class IstioRemoteArgs:
    cluster: Cluster
    primary: Cluster
    discovery_address: pulumi.Input[str]
    root_cert_pem: pulumi.Input[str]
    cacerts: Mapping[str, pulumi.Input[str]]
    mesh_id: str
    version: str
    hub: str
    primary_exposed: Sequence[pulumi.Resource]


class IstioRemote(pulumi.ComponentResource):
    """A remote cluster led by the primary's istiod (no local control plane)."""

    istiod: k8s.helm.v3.Release
    ready: list[pulumi.Resource]
    """What any pod on this remote must wait for: injector, remote secret, exposed istiod, MetalLB, root cert."""

    def __init__(self, name: str, args: IstioRemoteArgs, opts: pulumi.ResourceOptions | None = None):
        # No deleted_with on the component: the wait Command below must not inherit one, and the
        # remote secret lives on the primary. Each Kubernetes child sets its own through cluster.opts.
        super().__init__(REMOTE_TYPE, name, None, opts)
        c, p = args.cluster, args.primary
        if c.name == p.name:
            raise ValueError(f"IstioRemote {name}: the remote and the primary are the same cluster ({c.name})")
        cacerts = cacerts_entries(args.cacerts)
        primary_exposed = list(args.primary_exposed)

        self.namespace = _namespace(self, c, namespace_metadata(c.network, control_plane=p.name))
        self.cacerts = _cacerts(self, c, cacerts, self.namespace)
        self.base = _release(self, c, f"{c.name}-istio-base", base_release(remote=True), args.version, [self.namespace])
        bundle = pulumi.Output.from_input(args.root_cert_pem).apply(ca_bundle)
        self.istiod = _release(
            self, c, f"{c.name}-istiod",
            istiod_remote_release(cluster=c.name, network=c.network, mesh_id=args.mesh_id, hub=args.hub,
                                  pilot_address=args.discovery_address, injection_ca_bundle=bundle),
            args.version, [self.base, self.cacerts],
        )

        # The remote secret: base creates the reader ServiceAccount, istiod its ClusterRole/Binding.
        self.reader_token = access.token_secret(
            f"{c.name}-istio-reader-token",
            namespace=NAMESPACE,
            service_account=READER_SERVICE_ACCOUNT,
            secret_name=READER_TOKEN_SECRET,
            opts=c.opts(self, depends_on=[self.base, self.istiod]),
        )
        meta = remote_secret_metadata(c.name)
        self.cluster_name = c.name
        self.remote_secret_ref = f"{NAMESPACE}/{meta.name}"  # on the primary
        self.remote_secret = access.access_secret(
            f"{c.name}-istio-remote-secret",
            name=meta.name,
            namespace=NAMESPACE,
            cluster=c.name,
            labels=meta.labels,
            annotations=meta.annotations,
            kubeconfig_text=access.token_kubeconfig(c.name, c.api_server_url, self.reader_token),
            opts=p.opts(self, depends_on=primary_exposed),  # on the primary, after its expose objects (and so after istiod)
        )

        # The primary writes istio-ca-root-cert once it leads this remote; pods need it at start.
        wait = pulumi.Output.from_input(c.context).apply(
            lambda ctx: ca_root_cert_wait_command(c.kubeconfig_path, ctx, cluster=c.name, primary=p.name)
        )
        self.ca_root_cert = command.local.Command(
            f"{c.name}-istio-ca-root-cert",
            create=wait,
            # A re-created cluster needs a new wait.
            triggers=[c.lifecycle.id] if c.lifecycle is not None else None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.istiod, self.remote_secret, *primary_exposed]),
        )
        self.ready = [self.istiod, self.remote_secret, *primary_exposed, *c.lb_ready, self.ca_root_cert]

        self.eastwest_gateway, self.eastwest_address = _eastwest_gateway(self, c, args.version, self.ready)
        self.register_outputs({
            "remoteSecret": self.remote_secret_ref,
            "istiodRelease": self.istiod.status,
            "eastwestGatewayRelease": self.eastwest_gateway.status,
            "eastwestAddress": self.eastwest_address,
        })
