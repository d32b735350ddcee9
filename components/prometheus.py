"""PrometheusFederation: Istio's Prometheus addon on every cluster, remotes federated into the primary.

Replaces three tutorial steps: ``kubectl apply -f samples/addons/prometheus.yaml`` on each cluster,
``kubectl patch svc prometheus -p '{"spec":{"type":"LoadBalancer"}}'`` on each remote, and applying
kiali's hack ``prometheus.yaml`` (the addon's ConfigMap plus a ``federate-<remote>`` job) on the
primary. Facts carried over: the addon's objects are all named ``prometheus`` in ``istio-system``
(ServiceAccount, ConfigMap, ClusterRole, ClusterRoleBinding, Service on port 9090, Deployment);
the federation job shape is kiali's (``honor_labels``, ``/federate``, ``match[]={job="kubernetes-pods"}``,
a static ``cluster`` label). The primary's ConfigMap is rendered once, with every job of the addon
kept as is, and owned by exactly one resource.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import yaml

from components import manifests
from components.cluster import Cluster, lb_ingress
from components.manifests import ManifestError, ManifestSource

NAME = "prometheus"
NAMESPACE = "istio-system"
PORT = 9090
PRIMARY_URL = f"http://{NAME}.{NAMESPACE}:{PORT}"
CONFIG_KEY = "prometheus.yml"
FEDERATE_MATCH = '{job="kubernetes-pods"}'
ADDON_KINDS = ("ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment")

_ADDRESS = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$")


# --- pure: the federation job and the primary's prometheus.yml -------------------------------------


def federation_job(remote: str, address: str) -> dict:
    """The scrape job pulling ``remote``'s pod metrics from its Prometheus at ``address`` (``host:port``)."""
    if not _ADDRESS.match(address or ""):
        raise ValueError(f"federation target for {remote} must be host:port (e.g. 192.168.50.31:{PORT}), got {address!r}")
    return {
        "job_name": f"federate-{remote}",
        "scrape_interval": "15s",
        "honor_labels": True,
        "metrics_path": "/federate",
        "params": {"match[]": [FEDERATE_MATCH]},
        "static_configs": [{"targets": [address], "labels": {"cluster": remote}}],
    }


def with_federation(prometheus_yml_text: str, jobs: Sequence[dict]) -> str:
    """``prometheus.yml`` with ``jobs`` first in ``scrape_configs``; every other key and job unchanged."""
    try:
        config = yaml.safe_load(prometheus_yml_text)
    except yaml.YAMLError as e:
        raise ValueError(f"the addon's {CONFIG_KEY} is not valid YAML: {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"the addon's {CONFIG_KEY} is not a mapping")
    existing = config.get("scrape_configs") or []
    names = [j.get("job_name") for j in existing]
    new = [j["job_name"] for j in jobs]
    clash = sorted(set(names) & set(new)) + sorted({n for n in new if new.count(n) > 1})
    if clash:
        raise ValueError(f"{CONFIG_KEY} would have duplicate scrape jobs: {', '.join(clash)}")
    out = {}
    for k, v in config.items():  # keep the addon's key order
        out[k] = [*map(dict, jobs), *existing] if k == "scrape_configs" else v
    if "scrape_configs" not in out:
        out["scrape_configs"] = [dict(j) for j in jobs]
    return yaml.safe_dump(out, sort_keys=False, default_flow_style=False)


# --- pure: the addon per cluster role ---------------------------------------------------------------


def check_addon(docs: Sequence[dict], source: str = "the Prometheus addon") -> None:
    """Fail clearly if the addon no longer has the objects this program relies on."""
    found = {(d["kind"], (d.get("metadata") or {}).get("name")) for d in docs}
    missing = [k for k in ADDON_KINDS if (k, NAME) not in found]
    if missing:
        raise ManifestError(f"{source}: expected {', '.join(ADDON_KINDS)} named {NAME!r}; missing {', '.join(missing)}")
    cm = manifests.select(docs, "ConfigMap", NAME)[0]
    if CONFIG_KEY not in (cm.get("data") or {}):
        raise ManifestError(f"{source}: ConfigMap {NAME} has no {CONFIG_KEY}")


def addon_docs(docs: Sequence[dict], *, remote: bool = False, federate: Mapping[str, str] | None = None) -> list[dict]:
    """The addon for one cluster: in ``istio-system``; a remote's Service is a LoadBalancer;
    the primary's ``prometheus.yml`` gains ``federate-<remote>`` for every ``{remote: "host:port"}``."""
    check_addon(docs)
    out = manifests.in_namespace(docs, NAMESPACE)  # deep copies
    for d in out:
        name = (d.get("metadata") or {}).get("name")
        if remote and d["kind"] == "Service" and name == NAME:
            d.setdefault("spec", {})["type"] = "LoadBalancer"
        if federate and d["kind"] == "ConfigMap" and name == NAME:
            jobs = [federation_job(r, a) for r, a in federate.items()]
            d["data"][CONFIG_KEY] = with_federation(d["data"][CONFIG_KEY], jobs)
    return out


def lb_address(cluster: str, status: object) -> str:
    """``<ip>:9090`` from a Service status; a clear error when MetalLB gave no address."""
    entry = lb_ingress(status)
    host = entry and (entry[0] or entry[1])
    if not host:
        raise ValueError(
            f"{cluster}: Service {NAMESPACE}/{NAME} (type LoadBalancer) has no external address, so the primary "
            f"cannot federate it. Check the cluster's MetalLB pool: kubectl --context {cluster} -n metallb-system "
            f"get configmap config -o yaml; kubectl --context {cluster} -n {NAMESPACE} get svc {NAME}"
        )
    return f"{host}:{PORT}"


# --- the component -----------------------------------------------------------------------------------


@dataclass
class PrometheusFederationArgs:
    primary: Cluster
    remotes: Sequence[Cluster]
    source: ManifestSource
    istio_version: str
    # Per cluster name: what must exist before the addon lands there (that cluster's istio-system).
    after: Mapping[str, Sequence[pulumi.Resource]] = field(default_factory=dict)


class PrometheusFederation(pulumi.ComponentResource):
    primary_url: str
    remote_addresses: dict[str, pulumi.Output[str]]
    resources: dict[str, dict[str, pulumi.CustomResource]]

    def __init__(self, name: str, args: PrometheusFederationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kiali-multicluster:index:PrometheusFederation", name, None, opts)
        url = manifests.istio_addon_url(args.istio_version, "prometheus")
        upstream = args.source.load(url)
        check_addon(upstream, url)
        self.primary_url = PRIMARY_URL
        self.remote_addresses = {}
        self.resources = {}

        for remote in args.remotes:
            docs = addon_docs(upstream, remote=True)
            created = self._create(remote, docs, args.after.get(remote.name, ()))
            svc = created[f"Service/{NAMESPACE}/{NAME}"]
            self.remote_addresses[remote.name] = svc.status.apply(lambda s, c=remote.name: lb_address(c, s))

        names = [r.name for r in args.remotes]
        addresses = [self.remote_addresses[n] for n in names]
        docs = addon_docs(upstream)
        cm = manifests.select(docs, "ConfigMap", NAME)[0]
        # The one owner of the primary's ConfigMap: the addon's data with every federation job.
        cm["data"] = pulumi.Output.all(*addresses).apply(
            lambda addrs: manifests.select(addon_docs(upstream, federate=dict(zip(names, addrs))), "ConfigMap", NAME)[0]["data"]
        )
        self._create(args.primary, docs, args.after.get(args.primary.name, ()))

        self.register_outputs({"primaryUrl": self.primary_url, "remoteAddresses": self.remote_addresses})

    def _create(self, cluster: Cluster, docs: list[dict], after: Sequence[pulumi.Resource]) -> dict:
        """Typed resources in dependency order: the Deployment waits for its ConfigMap and account;
        a LoadBalancer Service waits for the cluster's MetalLB pool."""
        prefix = f"{cluster.name}-{NAME}"
        created: dict[str, pulumi.CustomResource] = {}
        for kind in ADDON_KINDS:
            for doc in manifests.select(docs, kind):
                deps = list(after)
                if kind == "Service" and (doc.get("spec") or {}).get("type") == "LoadBalancer":
                    deps += cluster.lb_ready
                if kind == "Deployment":
                    deps += [r for k, r in created.items() if k.startswith(("ConfigMap/", "ServiceAccount/"))]
                if kind == "ClusterRoleBinding":
                    deps += [r for k, r in created.items() if k.startswith(("ClusterRole/", "ServiceAccount/"))]
                created.update(manifests.create(prefix, [doc], cluster.opts(self, depends_on=deps)))
        leftovers = [d for d in docs if d["kind"] not in ADDON_KINDS]
        if leftovers:
            created.update(manifests.create(prefix, leftovers, cluster.opts(self, depends_on=list(after))))
        self.resources[cluster.name] = created
        return created
