"""TravelsApp: the Kiali Travels demo on the primary and on every remote (tutorial steps 5 and 9).

Primary: the namespaces ``travel-agency``, ``travel-portal`` and ``travel-control`` with sidecar
injection on, each holding its kiali/demos file (the files carry no namespace, but their service
URLs hard-code these three). Remote: ``travel-agency`` with the Deployments its ``travels`` list
names, plus the six Services the primary's callers address ("namespace sameness": the names must
resolve on the remote even where no local pod backs them).

Pods must be created with a sidecar, so every workload waits for its namespace (labelled), its
namespace's Secrets/ConfigMaps/ServiceAccounts and the ``after`` handles: the primary istiod
Release on the primary, the Istio component's "remote ready" list on a remote.

The renderers below are pure (parsed upstream documents in, documents out); ``TravelsApp`` only
loads the pinned files and turns the documents into typed resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

from components import manifests
from components.cluster import Cluster
from components.manifests import ManifestError, ManifestSource

TYPE = "kiali-multicluster:index:TravelsApp"
PRIMARY, REMOTE = "primary", "remote"
ROLES = (PRIMARY, REMOTE)

INJECTION_LABELS = {"istio-injection": "enabled"}
# (namespace, kiali/demos travels/ file) on the primary.
PRIMARY_FILES = (
    ("travel-agency", "travel_agency.yaml"),
    ("travel-portal", "travel_portal.yaml"),
    ("travel-control", "travel_control.yaml"),
)
REMOTE_NAMESPACE = "travel-agency"
# The travel-agency Services the remote needs so that every name the travels code calls resolves.
REMOTE_SERVICES = ("travels", "insurances", "hotels", "flights", "discounts", "cars")
SERVICE_PORT = 8000
SERVICE_PORT_NAME = "http"
# Kinds whose pods need the sidecar injector; everything else is created as soon as its namespace is.
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"})
# Objects a pod reads at start-up: created before the workloads of the same app.
CONFIG_KINDS = frozenset({"Secret", "ConfigMap", "ServiceAccount"})
# First pulls of the demo images on a laptop can take a while; a bound, not a wait.
WORKLOAD_TIMEOUT = "20m"


# --- pure renderers ------------------------------------------------------------------------------


def namespace_doc(name: str) -> dict:
    """A Namespace with sidecar injection on (``kubectl label namespace <name> istio-injection=enabled``)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(INJECTION_LABELS)}}


def service_doc(name: str, namespace: str = REMOTE_NAMESPACE) -> dict:
    """A selector Service ``<name>``: port 8000 named ``http``, pods ``app: <name>``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"ports": [{"name": SERVICE_PORT_NAME, "port": SERVICE_PORT}], "selector": {"app": name}},
    }


def remote_services(namespace: str = REMOTE_NAMESPACE) -> list[dict]:
    """The six travel-agency Services of a remote (kiali.io tutorial, step 10)."""
    return [service_doc(name, namespace) for name in REMOTE_SERVICES]


def deployment_file(deployment: str) -> str:
    """The kiali/demos file holding a remote Deployment: ``travels-v2`` -> ``travels-v2.yaml``."""
    return f"{deployment}.yaml"


def files_for(role: str, deployments: Sequence[str] = ()) -> list[str]:
    """The kiali/demos travels/ files a cluster of ``role`` needs."""
    _check_role(role, deployments)
    if role == PRIMARY:
        return [f for _, f in PRIMARY_FILES]
    return [deployment_file(d) for d in deployments]


@dataclass(frozen=True)
class TravelsPlan:
    """What reaches one cluster, in creation order: namespaces, then objects, then workloads."""

    namespaces: list[dict]
    objects: list[dict] = field(default_factory=list)
    workloads: list[dict] = field(default_factory=list)

    @property
    def docs(self) -> list[dict]:
        return [*self.namespaces, *self.objects, *self.workloads]


def render_primary(files: Mapping[str, list[dict]]) -> TravelsPlan:
    """The three primary namespaces and each upstream file's objects placed in its namespace."""
    docs: list[dict] = []
    for namespace, file in PRIMARY_FILES:
        docs.extend(manifests.in_namespace(_required(files, file), namespace))
    return _plan([namespace_doc(ns) for ns, _ in PRIMARY_FILES], docs)


def render_remote(files: Mapping[str, list[dict]], deployments: Sequence[str]) -> TravelsPlan:
    """``travel-agency`` with the named Deployments (only them, from their files) and the six Services."""
    _check_role(REMOTE, deployments)
    docs: list[dict] = []
    for name in deployments:
        file = deployment_file(name)
        found = manifests.select(_required(files, file), kind="Deployment", name=name)
        if len(found) != 1:
            raise ManifestError(f"kiali/demos travels/{file} has {len(found)} Deployment(s) named {name!r}; expected exactly one")
        docs.extend(manifests.in_namespace(found, REMOTE_NAMESPACE))
    docs.extend(remote_services())
    return _plan([namespace_doc(REMOTE_NAMESPACE)], docs)


def render(role: str, files: Mapping[str, list[dict]], deployments: Sequence[str] = ()) -> TravelsPlan:
    _check_role(role, deployments)
    return render_primary(files) if role == PRIMARY else render_remote(files, deployments)


def key(doc: dict) -> str:
    """``<Kind>/<namespace>/<name>``, the key ``manifests.create`` returns resources under."""
    md = doc["metadata"]
    return f"{doc['kind']}/{md.get('namespace', '')}/{md['name']}"


def _plan(namespaces: list[dict], docs: list[dict]) -> TravelsPlan:
    names = {n["metadata"]["name"] for n in namespaces}
    for d in docs:
        ns = d["metadata"].get("namespace")
        if d["kind"] not in manifests.CLUSTER_SCOPED and ns not in names:
            raise ManifestError(f"{key(d)} is outside the Travels namespaces {sorted(names)}")
    return TravelsPlan(
        namespaces=namespaces,
        objects=[d for d in docs if d["kind"] not in WORKLOAD_KINDS],
        workloads=[d for d in docs if d["kind"] in WORKLOAD_KINDS],
    )


def _required(files: Mapping[str, list[dict]], file: str) -> list[dict]:
    if file not in files:
        raise ManifestError(f"kiali/demos travels/{file} was not loaded")
    return files[file]


def _check_role(role: str, deployments: Sequence[str]) -> None:
    if role not in ROLES:
        raise ValueError(f"TravelsApp role must be one of {', '.join(ROLES)}; got {role!r}")
    if role == PRIMARY and deployments:
        raise ValueError("the primary runs the three upstream files; deployments apply to a remote only")
    if role == REMOTE and not deployments:
        raise ValueError("a remote TravelsApp needs at least one deployment (e.g. travels-v2)")


# --- component -----------------------------------------------------------------------------------


@dataclass
class TravelsAppArgs:
    cluster: Cluster
    source: ManifestSource
    commit: str  # kiali/demos commit (versions.travels)
    role: str = PRIMARY
    deployments: Sequence[str] = ()  # remote only: e.g. ("travels-v2", "travels-v3")
    # What every workload waits for: the primary istiod Release, or a remote's "remote ready" handle.
    after: Sequence[pulumi.Resource] = ()


class TravelsApp(pulumi.ComponentResource):
    namespaces: dict[str, pulumi.CustomResource]
    objects: dict[str, pulumi.CustomResource]
    workloads: dict[str, pulumi.CustomResource]

    def __init__(self, name: str, args: TravelsAppArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        cluster = args.cluster
        files = {f: args.source.load(manifests.travels_url(args.commit, f)) for f in files_for(args.role, args.deployments)}
        plan = render(args.role, files, args.deployments)
        # Cluster-qualified: `travels` is a Service in two namespaces and on several clusters.
        prefix = f"{cluster.name}-travels"

        self.namespaces = manifests.create(prefix, plan.namespaces, cluster.opts(self))
        ready_namespaces = list(self.namespaces.values())
        self.objects = manifests.create(prefix, plan.objects, cluster.opts(self, depends_on=ready_namespaces))
        config = [r for k, r in self.objects.items() if k.split("/", 1)[0] in CONFIG_KINDS]
        self.workloads = manifests.create(
            prefix,
            plan.workloads,
            cluster.opts(
                self,
                depends_on=[*ready_namespaces, *config, *args.after],
                custom_timeouts=pulumi.CustomTimeouts(create=WORKLOAD_TIMEOUT, update=WORKLOAD_TIMEOUT),
            ),
        )
        self.cluster_name = cluster.name
        self.namespace_names = [d["metadata"]["name"] for d in plan.namespaces]
        self.deployment_names = [f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in plan.workloads if d["kind"] == "Deployment"]
        self.register_outputs({
            "cluster": self.cluster_name,
            "role": args.role,
            "namespaces": self.namespace_names,
            "deployments": self.deployment_names,
        })
