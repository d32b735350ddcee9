"""Stack configuration: parsed once into frozen objects, validated before any resource exists.

Every error names the full config key (``kiali-multicluster:remotes[0].minikube.memory``) and
says how to fix it. ``parse`` is pure (dict in, StackConfig out) so tests call it directly;
``load`` reads the same keys from the Pulumi config of the running stack.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

PROJECT = "kiali-multicluster"

TOP_KEYS = ("mesh", "versions", "minikube", "primary", "remotes", "kiali", "istio", "manifests")
REQUIRED_TOP_KEYS = ("mesh", "versions", "primary", "remotes")
# The Deployments the Travels demo ships for a remote cluster (kiali/demos travels/*.yaml).
KNOWN_TRAVELS = ("travels-v2", "travels-v3")
KIALI_AUTH = ("anonymous", "openid", "openshift")
KIALI_LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
MINIKUBE_DRIVERS = ("docker", "podman")
MIN_MEMORY_MB = 4096
MIN_CPUS = 2
DEFAULT_ISTIO_HUB = "gcr.io/istio-release"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_K8S_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_MEMORY = re.compile(r"^(\d+)\s*(g|gb|m|mb)$", re.IGNORECASE)
_LB_RANGE = re.compile(r"^(\d{1,3})-(\d{1,3})$")
_HUB = re.compile(r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)*$")


class ConfigError(ValueError):
    """One or more config problems; ``problems`` holds (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = "\n".join(f"  {key}: {msg}" for key, msg in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


def key(path: str) -> str:
    return f"{PROJECT}:{path}"


@dataclass(frozen=True)
class MinikubeNetwork:
    """The docker network every minikube profile of the stack joins."""

    name: str
    subnet: str  # e.g. 192.168.50.0/24
    gateway: str  # the subnet's .1, given to `docker network create --gateway`
    driver: str

    def address(self, last_octet: int) -> str:
        net = ipaddress.ip_network(self.subnet)
        return str(net.network_address + last_octet)


@dataclass(frozen=True)
class MinikubeSpec:
    memory_mb: int
    cpus: int
    static_ip: str


@dataclass(frozen=True)
class ExistingSpec:
    context: str
    api_server: str  # an https URL the primary's pods can reach
    kubeconfig: str | None = None


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    network: str
    primary: bool
    minikube: MinikubeSpec | None = None
    existing: ExistingSpec | None = None
    lb_range: tuple[int, int] | None = None  # last octets, inclusive
    kubeconfig: str | None = None
    travels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Versions:
    istio: str
    kubernetes: str
    kiali: str
    travels: str


@dataclass(frozen=True)
class KialiSpec:
    auth: str = "anonymous"
    log_level: str = "info"
    ingress: bool = False
    openid_issuer_uri: str | None = None  # auth: openid only
    openid_client_id: str | None = None


@dataclass(frozen=True)
class ManifestSpec:
    offline_dir: str | None = None  # read <dir>/<url path> instead of fetching
    cache_dir: str = ".cache/manifests"


@dataclass(frozen=True)
class StackConfig:
    mesh_id: str
    versions: Versions
    primary: ClusterSpec
    remotes: tuple[ClusterSpec, ...]
    minikube: MinikubeNetwork | None = None
    kiali: KialiSpec = field(default_factory=KialiSpec)
    istio_hub: str = DEFAULT_ISTIO_HUB
    manifests: ManifestSpec = field(default_factory=ManifestSpec)

    @property
    def clusters(self) -> tuple[ClusterSpec, ...]:
        return (self.primary, *self.remotes)

    def lb_pool(self, cluster: ClusterSpec) -> str | None:
        """MetalLB's address range for a minikube cluster, e.g. ``192.168.50.20-192.168.50.29``."""
        if cluster.lb_range is None or self.minikube is None:
            return None
        first, last = cluster.lb_range
        return f"{self.minikube.address(first)}-{self.minikube.address(last)}"


class _Checker:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def add(self, path: str, msg: str) -> None:
        self.problems.append((key(path), msg))

    def mapping(self, path: str, value: Any, allowed: tuple[str, ...]) -> Mapping | None:
        if not isinstance(value, Mapping):
            self.add(path, f"must be a mapping with keys {', '.join(allowed)}; got {type(value).__name__}")
            return None
        for k in value:
            if k not in allowed:
                self.add(f"{path}.{k}", f"unknown key (typo?); allowed here: {', '.join(allowed)}")
        return value

    def string(self, path: str, value: Any, *, required: bool = True) -> str | None:
        if value is None:
            if required:
                self.add(path, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"must be a non-empty string; got {value!r}")
            return None
        return value.strip()

    def pattern(self, path: str, value: Any, regex: re.Pattern, example: str) -> str | None:
        s = self.string(path, value)
        if s is not None and not regex.match(s):
            self.add(path, f"{s!r} is not well-formed; write it like {example}")
            return None
        return s


def parse_memory_mb(text: str) -> int | None:
    m = _MEMORY.match(str(text).strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2).lower()
    return n * 1024 if unit.startswith("g") else n


def parse(raw: Mapping[str, Any]) -> StackConfig:
    """Validate the project's config (keys without the ``kiali-multicluster:`` prefix)."""
    c = _Checker()
    for k in raw:
        if k not in TOP_KEYS:
            c.add(k, f"unknown config key (typo?); known keys: {', '.join(TOP_KEYS)}")
    for k in REQUIRED_TOP_KEYS:
        if raw.get(k) is None:
            c.add(k, "is required; see Pulumi.east-west.yaml for a complete example")

    # mesh
    mesh_id = None
    if raw.get("mesh") is not None:
        mesh = c.mapping("mesh", raw["mesh"], ("id",))
        if mesh is not None:
            mesh_id = c.string("mesh.id", mesh.get("id"))

    # versions
    versions = None
    if raw.get("versions") is not None:
        v = c.mapping("versions", raw["versions"], ("istio", "kubernetes", "kiali", "travels"))
        if v is not None:
            istio = c.pattern("versions.istio", v.get("istio"), _SEMVER, "1.30.3")
            k8s = c.pattern("versions.kubernetes", v.get("kubernetes"), _K8S_VERSION, "v1.34.0")
            kiali = c.pattern("versions.kiali", v.get("kiali"), _SEMVER, "2.29.0")
            travels = c.pattern(
                "versions.travels", v.get("travels"), _COMMIT, "a full 40-character kiali/demos commit id"
            )
            if None not in (istio, k8s, kiali, travels):
                versions = Versions(istio, k8s, kiali, travels)

    # minikube network
    network = _parse_minikube_network(c, raw.get("minikube"))

    # clusters
    primary = None
    if raw.get("primary") is not None:
        primary = _parse_cluster(c, "primary", raw["primary"], primary=True, network=network)
    remotes: list[ClusterSpec] = []
    if raw.get("remotes") is not None:
        if not isinstance(raw["remotes"], list) or not raw["remotes"]:
            c.add("remotes", "must be a non-empty list of clusters (a primary-remote mesh needs a remote)")
        else:
            for i, r in enumerate(raw["remotes"]):
                spec = _parse_cluster(c, f"remotes[{i}]", r, primary=False, network=network)
                if spec is not None:
                    remotes.append(spec)
    clusters = ([primary] if primary else []) + remotes
    _check_cross_cluster(c, clusters, raw, network)

    # kiali
    kiali = KialiSpec()
    if raw.get("kiali") is not None:
        kv = c.mapping("kiali", raw["kiali"], ("auth", "logLevel", "ingress", "openid"))
        if kv is not None:
            auth = kv.get("auth", "anonymous")
            if auth not in KIALI_AUTH:
                hint = (
                    " (Kiali's token and header logins build clients for the home cluster only, so they"
                    " cannot show remote clusters)"
                    if auth in ("token", "header")
                    else ""
                )
                c.add("kiali.auth", f"{auth!r} is not supported with remote clusters{hint}; use one of {', '.join(KIALI_AUTH)}")
            level = kv.get("logLevel", "info")
            if level not in KIALI_LOG_LEVELS:
                c.add("kiali.logLevel", f"{level!r} is not a Kiali log level; use one of {', '.join(KIALI_LOG_LEVELS)}")
            ingress = kv.get("ingress", False)
            if not isinstance(ingress, bool):
                c.add("kiali.ingress", f"must be true or false; got {ingress!r}")
            issuer = client_id = None
            if auth == "openid":
                ov = c.mapping("kiali.openid", kv.get("openid") or {}, ("issuerUri", "clientId"))
                if ov is not None:
                    issuer = c.string("kiali.openid.issuerUri", ov.get("issuerUri"))
                    client_id = c.string("kiali.openid.clientId", ov.get("clientId"))
                    if issuer is not None and urlparse(issuer).scheme != "https":
                        c.add("kiali.openid.issuerUri", f"{issuer!r} must be the https URL of your OpenID provider")
            elif kv.get("openid") is not None:
                c.add("kiali.openid", "only applies with kiali.auth: openid; remove it or set auth to openid")
            kiali = KialiSpec(auth=auth, log_level=level, ingress=bool(ingress),
                              openid_issuer_uri=issuer, openid_client_id=client_id)

    # istio (optional)
    hub = DEFAULT_ISTIO_HUB
    if raw.get("istio") is not None:
        iv = c.mapping("istio", raw["istio"], ("hub",))
        if iv is not None and iv.get("hub") is not None:
            hub = c.pattern("istio.hub", iv.get("hub"), _HUB, "gcr.io/istio-release or docker.io/istio") or hub

    # manifests (optional)
    manifests = ManifestSpec()
    if raw.get("manifests") is not None:
        mv = c.mapping("manifests", raw["manifests"], ("offlineDir", "cacheDir"))
        if mv is not None:
            off = c.string("manifests.offlineDir", mv.get("offlineDir"), required=False)
            cache = c.string("manifests.cacheDir", mv.get("cacheDir"), required=False)
            manifests = ManifestSpec(offline_dir=off, cache_dir=cache or ManifestSpec.cache_dir)

    if c.problems:
        raise ConfigError(c.problems)
    assert mesh_id and versions and primary  # guaranteed when no problem was recorded
    return StackConfig(
        mesh_id=mesh_id,
        versions=versions,
        primary=primary,
        remotes=tuple(remotes),
        minikube=network,
        kiali=kiali,
        istio_hub=hub,
        manifests=manifests,
    )


def _parse_minikube_network(c: _Checker, value: Any) -> MinikubeNetwork | None:
    if value is None:
        return None
    v = c.mapping("minikube", value, ("network", "subnet", "driver"))
    if v is None:
        return None
    name = c.string("minikube.network", v.get("network"))
    if name is not None and not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", name):
        c.add("minikube.network", f"{name!r} is not a valid docker network name")
        name = None
    driver = v.get("driver", "docker")
    if driver not in MINIKUBE_DRIVERS:
        c.add("minikube.driver", f"{driver!r} cannot place profiles on a shared network with --static-ip; use one of {', '.join(MINIKUBE_DRIVERS)}")
        driver = None
    subnet_text = c.string("minikube.subnet", v.get("subnet"))
    subnet = None
    if subnet_text is not None:
        try:
            net = ipaddress.ip_network(subnet_text, strict=True)
        except ValueError:
            c.add("minikube.subnet", f"{subnet_text!r} is not a network address; write it like 192.168.50.0/24")
        else:
            if net.version != 4 or net.prefixlen != 24 or not net.is_private:
                c.add("minikube.subnet", f"{subnet_text} must be a private IPv4 /24 such as 192.168.50.0/24")
            else:
                subnet = str(net)
    if None in (name, driver, subnet):
        return None
    net = ipaddress.ip_network(subnet)
    return MinikubeNetwork(name=name, subnet=subnet, gateway=str(net.network_address + 1), driver=driver)


def _parse_cluster(c: _Checker, path: str, value: Any, *, primary: bool, network: MinikubeNetwork | None) -> ClusterSpec | None:
    allowed = ("name", "network", "minikube", "existing", "kubeconfig", "loadBalancerRange")
    if not primary:
        allowed += ("travels",)
    v = c.mapping(path, value, allowed)
    if v is None:
        return None
    before = len(c.problems)
    name = c.string(f"{path}.name", v.get("name"))
    if name is not None and (not _DNS_LABEL.match(name) or len(name) > 63):
        c.add(f"{path}.name", f"{name!r} must be a DNS-1123 label: lower-case letters, digits and '-', at most 63 characters, e.g. west")
    net_name = c.string(f"{path}.network", v.get("network"))
    if net_name is not None and (not _DNS_LABEL.match(net_name) or len(net_name) > 63):
        c.add(f"{path}.network", f"{net_name!r} must be a DNS-1123 label, e.g. network2")

    has_mk, has_ex = v.get("minikube") is not None, v.get("existing") is not None
    if has_mk == has_ex:
        c.add(path, "give exactly one of minikube: {memory, cpus, staticIp} (a new cluster) or existing: {context, apiServer} (a cluster you already have)")
    mk = ex = None
    if has_mk:
        mk = _parse_minikube(c, f"{path}.minikube", v["minikube"], network)
    if has_ex:
        ex = _parse_existing(c, f"{path}.existing", v["existing"])

    kubeconfig = c.string(f"{path}.kubeconfig", v.get("kubeconfig"), required=False)
    if kubeconfig is not None and has_mk:
        c.add(f"{path}.kubeconfig", "only applies to existing clusters; minikube writes its own kubeconfig entry (remove the key)")

    lb_range = None
    if v.get("loadBalancerRange") is not None:
        if has_ex:
            c.add(f"{path}.loadBalancerRange", "not allowed with existing: the program configures MetalLB only on minikube clusters; remove the key")
        else:
            lb_range = _parse_lb_range(c, f"{path}.loadBalancerRange", v["loadBalancerRange"])
    elif has_mk:
        c.add(f"{path}.loadBalancerRange", "is required for a minikube cluster (MetalLB's address range, e.g. \"20-29\")")

    travels: tuple[str, ...] = ()
    if not primary and v.get("travels") is not None:
        t = v["travels"]
        if not isinstance(t, list) or not all(isinstance(x, str) for x in t):
            c.add(f"{path}.travels", f"must be a list drawn from {', '.join(KNOWN_TRAVELS)}")
        else:
            for i, item in enumerate(t):
                if item not in KNOWN_TRAVELS:
                    c.add(f"{path}.travels[{i}]", f"{item!r} is not a Travels deployment; use one of {', '.join(KNOWN_TRAVELS)}")
            if len(set(t)) != len(t):
                c.add(f"{path}.travels", "lists a deployment twice; list each once")
            travels = tuple(t)

    if len(c.problems) != before:
        return None
    return ClusterSpec(
        name=name,
        network=net_name,
        primary=primary,
        minikube=mk,
        existing=ex,
        lb_range=lb_range,
        kubeconfig=kubeconfig,
        travels=travels,
    )


def _parse_minikube(c: _Checker, path: str, value: Any, network: MinikubeNetwork | None) -> MinikubeSpec | None:
    v = c.mapping(path, value, ("memory", "cpus", "staticIp"))
    if v is None:
        return None
    if network is None:
        c.add("minikube", f"is required when {path} is used: give {{network, subnet, driver}} for the shared docker network")
    mem_text = v.get("memory", "8g")
    memory = parse_memory_mb(mem_text)
    if memory is None:
        c.add(f"{path}.memory", f"{mem_text!r} is not a memory size; write it like 8g or 8192mb")
    elif memory < MIN_MEMORY_MB:
        c.add(f"{path}.memory", f"{mem_text} is below the {MIN_MEMORY_MB // 1024}g minimum for Istio, Prometheus, Kiali and Travels; use 8g")
    cpus = v.get("cpus", 4)
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < MIN_CPUS:
        c.add(f"{path}.cpus", f"must be a whole number of at least {MIN_CPUS}; got {cpus!r}")
        cpus = None
    ip_text = c.string(f"{path}.staticIp", v.get("staticIp"))
    ip = None
    if ip_text is not None:
        try:
            ip = ipaddress.ip_address(ip_text)
        except ValueError:
            c.add(f"{path}.staticIp", f"{ip_text!r} is not an IPv4 address; write it like 192.168.50.2")
        else:
            if network is not None:
                net = ipaddress.ip_network(network.subnet)
                if ip not in net or ip in (net.network_address, net.broadcast_address):
                    c.add(f"{path}.staticIp", f"{ip} is not a host address of minikube.subnet {network.subnet}")
                    ip = None
                elif str(ip) == network.gateway:
                    c.add(f"{path}.staticIp", f"{ip} is the docker network's gateway; use another host address such as {network.address(2)}")
                    ip = None
    if memory is None or cpus is None or ip is None or memory < MIN_MEMORY_MB:
        return None
    return MinikubeSpec(memory_mb=memory, cpus=cpus, static_ip=str(ip))


def _parse_existing(c: _Checker, path: str, value: Any) -> ExistingSpec | None:
    v = c.mapping(path, value, ("context", "apiServer"))
    if v is None:
        return None
    ctx = c.string(f"{path}.context", v.get("context"))
    api = c.string(f"{path}.apiServer", v.get("apiServer"))
    if api is not None:
        u = urlparse(api)
        if u.scheme != "https" or not u.hostname:
            c.add(f"{path}.apiServer", f"{api!r} must be an https URL the primary's pods can reach, e.g. https://10.0.0.5:6443")
            api = None
        elif u.hostname in ("127.0.0.1", "localhost", "::1"):
            c.add(f"{path}.apiServer", f"{api} is a loopback address, unreachable from another cluster's pods; give the address on the shared network")
            api = None
    if ctx is None or api is None:
        return None
    return ExistingSpec(context=ctx, api_server=api.rstrip("/"))


def _parse_lb_range(c: _Checker, path: str, value: Any) -> tuple[int, int] | None:
    m = _LB_RANGE.match(str(value).strip())
    if not m:
        c.add(path, f"{value!r} must be A-B, the last octets of the range, e.g. \"20-29\"")
        return None
    a, b = int(m.group(1)), int(m.group(2))
    if not (2 <= a <= b <= 254):
        c.add(path, f"{value!r} must satisfy 2 <= A <= B <= 254")
        return None
    return (a, b)


def _check_cross_cluster(c: _Checker, clusters: list[ClusterSpec], raw: Mapping[str, Any], network: MinikubeNetwork | None) -> None:
    paths = ["primary"] + [f"remotes[{i}]" for i in range(len(clusters) - 1)]
    if clusters and not clusters[0].primary:  # the primary failed to parse: paths shift by one
        paths = [f"remotes[{i}]" for i in range(len(clusters))]
    seen_names: dict[str, str] = {}
    seen_nets: dict[str, str] = {}
    seen_ips: dict[str, str] = {}
    for p, cl in zip(paths, clusters, strict=False):
        if cl.name in seen_names:
            c.add(f"{p}.name", f"{cl.name!r} is already used by {key(seen_names[cl.name])}; cluster names must be unique")
        seen_names.setdefault(cl.name, p)
        if cl.network in seen_nets:
            c.add(f"{p}.network", f"{cl.network!r} is already used by {key(seen_nets[cl.network])}; each cluster gets its own network in this mesh")
        seen_nets.setdefault(cl.network, p)
        if cl.minikube:
            ip = cl.minikube.static_ip
            if ip in seen_ips:
                c.add(f"{p}.minikube.staticIp", f"{ip} is already used by {key(seen_ips[ip])}; give every profile its own address")
            seen_ips.setdefault(ip, p)
    names = set(seen_names)
    if network is not None and network.name in names:
        # minikube removes a docker network named after a profile when it deletes that profile.
        c.add("minikube.network", f"{network.name!r} is also a cluster name; minikube would delete it with that profile. Use another name")
    for p, cl in zip(paths, clusters, strict=False):
        if cl.network in names:
            c.add(f"{p}.network", f"{cl.network!r} is also a cluster name; use a distinct network name such as network-{cl.network}")
    # MetalLB ranges: disjoint, and no node address inside any of them.
    ranged = [(p, cl) for p, cl in zip(paths, clusters, strict=False) if cl.lb_range]
    for i, (p, cl) in enumerate(ranged):
        for q, other in ranged[:i]:
            if cl.lb_range[0] <= other.lb_range[1] and other.lb_range[0] <= cl.lb_range[1]:
                c.add(f"{p}.loadBalancerRange", f"{cl.lb_range[0]}-{cl.lb_range[1]} overlaps {key(q)}.loadBalancerRange; ranges must not overlap")
    if network is not None:
        for ip, p in seen_ips.items():
            last = int(ip.rsplit(".", 1)[1])
            for q, cl in ranged:
                if cl.lb_range[0] <= last <= cl.lb_range[1]:
                    c.add(f"{p}.minikube.staticIp", f"{ip} lies inside {key(q)}.loadBalancerRange; MetalLB would hand the node's address to a Service")


# --- reading the running stack's config --------------------------------------------------------


def raw_from_pulumi() -> dict[str, Any]:
    """Every ``kiali-multicluster:*`` key of the running stack, JSON values decoded."""
    import pulumi.runtime.config as rc

    merged: dict[str, Any] = {}
    merged.update(rc.get_config_env())
    merged.update(rc.CONFIG.get())
    out: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    for k, v in merged.items():
        if not k.startswith(prefix):
            continue
        short = k[len(prefix):]
        if short.startswith("config:"):  # legacy `proj:config:key` form
            short = short[len("config:"):]
        if isinstance(v, str):
            with contextlib.suppress(ValueError):
                v = json.loads(v)
        out[short] = v
    return out


def load() -> StackConfig:
    return parse(raw_from_pulumi())


def read_stack_file(path: str) -> dict[str, Any]:
    """The ``config:`` map of a stack file, keys without the project prefix.

    Only ``config:`` is read: stack creation appends ``encryptionsalt:`` to the file.
    """
    import yaml

    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    prefix = f"{PROJECT}:"
    return {k[len(prefix):]: v for k, v in (doc.get("config") or {}).items() if k.startswith(prefix)}
