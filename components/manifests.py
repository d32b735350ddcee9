"""One manifest loader for upstream YAML (Istio's Prometheus addon, the Travels demo).

fetch (pinned URL, on-disk cache keyed by URL, offline directory override) -> parse (pyyaml) ->
pure transformations (dict in, dict out) -> typed pulumi-kubernetes resources. No pulumi-kubernetes YAML components and no
``kubernetes:yaml:decode`` invoke: both break the first preview of a stack whose clusters do not
exist yet (pulumi-kubernetes#3027).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

FETCH_TIMEOUT_SECONDS = 30


def istio_addon_url(istio_version: str, addon: str = "prometheus") -> str:
    return f"https://raw.githubusercontent.com/istio/istio/{istio_version}/samples/addons/{addon}.yaml"


def travels_url(commit: str, file: str) -> str:
    return f"https://raw.githubusercontent.com/kiali/demos/{commit}/travels/{file}"


class ManifestError(RuntimeError):
    pass


@dataclass(frozen=True)
class ManifestSource:
    """Where upstream manifests come from: ``offline_dir`` first, then the cache, then the URL."""

    cache_dir: str = ".cache/manifests"
    offline_dir: str | None = None

    def offline_candidates(self, url: str) -> list[str]:
        u = urllib.parse.urlparse(url)
        rel = (u.netloc + u.path).lstrip("/")
        return [os.path.join(self.offline_dir, rel), os.path.join(self.offline_dir, os.path.basename(u.path))]

    def cache_path(self, url: str) -> str:
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        return os.path.join(self.cache_dir, f"{digest}-{os.path.basename(urllib.parse.urlparse(url).path)}")

    def fetch(self, url: str, opener: Callable[..., Any] = urllib.request.urlopen) -> str:
        if self.offline_dir:
            for path in self.offline_candidates(url):
                if os.path.isfile(path):
                    with open(path, encoding="utf-8") as f:
                        return f.read()
            raise ManifestError(
                f"{url} is not in the offline directory: looked for {' and '.join(self.offline_candidates(url))} "
                "(kiali-multicluster:manifests.offlineDir)"
            )
        cached = self.cache_path(url)
        if os.path.isfile(cached):
            with open(cached, encoding="utf-8") as f:
                return f.read()
        try:
            with opener(url, timeout=FETCH_TIMEOUT_SECONDS) as resp:
                text = resp.read().decode("utf-8")
        except (urllib.error.URLError, OSError, ValueError) as e:
            rel = urllib.parse.urlparse(url)
            raise ManifestError(
                f"could not fetch {url}: {e}. Check the network, or download it and set "
                f"kiali-multicluster:manifests.offlineDir to a directory holding {rel.netloc}{rel.path}"
            ) from e
        os.makedirs(self.cache_dir, exist_ok=True)
        tmp = f"{cached}.tmp.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, cached)
        return text

    def load(self, url: str) -> list[dict]:
        return parse(self.fetch(url), source=url)


def parse(text: str, source: str = "<manifest>") -> list[dict]:
    """Every object in a multi-document YAML text (``kind: List`` flattened, empty documents dropped)."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise ManifestError(f"{source} is not valid YAML: {e}") from e
    out: list[dict] = []
    for d in docs:
        if d is None:
            continue
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise ManifestError(f"{source}: a document without apiVersion/kind: {str(d)[:80]}")
        if d["kind"] == "List":
            out.extend(i for i in d.get("items") or [] if i)
        else:
            out.append(d)
    return out


# --- pure transformations ----------------------------------------------------------------------


def in_namespace(docs: Iterable[dict], namespace: str) -> list[dict]:
    """Put every namespaced object in ``namespace`` (upstream files often carry none)."""
    out = []
    for d in docs:
        d = _copy(d)
        if d["kind"] not in CLUSTER_SCOPED:
            d.setdefault("metadata", {})["namespace"] = namespace
        out.append(d)
    return out


def select(docs: Iterable[dict], kind: str | None = None, name: str | None = None) -> list[dict]:
    return [d for d in docs if (kind is None or d["kind"] == kind) and (name is None or d["metadata"].get("name") == name)]


def _copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_copy(v) for v in d]
    return d


# --- typed resources ---------------------------------------------------------------------------

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

KINDS: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "Service"): k8s.core.v1.Service,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
}

_TOP_FIELDS = {
    "metadata": "metadata", "spec": "spec", "data": "data", "stringData": "string_data", "binaryData": "binary_data",
    "type": "type", "immutable": "immutable", "rules": "rules", "roleRef": "role_ref", "subjects": "subjects",
    "aggregationRule": "aggregation_rule", "automountServiceAccountToken": "automount_service_account_token",
    "imagePullSecrets": "image_pull_secrets", "secrets": "secrets",
}


def resource_name(prefix: str, doc: dict) -> str:
    """``<prefix>-<kind>-<namespace>-<name>``: unique across clusters, namespaces and kinds."""
    md = doc.get("metadata") or {}
    parts = [prefix, doc["kind"].lower()]
    if md.get("namespace"):
        parts.append(md["namespace"])
    parts.append(md["name"])
    return "-".join(parts)


def create(prefix: str, docs: Iterable[dict], opts: pulumi.ResourceOptions) -> dict[str, pulumi.CustomResource]:
    """A typed resource per object; returns them keyed by ``<Kind>/<namespace>/<name>``."""
    out: dict[str, pulumi.CustomResource] = {}
    for doc in docs:
        cls = KINDS.get((doc["apiVersion"], doc["kind"]))
        if cls is None:
            raise ManifestError(f"{doc['apiVersion']}/{doc['kind']} {doc['metadata'].get('name')} has no typed resource here")
        kwargs = {}
        for k, v in doc.items():
            if k in ("apiVersion", "kind", "status"):
                continue
            if k not in _TOP_FIELDS:
                raise ManifestError(f"{doc['kind']} {doc['metadata'].get('name')}: unexpected top-level field {k!r}")
            kwargs[_TOP_FIELDS[k]] = v
        md = doc.get("metadata") or {}
        key = f"{doc['kind']}/{md.get('namespace', '')}/{md['name']}"
        if key in out:
            raise ManifestError(f"{key} appears twice")
        out[key] = cls(resource_name(prefix, doc), api_version=doc["apiVersion"], kind=doc["kind"], opts=opts, **kwargs)
    return out
