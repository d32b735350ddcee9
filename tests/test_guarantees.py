"""Whole-program guarantees: determinism, secret hygiene, teardown safety, clear failures.

Every check walks whatever the program registers (no list of resource names), so it holds for
components added later. Value assertions run with ``preview=False``; one test runs a preview to
prove the program survives unknowns.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import os
import re
import subprocess
import sys
import types
import urllib.error

import pulumi
import pytest

import harness
from components import access
from components.manifests import ManifestError, ManifestSource
from tools import graph as G
from tools import minikube_ops

PEM_PRIVATE_KEY = "PRIVATE KEY-----"
KUBECONFIG_TEXT = "kind: Config"
_B64 = re.compile(r"^[A-Za-z0-9+/]{16,}={0,2}$")


# --- stacks ---------------------------------------------------------------------------------------




@pytest.fixture(scope="module")
def stacks() -> dict[str, dict]:
    base = harness.offline(harness.stack_config())
    return {"east-west": base, "3 remotes": G.with_remotes(base, 3), "existing west": harness.existing_west(base)}


@pytest.fixture(scope="module")
def runs(stacks) -> dict[str, harness.Result]:
    return {name: harness.run_main(cfg) for name, cfg in stacks.items()}


@pytest.fixture(scope="module")
def east_west(runs) -> harness.Result:
    return runs["east-west"]


def inputs_of(result: harness.Result) -> dict[str, dict]:
    return G.inputs_by_urn(result.requests, result.records)


def starts_of(result: harness.Result) -> dict[str, str]:
    """cluster name -> URN of its start Command (minikube clusters only)."""
    ins = inputs_of(result)
    out = {}
    for urn, q in result.requests.items():
        if q["type"] == G.COMMAND_TYPE and G.classify(q["type"], harness.unwrap(ins[urn])) is G.MINIKUBE_START:
            out[G.cluster_of(urn, result.requests)] = urn
    return out


def commands(result: harness.Result) -> dict[str, dict]:
    ins = inputs_of(result)
    return {u: ins[u] for u, q in result.requests.items() if q["type"] == G.COMMAND_TYPE}


# --- determinism ----------------------------------------------------------------------------------

# Runs the program in a fresh interpreter and prints every registration canonically. The mocks'
# own randomness is pinned (RSA keys shared through a file, certificate serials fixed): what is
# left to differ is the program's.
CHILD = r"""
import json, os, sys
root = sys.argv[1]
sys.path[:0] = [root, os.path.join(root, "tests")]
from cryptography import x509
from cryptography.hazmat.primitives import serialization
x509.random_serial_number = lambda: 4242
import harness
from tools import graph
keys_path, config_path = sys.argv[2], sys.argv[3]
if os.path.exists(keys_path):
    for name, bits, pem in json.load(open(keys_path)):
        harness._KEYS[(name, bits)] = serialization.load_pem_private_key(pem.encode(), None)
result = harness.run_main(json.load(open(config_path)))
if not os.path.exists(keys_path):
    json.dump([[n, b, k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()] for (n, b), k in harness._KEYS.items()],
              open(keys_path, "w"))
inputs = graph.inputs_by_urn(result.requests, result.records)
out = {urn: {"inputs": inputs[urn], "parent": q["parent"], "provider": q["provider"], "deletedWith": q["deletedWith"],
             "deleteBeforeReplace": q["deleteBeforeReplace"], "dependencies": sorted(q["dependencies"]),
             "additionalSecretOutputs": sorted(q["additionalSecretOutputs"])}
       for urn, q in result.requests.items()}
out["<exports>"] = {k: v for k, v in result.outputs.items()}
print(json.dumps(out, sort_keys=True, default=lambda o: f"<unserializable {type(o).__name__}>"))
"""


def evaluate_in_fresh_process(config: dict, tmp, hash_seed: str) -> dict:
    cfg_path = tmp / "config.json"
    cfg_path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run([sys.executable, "-c", CHILD, harness.ROOT, str(tmp / "keys.json"), str(cfg_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_evaluations_register_identical_inputs(stacks, tmp_path):
    """Different processes, hash seeds and wall-clock times: every registration is byte-identical."""
    first = evaluate_in_fresh_process(stacks["3 remotes"], tmp_path, "1")
    second = evaluate_in_fresh_process(stacks["3 remotes"], tmp_path, "2")
    assert sorted(first) == sorted(second), "the two runs registered different resources"
    differ = [urn for urn in first if first[urn] != second[urn]]
    assert not differ, "perpetual diff: inputs differ between two evaluations of the same stack:\n" + "\n".join(
        f"{urn}\n  first:  {json.dumps(first[urn], sort_keys=True)[:600]}\n  second: {json.dumps(second[urn], sort_keys=True)[:600]}"
        for urn in differ[:5]
    )
    assert len(first) > 50


def test_preview_with_unknowns_does_not_crash(stacks):
    result = harness.run_main(stacks["east-west"], preview=True)
    assert any(q["type"] == "kubernetes:helm.sh/v3:Release" for q in result.requests.values())


# --- secret hygiene -------------------------------------------------------------------------------


def secret_needles(result: harness.Result) -> list[str]:
    """What must never appear in the clear: PEM private keys, kubeconfigs, and the mocks' tokens."""
    needles = [PEM_PRIVATE_KEY, KUBECONFIG_TEXT]
    for reg in result.monitor.resources.values():
        token = ((reg.state or {}).get("data") or {}).get("token") if isinstance(reg.state, dict) else None
        if isinstance(token, str):
            needles.append(base64.b64decode(token).decode())
    return needles


def leaks(value, needles: list[str], path: str = "") -> list[str]:
    """Paths of ``value`` holding a needle outside a secret envelope (base64 text decoded too)."""
    if harness.is_secret_envelope(value):
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaks(v, needles, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in leaks(v, needles, f"{path}[{i}]")]
    if not isinstance(value, str):
        return []
    texts = [value]
    compact = value.replace("\n", "")
    if _B64.match(compact):
        try:
            texts.append(base64.b64decode(compact, validate=True).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            pass
    return [f"{path} ({n[:20]}...)" for n in needles if any(n in t for t in texts)]


def test_leak_detector_sees_plain_and_base64_text_but_not_secrets():
    needles = [PEM_PRIVATE_KEY, "token-abc"]
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\n"
    assert leaks({"a": [pem]}, needles) == [".a[0] (PRIVATE KEY-----...)"]
    assert leaks({"b": base64.b64encode(b"xx token-abc xx").decode()}, needles)
    assert leaks({"c": {harness.SIG_KEY: harness.SECRET_SIG, "value": pem}}, needles) == []
    assert leaks({"d": "a plain value", "e": 3}, needles) == []


@pytest.mark.parametrize("stack", ["east-west", "3 remotes", "existing west"])
def test_no_secret_in_any_resource_input(runs, stack):
    result = runs[stack]
    needles = secret_needles(result)
    assert len(needles) > 2, "the mocks produced no token: the check would prove nothing"
    found = [f"{G.short(urn)}{p}" for urn, ins in inputs_of(result).items() for p in leaks(ins, needles)]
    assert not found, "secret material in plain resource inputs:\n" + "\n".join(found)


@pytest.mark.parametrize("stack", ["east-west", "3 remotes"])
def test_no_secret_in_any_resource_output(runs, stack):
    """An output is secret when the provider says so (additionalSecretOutputs) or its input was secret."""
    result = runs[stack]
    needles = secret_needles(result)
    found = []
    for urn, reg in result.monitor.resources.items():
        q = result.requests.get(urn)
        if q is None or not isinstance(reg.state, dict):
            continue
        for key, value in reg.state.items():
            if key in q["additionalSecretOutputs"]:
                continue
            found += [f"{G.short(urn)}.{key}{p}" for p in leaks(value, needles)]
    assert not found, "secret material in plain resource outputs:\n" + "\n".join(found)


@pytest.mark.parametrize("stack", ["east-west", "3 remotes", "existing west"])
def test_no_secret_in_a_plain_stack_export(runs, stack):
    result = runs[stack]
    needles = secret_needles(result)
    found = [f"{name}{p}" for name, (value, secret) in result.outputs.items() if not secret for p in leaks(value, needles)]
    assert not found, "secret material in plain stack exports:\n" + "\n".join(found)
    assert result.outputs, "the program exports nothing"


# A Command can print a secret when it is handed one, or when its command line reads one.
PRINTS_SECRETS = re.compile(
    r"create-remote-secret|\bcreate\s+token\b|\bget\s+secrets?\b|\bconfig\s+view\b.*--(raw|flatten)|--flatten"
    r"|PRIVATE KEY|\bbase64\s+(-d|--decode)\b|\bcat\b[^|;&]*\.(key|pem)\b"
)


def can_print_secret(inputs: dict) -> bool:
    if _nested_secret(inputs):
        return True
    plain = harness.unwrap(inputs)
    return any(PRINTS_SECRETS.search(str(plain.get(k) or "")) for k in ("create", "update", "delete"))


def _nested_secret(value) -> bool:
    if harness.is_secret_envelope(value):
        return True
    if isinstance(value, dict):
        return any(_nested_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_nested_secret(v) for v in value)
    return False


@pytest.mark.parametrize("line, prints", [
    ("istioctl create-remote-secret --name west", True),
    ("kubectl --context west -n istio-system create token istio-reader-service-account", True),
    ("kubectl get secret cacerts -o yaml", True),
    ("kubectl config view --minify --raw", True),
    ("minikube kubectl -p east -- config view --flatten", True),
    ("cat certs/west/ca-key.pem", True),
    ("python3 tools/minikube_ops.py start --profile east --static-ip 192.168.50.2", False),
    ("kubectl --kubeconfig \"$HOME\"/.kube/config --context west -n istio-system wait --for=create configmap/x", False),
])
def test_secret_printing_commands_are_recognised(line, prints):
    assert can_print_secret({"create": line}) is prints


def test_a_command_handed_a_secret_counts_as_printing_one():
    env = {"environment": {"TOKEN": {harness.SIG_KEY: harness.SECRET_SIG, "value": "t"}}, "create": "true"}
    assert can_print_secret(env)


@pytest.mark.parametrize("stack", ["east-west", "3 remotes", "existing west"])
def test_commands_that_can_print_a_secret_log_nothing_and_keep_stdout_secret(runs, stack):
    result = runs[stack]
    bad = []
    for urn, ins in commands(result).items():
        if not can_print_secret(ins):
            continue
        q = result.requests[urn]
        if harness.unwrap(ins.get("logging")) != "none":
            bad.append(f"{G.short(urn)}: logging is {harness.unwrap(ins.get('logging'))!r}, not 'none'")
        if "stdout" not in q["additionalSecretOutputs"]:
            bad.append(f"{G.short(urn)}: stdout is not in additional_secret_outputs")
    assert not bad, "\n".join(bad)


# --- teardown safety ------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["east-west", "3 remotes", "existing west"])
def test_everything_on_a_created_cluster_is_deleted_with_its_start_command(runs, stacks, stack):
    """destroy skips the per-object deletes when the cluster goes too; on an existing cluster it must not."""
    result = runs[stack]
    starts = starts_of(result)
    minikube = {c["name"] for c in [stacks[stack]["primary"], *stacks[stack]["remotes"]] if "minikube" in c}
    assert set(starts) == minikube
    bad = []
    for urn, q in result.requests.items():
        if not q["type"].startswith("kubernetes:") or q["read"]:
            continue
        cluster = G.cluster_of(urn, result.requests)
        want = starts.get(cluster, "")
        got = result.effective_deleted_with(urn)
        if got != want:
            bad.append(f"{G.short(urn)} on {cluster}: deleted_with {G.short(got) if got else 'nothing'}, "
                       f"want {G.short(want) if want else 'nothing (the cluster outlives the stack)'}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("stack", ["east-west", "3 remotes", "existing west"])
def test_deleted_with_only_ever_names_a_start_command(runs, stack):
    """Never the network or another Command: that would skip `minikube delete` itself."""
    result = runs[stack]
    starts = set(starts_of(result).values())
    bad = {f"{G.short(u)} -> {G.short(result.effective_deleted_with(u))}" for u in result.requests
           if result.effective_deleted_with(u) and result.effective_deleted_with(u) not in starts}
    assert not bad, "\n".join(sorted(bad))


@pytest.mark.parametrize("stack", ["east-west", "3 remotes", "existing west"])
def test_lifecycle_commands_are_never_skipped_on_destroy(runs, stack):
    result = runs[stack]
    for urn, ins in commands(result).items():
        words = G.command_words(harness.unwrap(ins.get("create")))
        if "start" in words or "network-create" in words:
            assert result.effective_deleted_with(urn) == "", f"{G.short(urn)} would never run its delete"


def cluster_named_in(line: str, clusters: set[str]) -> str | None:
    words = G.command_words(line)
    for flag in ("--context", "--profile", "-p"):
        if flag in words and words.index(flag) + 1 < len(words) and words[words.index(flag) + 1] in clusters:
            return words[words.index(flag) + 1]
    return None


@pytest.mark.parametrize("stack", ["east-west", "3 remotes", "existing west"])
def test_commands_that_delete_something_are_replaced_delete_first(runs, stack):
    """A replaced Command with a delete would otherwise create the new thing, then delete it (same name)."""
    result = runs[stack]
    starts = starts_of(result)
    managed = 0
    for urn, ins in commands(result).items():
        delete = harness.unwrap(ins.get("delete"))
        if not delete:
            continue
        managed += 1
        assert result.requests[urn]["deleteBeforeReplace"], f"{G.short(urn)} deletes {delete!r} but is not delete-before-replace"
        # A delete that talks to a created cluster must be skipped when that cluster goes away.
        target = cluster_named_in(delete, set(starts))
        if target and urn != starts[target]:
            assert result.effective_deleted_with(urn) == starts[target], f"{G.short(urn)} talks to {target} on delete"
    assert managed >= 1


def test_the_network_command_records_and_reads_its_ownership(east_west):
    (urn, ins), = [(u, i) for u, i in commands(east_west).items() if "network-create" in str(harness.unwrap(i.get("create")))]
    plain = harness.unwrap(ins)
    assert G.command_words(plain["delete"])[2] == "network-delete"
    assert G.command_words(plain["update"])[2] == "network-update"
    # $PULUMI_COMMAND_STDOUT (what create printed) reaches delete only with this left on.
    assert plain.get("addPreviousOutputInEnv") in (None, True)
    assert east_west.monitor.resources[urn].state["stdout"] == "created"


class FakeDocker:
    def __init__(self, networks: dict):
        self.networks, self.calls = networks, []

    def __call__(self, argv, check=True, capture=True):
        self.calls.append(list(argv))
        if argv[:3] == ["docker", "network", "inspect"]:
            name = argv[3]
            if name not in self.networks:
                return subprocess.CompletedProcess(argv, 1, "", "No such network")
            return subprocess.CompletedProcess(argv, 0, json.dumps(self.networks[name]), "")
        if argv[:3] == ["docker", "network", "rm"]:
            self.networks.pop(argv[3], None)
        return subprocess.CompletedProcess(argv, 0, "", "")


@pytest.mark.parametrize("recorded, removed", [("created", True), ("existing", False), ("", False), ("garbage", False)])
def test_the_docker_network_is_removed_only_when_this_stack_created_it(monkeypatch, capsys, recorded, removed):
    fake = FakeDocker({"istio": [{"Subnet": "192.168.50.0/24", "Gateway": "192.168.50.1"}]})
    monkeypatch.setattr(minikube_ops, "run", fake)
    monkeypatch.setenv("PULUMI_COMMAND_STDOUT", recorded)
    assert minikube_ops.main(["network-delete", "--name", "istio"]) == 0
    assert (["docker", "network", "rm", "istio"] in fake.calls) is removed
    assert ("istio" in fake.networks) is not removed


@pytest.mark.parametrize("recorded", ["created", "existing"])
def test_an_update_keeps_the_recorded_ownership(monkeypatch, capsys, recorded):
    fake = FakeDocker({"istio": [{"Subnet": "192.168.50.0/24", "Gateway": "192.168.50.1"}]})
    monkeypatch.setattr(minikube_ops, "run", fake)
    monkeypatch.setenv("PULUMI_COMMAND_STDOUT", recorded)
    assert minikube_ops.main(["network-update", "--name", "istio", "--subnet", "192.168.50.0/24",
                              "--gateway", "192.168.50.1"]) == 0
    assert capsys.readouterr().out.strip() == recorded
    assert not any(c[:3] == ["docker", "network", "rm"] for c in fake.calls)


# --- failure paths ----------------------------------------------------------------------------------


def messages(exc: BaseException) -> str:
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


@pytest.mark.parametrize("service, words", [
    ("istio-system/istio-eastwestgateway", ["istio-eastwestgateway", "east", "no LoadBalancer address", "MetalLB"]),
    ("istio-system/prometheus", ["prometheus", "west", "no external address", "MetalLB"]),
])
def test_a_load_balancer_without_an_address_fails_clearly(stacks, service, words):
    with pytest.raises(Exception) as e:
        harness.run_main(stacks["east-west"], lb_overrides={service: {"loadBalancer": {}}})
    text = messages(e.value)
    assert all(w in text for w in words), text


@pytest.mark.parametrize("data, words", [
    ({"ca.crt": harness.b64("ca")}, "token Secret for west has no token yet"),
    ({"token": harness.b64("t")}, "token Secret for west has no ca.crt"),
    (None, "token Secret for west has no token yet"),
])
def test_a_token_secret_without_a_token_fails_clearly(data, words):
    def program():
        fake = types.SimpleNamespace(data=pulumi.Output.from_input(data))
        pulumi.export("kc", access.token_kubeconfig("west", "https://192.168.50.3:8443", fake))

    with pytest.raises(Exception) as e:
        harness.run(program, harness.stack_config())
    assert words in messages(e.value)


def test_a_complete_token_secret_gives_a_secret_kubeconfig():
    def program():
        fake = types.SimpleNamespace(data=pulumi.Output.from_input({"token": harness.b64("tok"), "ca.crt": harness.b64("ca")}))
        pulumi.export("kc", access.token_kubeconfig("west", "https://192.168.50.3:8443", fake))

    result = harness.run(program, harness.stack_config())
    value, secret = result.outputs["kc"]
    assert secret and KUBECONFIG_TEXT in value and "tok" in value


def test_an_unreachable_manifest_url_fails_clearly(tmp_path):
    def unreachable(url, timeout):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    url = "https://raw.githubusercontent.com/istio/istio/1.30.3/samples/addons/prometheus.yaml"
    with pytest.raises(ManifestError) as e:
        ManifestSource(cache_dir=str(tmp_path / "cache")).fetch(url, opener=unreachable)
    text = str(e.value)
    assert url in text and "Name or service not known" in text and "kiali-multicluster:manifests.offlineDir" in text
    assert not (tmp_path / "cache").exists() or not os.listdir(tmp_path / "cache"), "a failed fetch left a cache entry"


def test_a_missing_offline_manifest_fails_the_whole_program_clearly(stacks, tmp_path):
    cfg = copy.deepcopy(stacks["east-west"])
    (tmp_path / "empty").mkdir()
    cfg["manifests"] = {"offlineDir": str(tmp_path / "empty")}
    with pytest.raises(Exception) as e:
        harness.run_main(cfg)
    text = messages(e.value)
    assert "is not in the offline directory" in text and "kiali-multicluster:manifests.offlineDir" in text, text
