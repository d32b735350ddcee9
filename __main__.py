"""Kiali tutorial "Istio multicluster, primary-remote", as a Pulumi program.

Reads like the tutorial: config -> clusters -> CA -> Istio -> observability -> apps -> exports.
Each step hands explicit outputs to the next; nothing reaches into another component.
"""

import gc

import pulumi

from components import config as stack_config
from components.ca import MeshCA, MeshCAArgs
from components.cluster import create_clusters
from components.istio import IstioPrimary, IstioPrimaryArgs, IstioRemote, IstioRemoteArgs
from components.kiali import KialiServer, KialiServerArgs
from components.manifests import ManifestSource
from components.prometheus import PrometheusFederation, PrometheusFederationArgs
from components.travels import TravelsApp, TravelsAppArgs

# A short batch run whose objects live until it exits: keep the cyclic garbage collector from
# rescanning the SDK's objects and from running full collections every few thousand allocations
# (measured with `make bench`: evaluation cost per resource then stays flat as remotes grow).
gc.freeze()
gc.set_threshold(10_000, 10, 10)

# 1. Config: parsed and validated before any resource is registered.
cfg = stack_config.load()
manifests = ManifestSource(cache_dir=cfg.manifests.cache_dir, offline_dir=cfg.manifests.offline_dir)

# 2. Clusters: one docker network, then every cluster concurrently.
clusters = create_clusters(
    cfg.clusters, cfg.minikube, cfg.versions.kubernetes, {c.name: cfg.lb_pool(c) for c in cfg.clusters}
)
primary = clusters[cfg.primary.name]
remotes = [clusters[r.name] for r in cfg.remotes]

# 3. Mesh CA: one root, an intermediate per cluster.
ca = MeshCA("mesh-ca", MeshCAArgs(clusters=[c.name for c in cfg.clusters]))

# 4. Istio: the primary, then every remote fed the primary's east-west gateway IP.
istio_primary = IstioPrimary(f"{primary.name}-istio", IstioPrimaryArgs(
    cluster=primary, mesh_id=cfg.mesh_id, version=cfg.versions.istio, hub=cfg.istio_hub,
    cacerts=ca.cacerts[primary.name],
))
istio_remotes = [
    IstioRemote(f"{remote.name}-istio", IstioRemoteArgs(
        cluster=remote, primary=primary, discovery_address=istio_primary.discovery_address,
        root_cert_pem=ca.root_cert_pem, cacerts=ca.cacerts[remote.name], mesh_id=cfg.mesh_id,
        version=cfg.versions.istio, hub=cfg.istio_hub, primary_exposed=istio_primary.exposed,
    ))
    for remote in remotes
]

# 5. Observability: Prometheus on every cluster federated into the primary; Kiali on the primary.
# Both only need each cluster's istio-system namespace, so they run beside the Istio chain.
istio_system = {primary.name: [istio_primary.namespace]} | {r.name: [ir.namespace] for r, ir in zip(remotes, istio_remotes, strict=True)}
prometheus = PrometheusFederation("prometheus", PrometheusFederationArgs(
    primary=primary, remotes=remotes, source=manifests, istio_version=cfg.versions.istio, after=istio_system,
))
kiali = KialiServer("kiali", KialiServerArgs(
    primary=primary, remotes=remotes, version=cfg.versions.kiali, spec=cfg.kiali,
    prometheus_url=prometheus.primary_url, istiod=istio_primary.istiod,
    remote_after={r.name: istio_system[r.name] for r in remotes},
))

# 6. Apps: Travels on the primary (after istiod) and on every remote (after it is ready).
travels = [TravelsApp(f"{primary.name}-travels", TravelsAppArgs(
    cluster=primary, source=manifests, commit=cfg.versions.travels, role="primary", after=[istio_primary.istiod],
))]
travels += [
    TravelsApp(f"{remote.name}-travels", TravelsAppArgs(
        cluster=remote, source=manifests, commit=cfg.versions.travels, role="remote",
        deployments=spec.travels, after=istio_remote.ready,
    ))
    for spec, remote, istio_remote in zip(cfg.remotes, remotes, istio_remotes, strict=True)
    if spec.travels
]

# 7. Exports.
pulumi.export("contexts", {name: c.context for name, c in clusters.items()})
pulumi.export("nodeIps", {name: c.node_ip for name, c in clusters.items() if c.node_ip is not None})
pulumi.export("apiServers", {name: c.api_server_url for name, c in clusters.items()})
pulumi.export("loadBalancerRanges", {name: c.lb_range for name, c in clusters.items() if c.lb_range})
pulumi.export("discoveryAddress", istio_primary.discovery_address)
pulumi.export("eastWestGateways", {primary.name: istio_primary.eastwest_address}
              | {r.name: ir.eastwest_address for r, ir in zip(remotes, istio_remotes, strict=True)})
pulumi.export("istioRemoteSecrets", {r.cluster_name: r.remote_secret_ref for r in istio_remotes})
pulumi.export("prometheusUrl", prometheus.primary_url)
pulumi.export("remotePrometheus", prometheus.remote_addresses)
pulumi.export("kialiUrl", kiali.url)
pulumi.export("kialiPortForward", kiali.port_forward_command)
pulumi.export("travels", {t.cluster_name: {"namespaces": t.namespace_names, "deployments": t.deployment_names}
                          for t in travels})
pulumi.export("verify", f"make verify STACK={pulumi.get_stack()}")
