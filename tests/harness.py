"""Run the real program (or one component) in-process under Pulumi mocks and record everything.

- ``RecordingMocks`` answers every registration with plausible outputs: real RSA keys and X.509
  certificates built from the pulumi-tls inputs (so chain tests can fail), LoadBalancer addresses
  from each cluster's MetalLB pool, service-account tokens, Helm release status.
- ``RecordingMonitor`` records what the mocks cannot see: parent, dependencies, deletedWith,
  deleteBeforeReplace and the provider reference of every RegisterResource/ReadResource request.
- ``run`` uses a fresh event loop and the default thread pool (the inline executor overflows the
  stack past ~90 resources) and returns only after every registration has finished.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import copy
import datetime
import glob
import ipaddress
import json
import os
import runpy
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc, settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "__main__.py")
STACK_FILE = os.path.join(ROOT, "Pulumi.east-west.yaml")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
_OFFLINE: list[str] = []
PROJECT = "kiali-multicluster"
SECRET_SIG = rpc._special_secret_sig
SIG_KEY = rpc._special_sig_key


def unwrap(v: Any) -> Any:
    """Strip secret envelopes from recorded inputs."""
    if isinstance(v, dict):
        if v.get(SIG_KEY) == SECRET_SIG:
            return unwrap(v["value"])
        return {k: unwrap(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unwrap(x) for x in v]
    return v


def is_secret_envelope(v: Any) -> bool:
    return isinstance(v, dict) and v.get(SIG_KEY) == SECRET_SIG


def stack_config(path: str = STACK_FILE) -> dict:
    """The stack file's config: map (keys without prefix); encryptionsalt and friends are ignored."""
    from components.config import read_stack_file

    return read_stack_file(path)


# --- fake TLS: real keys and certificates from the pulumi-tls inputs ----------------------------

_KEYS: dict[tuple[str, int], Any] = {}
_LOADED: dict[str, Any] = {}  # private key PEM -> key object (a cache of load_key)


def _tls_outputs(typ: str, name: str, inputs: dict) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def load_key(pem: str):
        # Parsing validates the RSA key (~0.3 s for 4096 bits): reuse the keys this mock made.
        k = _LOADED.get(pem)
        if k is None:
            k = _LOADED[pem] = serialization.load_pem_private_key(pem.encode(), password=None)
        return k

    def subject(d: dict) -> x509.Name:
        attrs = []
        for k, oid in (("country", NameOID.COUNTRY_NAME), ("province", NameOID.STATE_OR_PROVINCE_NAME),
                       ("locality", NameOID.LOCALITY_NAME), ("organization", NameOID.ORGANIZATION_NAME),
                       ("organizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME), ("commonName", NameOID.COMMON_NAME)):
            if d.get(k):
                attrs.append(x509.NameAttribute(oid, d[k]))
        return x509.Name(attrs)

    def key_usage(uses: list[str]) -> x509.KeyUsage:
        u = set(uses or [])
        return x509.KeyUsage(
            digital_signature="digital_signature" in u, content_commitment="content_commitment" in u,
            key_encipherment="key_encipherment" in u, data_encipherment="data_encipherment" in u,
            key_agreement="key_agreement" in u, key_cert_sign="cert_signing" in u, crl_sign="crl_signing" in u,
            encipher_only=False, decipher_only=False,
        )

    def build(subject_name, public_key, issuer_name, signing_key, inp, dns_names, issuer_ski=None):
        # Mirrors terraform-provider-tls createCertificate: MaxPathLen from max_path_length, never
        # MaxPathLenZero, so Go encodes 0 as "no constraint".
        now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
        hours = int(inp.get("validityPeriodHours", 0))
        is_ca = bool(inp.get("isCaCertificate"))
        mpl = inp.get("maxPathLength")
        path_length = int(mpl) if (mpl is not None and int(mpl) > 0) else None
        b = (x509.CertificateBuilder().subject_name(subject_name).issuer_name(issuer_name)
             .public_key(public_key).serial_number(x509.random_serial_number())
             .not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=hours))
             .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None), critical=True)
             .add_extension(key_usage(inp.get("allowedUses")), critical=True))
        if is_ca or inp.get("setSubjectKeyId"):
            b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        if issuer_ski is not None:
            b = b.add_extension(x509.AuthorityKeyIdentifier(issuer_ski, None, None), critical=False)
        if dns_names:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_names]), critical=False)
        cert = b.sign(signing_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    if typ == "tls:index/privateKey:PrivateKey":
        bits = int(inputs.get("rsaBits", 2048))
        k = _KEYS.get((name, bits))
        if k is None:
            k = _KEYS[(name, bits)] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()).decode()
        _LOADED.setdefault(pem, k)
        pub = k.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return {"privateKeyPem": pem, "publicKeyPem": pub}
    if typ == "tls:index/certRequest:CertRequest":
        k = load_key(unwrap(inputs["privateKeyPem"]))
        b = x509.CertificateSigningRequestBuilder().subject_name(subject(inputs.get("subject") or {}))
        if inputs.get("dnsNames"):
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in inputs["dnsNames"]]), critical=False)
        return {"certRequestPem": b.sign(k, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()}
    if typ == "tls:index/selfSignedCert:SelfSignedCert":
        k = load_key(unwrap(inputs["privateKeyPem"]))
        name_ = subject(inputs.get("subject") or {})
        return {"certPem": build(name_, k.public_key(), name_, k, inputs, inputs.get("dnsNames"))}
    if typ == "tls:index/locallySignedCert:LocallySignedCert":
        csr = x509.load_pem_x509_csr(unwrap(inputs["certRequestPem"]).encode())
        ca_cert = x509.load_pem_x509_certificate(unwrap(inputs["caCertPem"]).encode())
        ca_key = load_key(unwrap(inputs["caPrivateKeyPem"]))
        try:
            sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            sans = []
        try:
            ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            ski = None
        return {"certPem": build(csr.subject, csr.public_key(), ca_cert.subject, ca_key, inputs, sans, ski)}
    return {}


FAKE_CLUSTER_CA = "-----BEGIN CERTIFICATE-----\nZmFrZS1jbHVzdGVyLWNh\n-----END CERTIFICATE-----\n"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@dataclass
class Rec:
    """One registration (or read) as the program asked for it."""

    typ: str
    name: str
    inputs: dict
    provider: str
    resource_id: str | None
    custom: bool | None
    urn: str = ""
    parent: str = ""
    dependencies: list = field(default_factory=list)
    deleted_with: str = ""
    delete_before_replace: bool = False
    read: bool = False

    @property
    def plain(self) -> dict:
        return unwrap(self.inputs)

    @property
    def provider_name(self) -> str:
        # urn:pulumi:stack::proj::...$pulumi:providers:kubernetes::east-k8s::<id>
        return self.provider.split("::")[-2] if self.provider else ""


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs as outputs, plus the few outputs the program reads back."""

    def __init__(self, lb_pools: dict[str, str] | None = None):
        self.records: list[Rec] = []
        self.calls: list[Any] = []
        self.lb_pools = lb_pools or {}  # provider name (e.g. east-k8s) -> "a.b.c.d-a.b.c.e"
        self.lb_assigned: dict[tuple[str, str], str] = {}
        self.lb_overrides: dict[str, Any] = {}  # "ns/name" -> status dict to return instead

    def lb_ip(self, provider_name: str, svc_id: str) -> str:
        key = (provider_name, svc_id)
        if key not in self.lb_assigned:
            pool = self.lb_pools.get(provider_name, "198.51.100.10-198.51.100.99")
            start = ipaddress.ip_address(pool.split("-")[0])
            # Stable per service name, independent of registration order.
            order = {"istio-system/istio-eastwestgateway": 0, "istio-system/prometheus": 1}
            idx = order.get(svc_id, 2 + sum(1 for k in self.lb_assigned if k[0] == provider_name))
            self.lb_assigned[key] = str(start + idx)
        return self.lb_assigned[key]

    def new_resource(self, args: pmocks.MockResourceArgs):
        rec = Rec(typ=args.typ, name=args.name, inputs=args.inputs, provider=args.provider or "",
                  resource_id=args.resource_id or None, custom=args.custom, read=bool(args.resource_id))
        self.records.append(rec)
        out = dict(args.inputs)
        typ = args.typ
        if typ.startswith("tls:"):
            out.update(_tls_outputs(typ, args.name, args.inputs))
        elif typ == "command:local:Command":
            out["stdout"] = self.command_stdout(args)
            out["stderr"] = ""
        elif typ == "kubernetes:helm.sh/v3:Release":
            inp = unwrap(args.inputs)
            out["status"] = {"name": inp.get("name"), "namespace": inp.get("namespace"), "status": "deployed",
                             "chart": inp.get("chart"), "version": inp.get("version"), "revision": 1}
        elif typ == "kubernetes:core/v1:Service":
            svc_id = args.resource_id or "{}/{}".format(
                (args.inputs.get("metadata") or {}).get("namespace", "default"),
                (args.inputs.get("metadata") or {}).get("name", args.name))
            spec_type = ((args.inputs.get("spec") or {}).get("type"))
            if args.resource_id or spec_type == "LoadBalancer":
                if svc_id in self.lb_overrides:
                    out["status"] = self.lb_overrides[svc_id]
                else:
                    pname = rec.provider_name
                    out["status"] = {"loadBalancer": {"ingress": [{"ip": self.lb_ip(pname, svc_id)}]}}
                if args.resource_id:
                    ns, _, nm = svc_id.partition("/")
                    out.setdefault("metadata", {"name": nm, "namespace": ns})
        elif typ == "kubernetes:core/v1:Secret":
            inp = unwrap(args.inputs)
            if inp.get("type") == "kubernetes.io/service-account-token":
                sa = ((inp.get("metadata") or {}).get("annotations") or {}).get("kubernetes.io/service-account.name", "sa")
                out["data"] = {"token": b64(f"token-{args.name}-{sa}"), "ca.crt": b64(FAKE_CLUSTER_CA)}
        return (args.resource_id or f"{args.name}-id", out)

    def command_stdout(self, args: pmocks.MockResourceArgs) -> str:
        create = str(unwrap(args.inputs.get("create", "")))
        if "network-create" in create:
            return "created"
        return f"ok {args.name}"

    def call(self, args: pmocks.MockCallArgs):
        self.calls.append(args.token)
        return {}


class RecordingMonitor(pmocks.MockMonitor):
    """Also records what MockResourceArgs lacks: parent, dependencies, deletedWith, DBR."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.requests: dict[str, dict] = {}

    def _note(self, request, urn: str, read: bool) -> None:
        self.requests[urn] = {
            "type": request.type, "name": request.name, "parent": request.parent,
            "dependencies": list(getattr(request, "dependencies", []) or []),
            "deletedWith": getattr(request, "deletedWith", "") or "",
            "deleteBeforeReplace": bool(getattr(request, "deleteBeforeReplace", False)),
            "provider": request.provider, "read": read,
            "propertyDependencies": {k: list(v.urns) for k, v in getattr(request, "propertyDependencies", {}).items()},
            "custom": bool(getattr(request, "custom", True)) if not read else True,
            "additionalSecretOutputs": list(getattr(request, "additionalSecretOutputs", []) or []),
            "id": request.id if read else "",
        }

    def RegisterResource(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        self._note(request, urn, read=False)
        return super().RegisterResource(request)

    def ReadResource(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        self._note(request, urn, read=True)
        return super().ReadResource(request)


@dataclass
class Result:
    mocks: RecordingMocks
    monitor: RecordingMonitor
    outputs: dict  # export name -> (value, is_secret)

    @property
    def records(self) -> list[Rec]:
        return self.mocks.records

    @property
    def requests(self) -> dict[str, dict]:
        return self.monitor.requests

    def of_type(self, typ: str) -> list[Rec]:
        return [r for r in self.records if r.typ == typ]

    def named(self, name: str, typ: str | None = None) -> Rec:
        found = [r for r in self.records if r.name == name and (typ is None or r.typ == typ)]
        assert len(found) == 1, f"expected one resource named {name!r}, found {len(found)}"
        return found[0]

    def urn_of(self, name: str, typ: str | None = None) -> str:
        found = [u for u, q in self.requests.items() if q["name"] == name and (typ is None or q["type"] == typ)]
        assert len(found) == 1, f"expected one request named {name!r}, found {found}"
        return found[0]

    def effective_deleted_with(self, urn: str) -> str:
        """A resource's own deletedWith, else its nearest ancestor's (as the engine inherits it)."""
        seen = set()
        while urn and urn not in seen:
            seen.add(urn)
            q = self.requests.get(urn)
            if q is None:
                return ""
            if q["deletedWith"]:
                return q["deletedWith"]
            urn = q["parent"]
        return ""

    def depends_on(self, urn: str, other: str, transitive: bool = True) -> bool:
        """Whether registration ``urn`` waits for ``other`` (directly or through dependencies/parents)."""
        todo, seen = [urn], set()
        while todo:
            u = todo.pop()
            if u in seen:
                continue
            seen.add(u)
            q = self.requests.get(u)
            if q is None:
                continue
            deps = set(q["dependencies"])
            for v in q["propertyDependencies"].values():
                deps.update(v)
            if other in deps:
                return True
            if transitive:
                todo.extend(deps)
        return False


def run(program: Callable[[], Any], config: dict, *, stack: str = "east-west", preview: bool = False,
        secret_keys: tuple = (), lb_overrides: dict | None = None, sink: list | None = None) -> Result:
    """Run ``program`` under mocks with ``config`` (keys without the project prefix).

    ``sink`` (a list) receives the Result before the program runs, so a test can inspect what
    was registered even when the program raises.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # The mock monitor gives each worker thread an event loop of its own; own them so they are
    # closed with the run instead of being finalised (noisily) whenever the GC gets to them.
    thread_loops: list = []

    def give_thread_a_loop():
        thread_loops.append(asyncio.new_event_loop())
        asyncio.set_event_loop(thread_loops[-1])

    executor = concurrent.futures.ThreadPoolExecutor(initializer=give_thread_a_loop)
    loop.set_default_executor(executor)
    try:
        pools = _pools_by_provider(config)
        m = RecordingMocks(lb_pools=pools)
        m.lb_overrides = dict(lb_overrides or {})
        monitor = RecordingMonitor(m)
        settings.ROOT.set(None)
        pulumi.runtime.set_mocks(m, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
        flat = {f"{PROJECT}:{k}": (v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()}
        pulumi.runtime.set_all_config(flat, secret_keys=[f"{PROJECT}:{k}" for k in secret_keys])
        outputs: dict = {}
        if sink is not None:
            sink.append(Result(mocks=m, monitor=monitor, outputs=outputs))

        @pulumi.runtime.test
        def body():
            program()
            outs = settings.get_root_resource().outputs

            async def grab():
                for k, v in outs.items():
                    o = pulumi.Output.from_input(v)
                    outputs[k] = (await o.future(), await o.is_secret())

            return pulumi.Output.from_input(grab())

        body()
        return Result(mocks=m, monitor=monitor, outputs=outputs)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        executor.shutdown(wait=True)
        for thread_loop in thread_loops:
            thread_loop.close()


def offline_fixtures_dir() -> str:
    """Every ``tests/fixtures/<topic>/*.yaml`` by basename in one directory (for manifests.offlineDir).

    Made once per process and removed at exit.
    """
    if not _OFFLINE:
        out = tempfile.mkdtemp(prefix="kmc-offline-")
        atexit.register(shutil.rmtree, out, True)
        for path in sorted(glob.glob(os.path.join(FIXTURES, "*", "*.yaml"))):
            os.symlink(path, os.path.join(out, os.path.basename(path)))  # FileExistsError: two fixtures share a name
        _OFFLINE.append(out)
    return _OFFLINE[0]


def offline(config: dict) -> dict:
    """A copy of ``config`` that reads upstream manifests from the test fixtures, never the network."""
    cfg = copy.deepcopy(config)
    cfg["manifests"] = {"offlineDir": offline_fixtures_dir()}
    return cfg


def three_remotes(config: dict | None = None) -> dict:
    """The east-west stack with remotes west, north and south (networks, IPs and pools of their own)."""
    raw = copy.deepcopy(stack_config() if config is None else config)
    west = raw["remotes"][0]
    raw["remotes"] = [
        dict(copy.deepcopy(west), name=n, network=f"network-{n}",
             minikube=dict(west["minikube"], staticIp=f"192.168.50.{ip}"), loadBalancerRange=rng)
        for n, ip, rng in (("west", 3, "30-39"), ("north", 4, "40-49"), ("south", 5, "50-59"))
    ]
    return raw


def existing_clusters() -> dict:
    """Both clusters existing (kind-like contexts), no minikube at all; west with its own kubeconfig."""
    raw = copy.deepcopy(stack_config())
    del raw["minikube"]
    raw["primary"] = {"name": "east", "network": "network1",
                      "existing": {"context": "kind-east", "apiServer": "https://172.18.0.2:6443"}}
    raw["remotes"] = [{"name": "west", "network": "network2", "kubeconfig": "/home/me/west.yaml",
                       "existing": {"context": "kind-west", "apiServer": "https://172.18.0.3:6443"}}]
    return raw


def existing_west(config: dict | None = None, *, context: str = "west-ctx", kubeconfig: str | None = None) -> dict:
    """east on minikube, west an existing cluster."""
    cfg = copy.deepcopy(stack_config() if config is None else config)
    west = cfg["remotes"][0]
    west.pop("minikube"), west.pop("loadBalancerRange")
    west["existing"] = {"context": context, "apiServer": "https://10.0.0.5:6443"}
    if kubeconfig is not None:
        west["kubeconfig"] = kubeconfig
    return cfg


def run_main(config: dict | None = None, **kw) -> Result:
    cfg = stack_config() if config is None else config
    if isinstance(cfg, dict) and "manifests" not in cfg:
        # Tests never fetch upstream manifests: without an explicit manifests key they come from the fixtures.
        cfg = {**cfg, "manifests": {"offlineDir": offline_fixtures_dir()}}

    def program():
        runpy.run_path(MAIN, run_name="__main__")

    return run(program, cfg, **kw)


def _pools_by_provider(config: dict) -> dict[str, str]:
    """MetalLB pools keyed by provider resource name, from the raw config (best effort)."""
    try:
        from components.config import parse

        cfg = parse(config)
    except Exception:
        return {}
    return {f"{c.name}-k8s": cfg.lb_pool(c) for c in cfg.clusters if cfg.lb_pool(c)}
