#!/usr/bin/env python3
"""make verify: prove the running mesh works, after `pulumi up`.

Reads the clusters from the stack file (``Pulumi.<stack>.yaml``: a minikube cluster's context is
its name, an existing cluster's context is in its config), then checks with the kubernetes
client, every request bounded by a timeout:

  kube API        each context answers /version
  istiod ready    the primary's istio-system/istiod Deployment has Ready replicas
  remote secret   per remote, a Secret on the primary labelled istio/multiCluster=true holds a
                  kubeconfig under the remote's name with current-context, an https server, a user
  remote istiod   per remote, the istiod Service (profile remote) exists and the primary has
                  written istio-ca-root-cert there, equal to the primary's own root
  injector        per remote, every *sidecar-injector.istio.io webhook calls the primary's
                  /inject/cluster/<remote>/net/<network> with a caBundle holding the mesh root
  sidecars        per Travels namespace, every pod has an istio-proxy container and is Ready
  federation      per remote, the primary Prometheus (API server service proxy) returns
                  sum(istio_requests_total{cluster="<remote>"}) > 0, polled up to --prometheus-wait
  kiali           Kiali's /api/config (service proxy) lists every remote cluster as accessible,
                  polled up to --kiali-wait (skipped unless kiali.auth is anonymous)

Prints a PASS/FAIL/SKIP table; exits 0 when nothing failed, 1 otherwise, 2 on a config error.
The checks are pure functions over API response dicts; ``KubeApi`` is the only code that talks
to a cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python tools/verify.py`
    sys.path.insert(0, ROOT)

import yaml  # noqa: E402

from components import kiali, prometheus  # noqa: E402
from components.access import decode_b64  # noqa: E402
from components.cluster import default_kubeconfig_path, kube_context, kubeconfig_file  # noqa: E402
from components.config import ConfigError, StackConfig, parse, read_stack_file  # noqa: E402
from components.istio import CA_ROOT_CERT_CONFIGMAP, NAMESPACE, REMOTE_SECRET_LABEL, injection_path  # noqa: E402
from components.travels import PRIMARY_FILES, REMOTE_NAMESPACE  # noqa: E402

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
PROXY_CONTAINER = "istio-proxy"
INJECTOR_SUFFIX = "sidecar-injector.istio.io"
# Through the API server's service proxy: no port-forward, no LoadBalancer needed.
PROMETHEUS_BASE = f"/api/v1/namespaces/{prometheus.NAMESPACE}/services/{prometheus.NAME}:{prometheus.PORT}/proxy"
# The Service is named after deployment.instance_name; the API lives under server.web_root.
KIALI_BASE = f"/api/v1/namespaces/{kiali.NAMESPACE}/services/{kiali.SERVICE_ACCOUNT}:{kiali.SERVER_PORT}/proxy{kiali.WEB_ROOT}"
REQUEST_TIMEOUT = 10.0  # seconds, every single HTTP request
PROMETHEUS_WAIT = 300.0  # federation scrapes every 15 s; Travels needs a few minutes to produce traffic
KIALI_WAIT = 120.0
POLL_INTERVAL = 10.0
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


@dataclass(frozen=True)
class Check:
    name: str
    cluster: str
    status: str  # PASS | FAIL | SKIP
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def passed(name: str, cluster: str, detail: str) -> Check:
    return Check(name, cluster, PASS, detail)


def failed(name: str, cluster: str, detail: str) -> Check:
    return Check(name, cluster, FAIL, detail)


# --- what to check, from the stack config ---------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    context: str
    kubeconfig: str
    network: str
    primary: bool
    namespaces: tuple[str, ...]  # Travels namespaces on this cluster


def targets(cfg: StackConfig, environ: Mapping[str, str] | None = None) -> list[Target]:
    """The primary first, then every remote; minikube contexts are the cluster names."""
    default = default_kubeconfig_path(dict(os.environ) if environ is None else dict(environ))
    out = []
    for spec in cfg.clusters:
        if spec.primary:
            namespaces = tuple(ns for ns, _ in PRIMARY_FILES)
        else:
            namespaces = (REMOTE_NAMESPACE,) if spec.travels else ()
        out.append(Target(spec.name, kube_context(spec), kubeconfig_file(spec, default), spec.network, spec.primary, namespaces))
    return out


def stack_file(stack: str, root: str = ROOT) -> str:
    return os.path.join(root, f"Pulumi.{stack}.yaml")


# --- pure checks over API responses ------------------------------------------------------------------


def check_api(cluster: str, context: str, version: Mapping | None) -> Check:
    if not version:
        return failed("kube API", cluster, f"context {context}: /version returned nothing")
    return passed("kube API", cluster, f"context {context}, Kubernetes {version.get('gitVersion', '?')}")


def check_istiod(cluster: str, deployment: Mapping | None) -> Check:
    name = "istiod ready"
    if deployment is None:
        return failed(name, cluster, f"Deployment {NAMESPACE}/istiod not found: the istiod chart is not installed")
    want = (deployment.get("spec") or {}).get("replicas", 1)
    status = deployment.get("status") or {}
    ready = status.get("readyReplicas") or 0
    available = any(c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions") or [])
    detail = f"{ready}/{want} replicas ready"
    if ready >= 1 and available:
        return passed(name, cluster, detail)
    return failed(name, cluster, f"{detail}, Available={available}; see kubectl --context {cluster} -n {NAMESPACE} describe deploy/istiod")


def kubeconfig_problem(text: str, cluster: str) -> str | None:
    """Why a remote-secret kubeconfig would not give istiod a client for ``cluster`` (None: it would)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return f"not YAML ({e.__class__.__name__})"
    if not isinstance(doc, dict):
        return "not a kubeconfig"
    current = doc.get("current-context")
    if not current:
        return "no current-context (client-go then finds no cluster)"
    ctx = next((c.get("context") or {} for c in doc.get("contexts") or [] if c.get("name") == current), None)
    if ctx is None:
        return f"current-context {current!r} names no context"
    entry = next((c.get("cluster") or {} for c in doc.get("clusters") or [] if c.get("name") == ctx.get("cluster")), None)
    if entry is None:
        return f"context {current!r} names cluster {ctx.get('cluster')!r}, which is not in the kubeconfig"
    if not str(entry.get("server", "")).startswith("https://"):
        return f"server {entry.get('server')!r} is not an https URL"
    if not any(u.get("name") == ctx.get("user") for u in doc.get("users") or []):
        return f"context {current!r} names user {ctx.get('user')!r}, which is not in the kubeconfig"
    return None


def check_remote_secret(primary: str, remote: str, secrets: Mapping | None) -> Check:
    """``secrets``: the primary's istio-system SecretList (any label; only labelled ones count)."""
    name = "remote secret"
    key, value = REMOTE_SECRET_LABEL, "true"
    holders = [s for s in (secrets or {}).get("items") or []
               if ((s.get("metadata") or {}).get("labels") or {}).get(key) == value and remote in (s.get("data") or {})]
    if not holders:
        return failed(name, remote, f"no Secret in {primary}/{NAMESPACE} labelled {key}={value} holds key {remote!r}: "
                                    f"istiod on {primary} does not know {remote}")
    s = holders[0]
    ref = f"{NAMESPACE}/{s['metadata']['name']} on {primary}"
    try:
        text = decode_b64(s["data"][remote])
    except (ValueError, UnicodeDecodeError):
        return failed(name, remote, f"{ref}: key {remote!r} is not base64 text")
    problem = kubeconfig_problem(text, remote)
    if problem:
        return failed(name, remote, f"{ref}: {problem}")
    doc = yaml.safe_load(text)
    ctx = next(c["context"] for c in doc["contexts"] if c["name"] == doc["current-context"])
    server = next(c["cluster"]["server"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
    return passed(name, remote, f"{ref}: kubeconfig for {server}")


def pem_blocks(text: str) -> set[str]:
    """The certificates in a PEM bundle, whitespace-normalised for comparison."""
    return {re.sub(r"\s+", "", m) for m in _PEM.findall(text or "")}


def root_cert(configmap: Mapping | None) -> str | None:
    return ((configmap or {}).get("data") or {}).get("root-cert.pem")


def check_remote_istiod(primary: str, remote: str, service: Mapping | None, remote_root: Mapping | None,
                        primary_root: Mapping | None) -> Check:
    name = "remote istiod"
    if service is None:
        return failed(name, remote, f"Service {NAMESPACE}/istiod missing: the istiod chart with profile remote is not installed")
    if root_cert(remote_root) is None:
        return failed(name, remote, f"{NAMESPACE}/{CA_ROOT_CERT_CONFIGMAP} missing: istiod on {primary} has not taken over "
                                    f"{remote} (check the remote secret and kubectl --context {primary} -n {NAMESPACE} logs deploy/istiod)")
    mine = root_cert(primary_root)
    if mine is None:
        return passed(name, remote, f"istiod Service present, {CA_ROOT_CERT_CONFIGMAP} written (primary root not readable to compare)")
    if not pem_blocks(root_cert(remote_root)) & pem_blocks(mine):
        return failed(name, remote, f"{CA_ROOT_CERT_CONFIGMAP} differs from {primary}'s: {remote} is led by another control plane or CA")
    return passed(name, remote, f"istiod Service present, {CA_ROOT_CERT_CONFIGMAP} written by {primary}")


def injector_webhooks(webhook_configs: Mapping | None) -> list[tuple[str, dict]]:
    """(configuration name, webhook) for every sidecar-injector webhook in a MutatingWebhookConfigurationList."""
    out = []
    for cfg in (webhook_configs or {}).get("items") or []:
        for wh in cfg.get("webhooks") or []:
            if str(wh.get("name", "")).endswith(INJECTOR_SUFFIX):
                out.append((cfg["metadata"]["name"], wh))
    return out


def check_injector(remote: str, network: str, webhook_configs: Mapping | None, mesh_root: str | None) -> Check:
    name = "injector webhook"
    hooks = injector_webhooks(webhook_configs)
    if not hooks:
        return failed(name, remote, f"no *.{INJECTOR_SUFFIX} webhook: pods on {remote} get no sidecar (is the remote istiod chart installed?)")
    want = injection_path(remote, network)
    roots = pem_blocks(mesh_root or "")
    problems = []
    for cfg_name, wh in hooks:
        cc = wh.get("clientConfig") or {}
        target = cc.get("url") or (cc.get("service") or {}).get("path") or ""
        if not urllib.parse.urlparse(target).path.endswith(want):
            problems.append(f"{cfg_name}/{wh['name']} calls {target or '?'}, expected {want}")
        bundle = cc.get("caBundle") or ""
        if not bundle:
            problems.append(f"{cfg_name}/{wh['name']} has no caBundle")
            continue
        try:
            certs = pem_blocks(decode_b64(bundle))
        except (ValueError, UnicodeDecodeError):
            problems.append(f"{cfg_name}/{wh['name']} caBundle is not base64 PEM")
            continue
        if roots and not certs & roots:
            problems.append(f"{cfg_name}/{wh['name']} caBundle lacks the mesh root (pod creation fails with x509: "
                            "certificate signed by unknown authority)")
    if problems:
        return failed(name, remote, "; ".join(problems))
    suffix = ", caBundle holds the mesh root" if roots else ", caBundle set (mesh root not readable to compare)"
    return passed(name, remote, f"{len(hooks)} webhook(s) call {want}{suffix}")


def has_sidecar(pod: Mapping) -> bool:
    """istio-proxy as a container, or as a native sidecar (an init container with restartPolicy Always)."""
    spec = pod.get("spec") or {}
    if any(c.get("name") == PROXY_CONTAINER for c in spec.get("containers") or []):
        return True
    return any(c.get("name") == PROXY_CONTAINER and c.get("restartPolicy") == "Always" for c in spec.get("initContainers") or [])


def pod_ready(pod: Mapping) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def pod_reason(pod: Mapping) -> str:
    """Why a pod is not Ready, as kubectl would show it (CrashLoopBackOff, ImagePullBackOff, Pending...)."""
    status = pod.get("status") or {}
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] != "PodInitializing":
            return f"{cs.get('name')}: {waiting['reason']}"
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if terminated.get("reason") and terminated.get("reason") != "Completed":
            return f"{cs.get('name')}: {terminated['reason']}"
    for c in status.get("conditions") or []:
        if c.get("status") != "True" and c.get("reason"):
            return f"{c.get('type')}: {c['reason']}"
    return status.get("phase") or "unknown"


def check_pods(cluster: str, namespace: str, pods: Mapping | None) -> Check:
    name = f"sidecars {namespace}"
    items = [p for p in (pods or {}).get("items") or []
             if not (p.get("metadata") or {}).get("deletionTimestamp") and (p.get("status") or {}).get("phase") != "Succeeded"]
    if not items:
        return failed(name, cluster, f"no pods in {namespace}")
    bare = sorted(p["metadata"]["name"] for p in items if not has_sidecar(p))
    unready = sorted(f"{p['metadata']['name']} ({pod_reason(p)})" for p in items if not pod_ready(p))
    problems = []
    if bare:
        problems.append(f"{len(bare)}/{len(items)} without {PROXY_CONTAINER}: {', '.join(bare)}")
    if unready:
        problems.append(f"{len(unready)}/{len(items)} not Ready: {', '.join(unready)}")
    if problems:
        return failed(name, cluster, "; ".join(problems))
    return passed(name, cluster, f"{len(items)} pods, each with {PROXY_CONTAINER} and Ready")


def kiali_clusters(config: Mapping | None) -> dict[str, dict]:
    """Kiali /api/config ``clusters`` (a map by name; a list is accepted too) as {name: cluster}."""
    raw = (config or {}).get("clusters") or {}
    items = raw.values() if isinstance(raw, Mapping) else raw
    return {c["name"]: c for c in items if isinstance(c, Mapping) and c.get("name")}


def check_kiali(primary: str, remotes: Sequence[str], config: Mapping | None) -> Check:
    name = "kiali clusters"
    if config is None:
        return failed(name, primary, f"Kiali's API is not reachable at {KIALI_BASE}/api/config")
    known = kiali_clusters(config)
    missing = [r for r in remotes if r not in known]
    closed = [r for r in remotes if r in known and known[r].get("accessible") is False]
    if missing or closed:
        parts = []
        if missing:
            parts.append(f"does not list {', '.join(missing)} (lists {', '.join(sorted(known)) or 'nothing'}): check the "
                         f"{kiali.SECRET_PREFIX}* Secrets on {primary}, then restart Kiali")
        if closed:
            parts.append(f"lists {', '.join(closed)} as not accessible: check the remote kubeconfig's server and token")
        return failed(name, primary, "; ".join(parts))
    return passed(name, primary, f"lists {', '.join(sorted(known))}; remotes accessible")


# --- Prometheus --------------------------------------------------------------------------------------

GetJson = Callable[[str, Mapping[str, str]], Any]  # (url or API path, query params) -> decoded JSON or None


class PromError(RuntimeError):
    pass


def federation_query(remote: str) -> str:
    return f'sum(istio_requests_total{{cluster="{remote}"}})'


def prom_query(get_json: GetJson, base_url: str, promql: str) -> list:
    """An instant query against a Prometheus HTTP API base URL; returns ``data.result``."""
    doc = get_json(f"{base_url.rstrip('/')}/api/v1/query", {"query": promql})
    if doc is None:
        raise PromError(f"no Prometheus at {base_url} (not found)")
    if doc.get("status") != "success":
        raise PromError(f"{promql}: {doc.get('errorType', 'error')}: {doc.get('error', doc)}")
    return (doc.get("data") or {}).get("result") or []


def vector_total(result: Sequence[Mapping]) -> float:
    return sum(float(r["value"][1]) for r in result if r.get("value"))


def check_federation(get_json: GetJson, base_url: str, primary: str, remotes: Sequence[str], *, timeout: float,
                     interval: float = POLL_INTERVAL, sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> list[Check]:
    """Poll until every remote's istio_requests_total reaches the primary Prometheus, or ``timeout`` s passed."""
    deadline = clock() + timeout
    last: dict[str, str] = {r: "not queried" for r in remotes}
    done: dict[str, Check] = {}
    while True:
        for remote in remotes:
            if remote in done:
                continue
            q = federation_query(remote)
            try:
                total = vector_total(prom_query(get_json, base_url, q))
            except Exception as e:  # a Prometheus still starting, a proxy error: keep polling
                last[remote] = _short(e)
                continue
            if total > 0:
                done[remote] = passed("federation", remote, f"{q} = {total:g} on {primary}")
            else:
                last[remote] = "no series yet" if total == 0 else f"{total:g}"
        remaining = deadline - clock()
        if len(done) == len(remotes) or remaining <= 0:
            break
        sleep(min(interval, remaining))
    return [done.get(r) or failed("federation", r, f"{federation_query(r)} not > 0 on {primary} after {timeout:g}s "
                                                      f"(last: {last[r]})") for r in remotes]


def poll(fn: Callable[[], Check], *, timeout: float, interval: float = POLL_INTERVAL,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> Check:
    """Re-run a check until it passes or ``timeout`` s passed; returns the last result."""
    deadline = clock() + timeout
    while True:
        result = fn()
        remaining = deadline - clock()
        if not result.failed or remaining <= 0:
            return result
        sleep(min(interval, remaining))


def urllib_get_json(url: str, params: Mapping[str, str], timeout: float = REQUEST_TIMEOUT) -> Any:
    """GetJson over plain HTTP (a Prometheus reachable directly, as in the tests)."""
    full = f"{url}?{urllib.parse.urlencode(dict(params))}" if params else url
    try:
        with urllib.request.urlopen(full, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        body = e.read()
        try:
            return json.loads(body)  # Prometheus explains a bad query in JSON with status 400
        except ValueError:
            raise PromError(f"GET {url}: HTTP {e.code}: {body[:200]!r}") from e


# --- the thin layer that talks to clusters -------------------------------------------------------------


class Api(Protocol):
    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any: ...


class KubeError(RuntimeError):
    pass


class KubeApi:
    """GET on one API server with the kubeconfig's credentials; JSON in, None for 404, KubeError otherwise."""

    def __init__(self, api_client: Any, timeout: float = REQUEST_TIMEOUT):
        self.client = api_client
        self.timeout = timeout

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        method, url, headers, _, _ = self.client.param_serialize(
            "GET", path, query_params=list((params or {}).items()), header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = self.client.call_api(method, url, header_params=headers, _request_timeout=self.timeout)
        return decode_response(path, resp.status, resp.read() or b"")


def decode_response(path: str, status: int, body: bytes) -> Any:
    """JSON of a 2xx response; None for 404; a Prometheus error document as is; KubeError otherwise."""
    if status == 404:
        return None
    try:
        doc = json.loads(body or b"null")
    except ValueError:
        doc = None
        if status < 400:
            raise KubeError(f"GET {path}: HTTP {status}, not JSON: {body[:200].decode('utf-8', 'replace')}") from None
    if status >= 400:
        if isinstance(doc, dict) and "errorType" in doc:  # Prometheus explains a bad query with a 400
            return doc
        message = doc.get("message") if isinstance(doc, dict) else None  # a Kubernetes Status
        raise KubeError(f"GET {path}: HTTP {status}: {message or body[:300].decode('utf-8', 'replace')}")
    return doc


def connect(target: Target, timeout: float = REQUEST_TIMEOUT) -> Api:
    from kubernetes import client as kube_client
    from kubernetes import config as kube_config

    conf = kube_client.Configuration()
    conf.retries = False  # urllib3 would retry a timed-out read 3 times: one request, one timeout
    path = os.path.expanduser(target.kubeconfig)
    client = kube_config.new_client_from_config(config_file=path, context=target.context, persist_config=False,
                                                client_configuration=conf)
    return KubeApi(client, timeout)


# --- orchestration -----------------------------------------------------------------------------------------


def _short(e: BaseException, limit: int = 300) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def guarded(name: str, cluster: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except Exception as e:  # an unreachable API server or a proxy error is a failed check, not a crash
        return failed(name, cluster, _short(e))


def run_checks(tgts: Sequence[Target], apis: Mapping[str, Api], *, kiali_auth: str = "anonymous",
               prometheus_wait: float = PROMETHEUS_WAIT, kiali_wait: float = KIALI_WAIT, interval: float = POLL_INTERVAL,
               sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> list[Check]:
    """Every check, in the order of the table; a cluster without a client only yields SKIPs downstream."""
    primary = next(t for t in tgts if t.primary)
    remotes = [t for t in tgts if not t.primary]
    checks: list[Check] = []
    up: set[str] = set()
    for t in tgts:
        api = apis.get(t.name)
        if api is None:
            checks.append(failed("kube API", t.name, f"no client for context {t.context} in {t.kubeconfig}"))
            continue
        c = guarded("kube API", t.name, lambda api=api, t=t: check_api(t.name, t.context, api.get("/version")))
        checks.append(c)
        if not c.failed:
            up.add(t.name)

    def skip(name: str, cluster: str, *needs: str) -> Check | None:
        down = [n for n in needs if n not in up]
        return Check(name, cluster, SKIP, f"{', '.join(down)} unreachable") if down else None

    p = apis.get(primary.name)
    checks.append(skip("istiod ready", primary.name, primary.name) or guarded(
        "istiod ready", primary.name, lambda: check_istiod(primary.name, p.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/istiod"))))
    primary_root: dict | None = None
    if primary.name in up:
        try:
            primary_root = p.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CA_ROOT_CERT_CONFIGMAP}")
        except Exception:
            primary_root = None
    for r in remotes:
        a = apis.get(r.name)
        checks.append(skip("remote secret", r.name, primary.name) or guarded("remote secret", r.name, lambda r=r: check_remote_secret(
            primary.name, r.name, p.get(f"/api/v1/namespaces/{NAMESPACE}/secrets", {"labelSelector": f"{REMOTE_SECRET_LABEL}=true"}))))
        checks.append(skip("remote istiod", r.name, r.name) or guarded("remote istiod", r.name, lambda r=r, a=a: check_remote_istiod(
            primary.name, r.name, a.get(f"/api/v1/namespaces/{NAMESPACE}/services/istiod"),
            a.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CA_ROOT_CERT_CONFIGMAP}"), primary_root)))
        checks.append(skip("injector webhook", r.name, r.name) or guarded("injector webhook", r.name, lambda r=r, a=a: check_injector(
            r.name, r.network, a.get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"), root_cert(primary_root))))
    for t in tgts:
        a = apis.get(t.name)
        for ns in t.namespaces:
            name = f"sidecars {ns}"
            checks.append(skip(name, t.name, t.name) or guarded(
                name, t.name, lambda t=t, a=a, ns=ns: check_pods(t.name, ns, a.get(f"/api/v1/namespaces/{ns}/pods"))))

    remote_names = [r.name for r in remotes]
    if primary.name not in up:
        checks.extend(Check("federation", r, SKIP, f"{primary.name} unreachable") for r in remote_names)
    else:
        checks.extend(check_federation(lambda url, params: p.get(url, params), PROMETHEUS_BASE, primary.name, remote_names,
                                       timeout=prometheus_wait, interval=interval, sleep=sleep, clock=clock))
    if kiali_auth != "anonymous":
        checks.append(Check("kiali clusters", primary.name, SKIP,
                            f"kiali.auth is {kiali_auth}: the API needs a login; check the clusters in the Kiali UI"))
    else:
        checks.append(skip("kiali clusters", primary.name, primary.name) or poll(
            lambda: guarded("kiali clusters", primary.name, lambda: check_kiali(primary.name, remote_names, p.get(f"{KIALI_BASE}/api/config"))),
            timeout=kiali_wait, interval=interval, sleep=sleep, clock=clock))
    return checks


def render_table(checks: Iterable[Check]) -> str:
    checks = list(checks)
    rows = [("CHECK", "CLUSTER", "RESULT", "DETAIL")] + [(c.name, c.cluster, c.status, c.detail) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    counts = {s: sum(1 for c in checks if c.status == s) for s in (PASS, FAIL, SKIP)}
    lines.append(f"\n{len(checks)} checks: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped")
    return "\n".join(lines)


def exit_code(checks: Iterable[Check]) -> int:
    return 1 if any(c.failed for c in checks) else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="verify", description="Check the running mesh of a stack (after `make up`).")
    ap.add_argument("--stack", default="east-west", help="stack name; reads Pulumi.<stack>.yaml (default: east-west)")
    ap.add_argument("--stack-file", help="read this stack file instead")
    ap.add_argument("--prometheus-wait", type=float, default=PROMETHEUS_WAIT, help="seconds to wait for federated metrics")
    ap.add_argument("--kiali-wait", type=float, default=KIALI_WAIT, help="seconds to wait for Kiali to list every remote")
    ap.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT, help="seconds per API request")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, connector: Callable[[Target, float], Api] = connect,
         out: Any = None, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    out = out or sys.stdout
    args = parse_args(argv)
    path = args.stack_file or stack_file(args.stack)
    try:
        cfg = parse(read_stack_file(path))
    except FileNotFoundError:
        print(f"verify: {path} does not exist (is --stack right?)", file=out)
        return 2
    except ConfigError as e:
        print(f"verify: {path}: {e}", file=out)
        return 2
    tgts = targets(cfg)
    apis: dict[str, Api] = {}
    connect_errors: list[Check] = []
    for t in tgts:
        try:
            apis[t.name] = connector(t, args.request_timeout)
        except Exception as e:  # a missing context or kubeconfig
            connect_errors.append(failed("kube API", t.name, f"context {t.context} in {t.kubeconfig}: {_short(e)}"))
    checks = run_checks(tgts, apis, kiali_auth=cfg.kiali.auth, prometheus_wait=args.prometheus_wait,
                        kiali_wait=args.kiali_wait, sleep=sleep, clock=clock)
    if connect_errors:  # replace the generic "no client" rows with the reason
        by_cluster = {c.cluster: c for c in connect_errors}
        checks = [by_cluster.get(c.cluster, c) if c.name == "kube API" and c.failed else c for c in checks]
    print(render_table(checks), file=out)
    return exit_code(checks)


if __name__ == "__main__":
    sys.exit(main())
