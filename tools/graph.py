"""What `pulumi up` waits for, computed from a mock run of the program.

The engine starts a step as soon as the SDK sends its registration, and the SDK sends it only
once everything it waits for is done. So each registration waits for:

- its ``dependencies`` and ``propertyDependencies`` (``depends_on`` on a component arrives
  already expanded to the component's children, as the SDK sends it);
- its provider (the request's ``provider`` reference, ``urn::id``);
- for a read (``Resource.get``), whatever produces its id: the SDK awaits the id before it
  sends the read, but does not list the id's resources as dependencies, so ``capture_read_ids``
  records them while the program runs.

Children do not wait for their parent, and component resources take no time.

Each step is weighted by ``STEP_MODEL`` (``classify``); ``critical_path`` is the heaviest chain
of the resulting DAG and ``serial_sum`` the same steps done one after another, as a tutorial
reader typing the commands would. Everything here is pure data in, data out, except
``capture_read_ids``, which patches the SDK's read entry point for the duration of a run.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass(frozen=True)
class Step:
    label: str
    seconds: float
    what: str


# The step-time model (modelled seconds on a laptop with warm image caches). Order = display order.
MINIKUBE_START = Step("minikube start", 60, "Command whose create line runs `start` (a minikube profile)")
METALLB = Step("metallb addon", 15, "Command whose create line runs `metallb`")
HELM_BASE = Step("helm base", 10, "helm.v3.Release of chart `base`")
HELM_ISTIOD = Step("helm istiod", 40, "helm.v3.Release of chart `istiod`")
HELM_GATEWAY = Step("helm gateway", 30, "helm.v3.Release of chart `gateway`")
HELM_KIALI = Step("helm kiali", 40, "helm.v3.Release of chart `kiali-server`/`kiali-operator`")
HELM_OTHER = Step("helm other", 30, "helm.v3.Release of any other chart")
WORKLOAD = Step("deployment", 45, "Deployment/StatefulSet/DaemonSet rollout (image pull, sidecar, readiness)")
LOADBALANCER = Step("loadbalancer", 5, "Service of type LoadBalancer, or a read of a Service (its LB IP)")
TOKEN = Step("token secret", 2, "Secret of type kubernetes.io/service-account-token (token filled in)")
COMMAND = Step("other command", 1, "any other Command (docker network, kubectl wait, ...)")
K8S_OBJECT = Step("k8s object", 1, "any other Kubernetes object (Namespace, Secret, ConfigMap, RBAC, CR, ...)")
TLS = Step("tls", 1, "pulumi-tls key, CSR or certificate (local)")
PROVIDER = Step("provider", 0, "explicit provider (reads the kubeconfig)")
COMPONENT = Step("component", 0, "component resource (no step of its own)")
OTHER = Step("other", 1, "anything else")

STEP_MODEL: tuple[Step, ...] = (
    MINIKUBE_START, METALLB, HELM_BASE, HELM_ISTIOD, HELM_GATEWAY, HELM_KIALI, HELM_OTHER, WORKLOAD,
    LOADBALANCER, TOKEN, COMMAND, K8S_OBJECT, TLS, PROVIDER, COMPONENT, OTHER,
)

HELM_CHARTS = {"base": HELM_BASE, "istiod": HELM_ISTIOD, "gateway": HELM_GATEWAY,
               "kiali-server": HELM_KIALI, "kiali-operator": HELM_KIALI}
WORKLOAD_TYPES = {"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet"}
SERVICE_TYPE = "kubernetes:core/v1:Service"
SECRET_TYPE = "kubernetes:core/v1:Secret"
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
COMMAND_TYPE = "command:local:Command"
HELM_RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"


def chart_name(chart: Any) -> str:
    """``istiod`` from ``istiod``, ``istio/istiod``, ``oci://host/charts/istiod`` or a ``.tgz`` path."""
    name = str(chart or "").rstrip("/").rsplit("/", 1)[-1]
    if name.endswith(".tgz"):
        name = name[: -len(".tgz")].rsplit("-", 1)[0]
    return name


def command_words(line: Any) -> list[str]:
    try:
        return shlex.split(str(line or ""))
    except ValueError:
        return str(line or "").split()


def classify(typ: str, inputs: Mapping[str, Any], *, custom: bool = True, read: bool = False) -> Step:
    """The model step of one registration (``inputs`` without secret envelopes)."""
    if typ == STACK_TYPE or not custom:
        return COMPONENT
    if typ.startswith("pulumi:providers:"):
        return PROVIDER
    if typ == COMMAND_TYPE:
        words = command_words(inputs.get("create"))
        if "start" in words:
            return MINIKUBE_START
        if "metallb" in words:
            return METALLB
        return COMMAND
    if typ == HELM_RELEASE_TYPE:
        return HELM_CHARTS.get(chart_name(inputs.get("chart")), HELM_OTHER)
    if typ in WORKLOAD_TYPES:
        return WORKLOAD
    if typ == SERVICE_TYPE and (read or ((inputs.get("spec") or {}).get("type") == "LoadBalancer")):
        return LOADBALANCER
    if typ == SECRET_TYPE and inputs.get("type") == TOKEN_SECRET_TYPE:
        return TOKEN
    if typ.startswith("kubernetes:"):
        return K8S_OBJECT
    if typ.startswith("tls:"):
        return TLS
    return OTHER


# --- the graph ------------------------------------------------------------------------------------


def provider_urn(ref: str) -> str:
    """The URN of a provider reference ``urn::id`` ('' for none)."""
    return ref.rsplit("::", 1)[0] if ref else ""


def waits_for(request: Mapping[str, Any], read_ids: Iterable[str] = ()) -> set[str]:
    """Every URN one registration waits for (see the module doc)."""
    deps = set(request.get("dependencies") or ())
    for urns in (request.get("propertyDependencies") or {}).values():
        deps.update(urns)
    if request.get("provider"):
        deps.add(provider_urn(request["provider"]))
    deps.update(read_ids)
    return deps


def build_graph(requests: Mapping[str, Mapping[str, Any]],
                read_id_deps: Mapping[str, Iterable[str]] | None = None) -> dict[str, set[str]]:
    """urn -> the registered URNs it waits for (unregistered ones, e.g. default providers, dropped)."""
    read_id_deps = read_id_deps or {}
    nodes = {u for u, q in requests.items() if q.get("type") != STACK_TYPE}
    return {u: (waits_for(requests[u], read_id_deps.get(u, ())) & nodes) - {u} for u in nodes}


class CycleError(ValueError):
    pass


def finish_times(weights: Mapping[str, float], deps: Mapping[str, Iterable[str]]) -> tuple[dict[str, float], dict[str, str | None]]:
    """Earliest finish of every node with unlimited parallelism, and the predecessor that decides it.

    Ties go to the lexically smallest URN, so the result does not depend on dict order.
    """
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    for root in sorted(deps):
        if state.get(root) == 2:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(deps.get(root, ()))))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is not None:
                s = state.get(nxt)
                if s == 1:
                    cycle = [n for n, _ in stack]
                    raise CycleError("dependency cycle: " + " -> ".join([*cycle[cycle.index(nxt):], nxt]))
                if s is None:
                    state[nxt] = 1
                    stack.append((nxt, iter(sorted(deps.get(nxt, ())))))
                continue
            stack.pop()
            best, best_dep = 0.0, None
            for d in sorted(deps.get(node, ())):
                if finish[d] > best:
                    best, best_dep = finish[d], d
            finish[node] = best + float(weights.get(node, 0))
            via[node] = best_dep
            state[node] = 2
    return finish, via


def critical_path(weights: Mapping[str, float], deps: Mapping[str, Iterable[str]]) -> tuple[float, list[str]]:
    """The heaviest chain (modelled seconds, members first to last). Empty graph: (0, [])."""
    if not deps:
        return 0.0, []
    finish, via = finish_times(weights, deps)
    end = min(finish, key=lambda n: (-finish[n], n))
    path = [end]
    while via[path[-1]] is not None:
        path.append(via[path[-1]])
    path.reverse()
    # Trailing zero-weight members (components, providers) add nothing: keep the path to real work.
    while len(path) > 1 and not weights.get(path[-1]):
        path.pop()
    while len(path) > 1 and not weights.get(path[0]):
        path.pop(0)
    return finish[end], path


def serial_sum(weights: Mapping[str, float]) -> float:
    return float(sum(weights.values()))


def ancestors(deps: Mapping[str, Iterable[str]], node: str) -> set[str]:
    """Everything ``node`` waits for, directly or not."""
    seen: set[str] = set()
    todo = list(deps.get(node, ()))
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(deps.get(n, ()))
    return seen


# --- reads: what produces the id -----------------------------------------------------------------


@contextlib.contextmanager
def capture_read_ids() -> Iterator[list]:
    """Record, for every ``Resource.get`` made while the block runs, the resources its id came from.

    Yields a list; after the run, ``read_id_urns(that_list)`` gives ``{read urn: {producer urns}}``.
    """
    import pulumi.resource as pres

    captured: list = []
    original = pres.read_resource

    def recording(res, *args, **kwargs):
        opts = args[3] if len(args) > 3 else kwargs.get("opts")
        if opts is not None and opts.id is not None:
            captured.append((res, opts.id))
        return original(res, *args, **kwargs)

    pres.read_resource = recording
    try:
        yield captured
    finally:
        pres.read_resource = original


def _resolved(output: Any) -> Any:
    """The finished ``_OutputData`` of an Output after a run, or None."""
    data = getattr(output, "_data", None)
    if data is None or not data.done() or data.cancelled() or data.exception() is not None:
        return None
    return data.result()


def read_id_urns(captured: Iterable) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for res, id_ in captured:
        me = _resolved(getattr(res, "urn", None))
        if me is None:
            continue
        data = _resolved(id_) if hasattr(id_, "_data") else None  # a plain string id waits for nothing
        urns = set()
        for r in (data.resources if data is not None else ()):
            d = _resolved(getattr(r, "urn", None))
            if d is not None and d.value:
                urns.add(d.value)
        out[me.value] = urns
    return out


# --- a whole run ----------------------------------------------------------------------------------


def short(urn: str) -> str:
    """``Type::name`` without stack/project and parent types."""
    parts = urn.split("::")
    return f"{parts[2].split('$')[-1]}::{parts[3]}" if len(parts) >= 4 else urn


@dataclass
class Node:
    urn: str
    type: str
    name: str
    step: Step
    parent: str
    cluster: str | None


@dataclass
class Graph:
    nodes: dict[str, Node]
    deps: dict[str, set[str]]

    @property
    def weights(self) -> dict[str, float]:
        return {u: n.step.seconds for u, n in self.nodes.items()}

    def critical_path(self) -> tuple[float, list[str]]:
        return critical_path(self.weights, self.deps)

    def serial_sum(self) -> float:
        return serial_sum(self.weights)

    def finish_times(self) -> dict[str, float]:
        return finish_times(self.weights, self.deps)[0]

    def ancestors(self, urn: str) -> set[str]:
        return ancestors(self.deps, urn)

    def top_component(self, urn: str) -> str:
        """The outermost component holding ``urn`` (itself if it sits directly under the stack)."""
        seen = set()
        while urn in self.nodes and self.nodes[urn].parent in self.nodes and urn not in seen:
            seen.add(urn)
            urn = self.nodes[urn].parent
        return urn


def unwrap(v: Any) -> Any:
    """Strip Pulumi secret envelopes (same as tests/harness.py ``unwrap``)."""
    from pulumi.runtime import rpc

    if isinstance(v, dict):
        if v.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return unwrap(v.get("value"))
        return {k: unwrap(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unwrap(x) for x in v]
    return v


def inputs_by_urn(requests: Mapping[str, Mapping[str, Any]], records: Iterable[Any]) -> dict[str, dict]:
    """Each registration's recorded inputs, matched by (type, name); raises on an ambiguous pair."""
    by_key: dict[tuple[str, str], list] = {}
    for r in records:
        by_key.setdefault((r.typ, r.name), []).append(r)
    out = {}
    for urn, q in requests.items():
        found = by_key.get((q["type"], q["name"]), [])
        if len(found) > 1:  # same type and name under different parent types: tell them apart by provider
            found = [r for r in found if r.provider == q["provider"]]
        if len(found) > 1 and any(r.inputs != found[0].inputs for r in found):
            raise ValueError(f"{len(found)} registrations of type {q['type']} are named {q['name']!r}")
        out[urn] = found[0].inputs if found else {}
    return out


def cluster_of(urn: str, requests: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The cluster a registration acts on: its provider's cluster component, else its own ancestors'."""
    def component_cluster(u: str) -> str | None:
        seen = set()
        while u and u in requests and u not in seen:
            seen.add(u)
            typ = requests[u]["type"]
            if typ.endswith("Cluster") and ":index:" in typ:
                return requests[u]["name"]
            u = requests[u]["parent"]
        return None

    q = requests[urn]
    if q.get("provider"):
        found = component_cluster(provider_urn(q["provider"]))
        if found:
            return found
    return component_cluster(urn)


def graph_of(requests: Mapping[str, Mapping[str, Any]], records: Iterable[Any],
             read_id_deps: Mapping[str, Iterable[str]] | None = None) -> Graph:
    inputs = inputs_by_urn(requests, records)
    nodes = {}
    for urn, q in requests.items():
        if q["type"] == STACK_TYPE:
            continue
        step = classify(q["type"], unwrap(inputs.get(urn) or {}), custom=q.get("custom", True), read=q.get("read", False))
        nodes[urn] = Node(urn, q["type"], q["name"], step, q["parent"], cluster_of(urn, requests))
    return Graph(nodes=nodes, deps=build_graph(requests, read_id_deps))


# --- stacks to evaluate -----------------------------------------------------------------------------



def with_remotes(config: Mapping[str, Any], count: int) -> dict:
    """The stack config with ``count`` remotes r1..rN modelled on its first remote.

    Remote i: name ``r{i}``, network ``net-r{i}``, static IP .{2+i}, MetalLB range of 5 addresses
    from .{100+5(i-1)}: 16 remotes use .3-.18 and .100-.179 of the /24, clear of the primary's.
    """
    import copy

    if not 1 <= count <= 30:
        raise ValueError("1 to 30 remotes fit the /24")
    cfg = copy.deepcopy(dict(config))
    base = cfg["remotes"][0]
    subnet = cfg["minikube"]["subnet"].rsplit(".", 1)[0]
    remotes = []
    for i in range(1, count + 1):
        r = copy.deepcopy(base)
        first = 100 + 5 * (i - 1)
        r.update(name=f"r{i}", network=f"net-r{i}", loadBalancerRange=f"{first}-{first + 4}")
        r["minikube"] = {**r["minikube"], "staticIp": f"{subnet}.{2 + i}"}
        remotes.append(r)
    cfg["remotes"] = remotes
    return cfg
