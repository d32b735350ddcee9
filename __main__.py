"""Kiali tutorial "Istio multicluster, primary-remote", as a Pulumi program.

Reads like the tutorial: config -> clusters -> CA -> Istio -> observability -> apps -> exports.
"""

import pulumi

from components import config as stack_config
from components.ca import MeshCA, MeshCAArgs
from components.cluster import create_clusters
from components.manifests import ManifestSource

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
# (section 4: Istio)

# 5. Observability: Prometheus on every cluster federated into the primary; Kiali on the primary.
# (section 5: observability)

# 6. Apps: Travels on the primary and on every remote.
# (section 6: apps)

# 7. Exports.
pulumi.export("contexts", {name: c.context for name, c in clusters.items()})
pulumi.export("nodeIps", {name: c.node_ip for name, c in clusters.items() if c.node_ip is not None})
pulumi.export("apiServers", {name: c.api_server_url for name, c in clusters.items()})
pulumi.export("loadBalancerRanges", {name: c.lb_range for name, c in clusters.items() if c.lb_range})
# (exports: istio)
# (exports: observability)
# (exports: apps)
