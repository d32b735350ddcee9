"""The minikube/docker steps, run exactly as the Commands run them, against fake docker/minikube binaries.

The fakes record every call and keep a little state (networks, profiles), so these tests check the
real command lines the program registers, not a re-typed copy.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from harness import ROOT, run_main, unwrap
from tools import minikube_ops

FAKE = textwrap.dedent(
    r'''
    #!{python}
    import json, os, sys
    state = os.environ["FAKE_STATE"]
    tool = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    with open(os.path.join(state, "calls.log"), "a") as f:
        f.write(json.dumps([tool] + args) + "\n")
    def load(name, default):
        p = os.path.join(state, name)
        return json.load(open(p)) if os.path.exists(p) else default
    def save(name, value):
        json.dump(value, open(os.path.join(state, name), "w"))
    if tool == "docker":
        nets = load("networks.json", {{}})
        if args[:2] == ["network", "inspect"]:
            if args[2] not in nets:
                sys.stderr.write("Error: No such network\n"); sys.exit(1)
            print(json.dumps(nets[args[2]])); sys.exit(0)
        if args[:2] == ["network", "create"]:
            opts = dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)
            nets[args[-1]] = [{{"Subnet": opts["--subnet"], "Gateway": opts["--gateway"]}}]
            save("networks.json", nets); sys.exit(0)
        if args[:2] == ["network", "rm"]:
            if os.environ.get("FAKE_RM_FAIL"):
                sys.stderr.write("Error: network istio has active endpoints\n"); sys.exit(1)
            nets.pop(args[2], None); save("networks.json", nets); sys.exit(0)
    if tool == "minikube":
        profiles = load("profiles.json", {{}})
        p = args[args.index("-p") + 1] if "-p" in args else None
        home = os.environ["MINIKUBE_HOME"]
        if args[0] == "start":
            opt = {{args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i].startswith("--")}}
            ip = os.environ.get("FAKE_IP_OVERRIDE") or opt.get("--static-ip") or profiles.get(p, {{}}).get("ip")
            profiles[p] = {{"ip": ip, "running": True}}
            save("profiles.json", profiles)
            if "--static-ip" in opt:
                d = os.path.join(home, ".minikube", "profiles", p)
                os.makedirs(d, exist_ok=True)
                json.dump({{"Driver": opt["--driver"], "Network": opt["--network"], "StaticIP": opt["--static-ip"],
                           "Memory": int(opt["--memory"].rstrip("mb")), "CPUs": int(opt["--cpus"]),
                           "KubernetesConfig": {{"KubernetesVersion": opt["--kubernetes-version"]}}}},
                          open(os.path.join(d, "config.json"), "w"))
            sys.exit(0)
        if args[0] == "ip":
            print(profiles[p]["ip"]); sys.exit(0)
        if args[0] == "status":
            sys.exit(0 if profiles.get(p, {{}}).get("running") else 7)
        if args[0] == "delete":
            profiles.pop(p, None); save("profiles.json", profiles); sys.exit(0)
        if args[:2] == ["addons", "enable"]:
            sys.exit(0)
    sys.stderr.write("fake: unexpected call %r\n" % (args,)); sys.exit(99)
    '''
).lstrip()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("docker", "minikube"):
        p = bindir / tool
        p.write_text(FAKE.format(python=sys.executable))
        p.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", FAKE_STATE=str(state),
               MINIKUBE_HOME=str(home))
    env.pop("PULUMI_COMMAND_STDOUT", None)

    class Fake:
        def sh(self, cmd: str, **extra_env) -> subprocess.CompletedProcess:
            return subprocess.run(["/bin/sh", "-c", cmd], cwd=ROOT, env=dict(env, **extra_env), text=True,
                                  capture_output=True, timeout=60)

        def calls(self) -> list:
            log = state / "calls.log"
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

        def networks(self) -> dict:
            p = state / "networks.json"
            return json.loads(p.read_text()) if p.exists() else {}

        def set_network(self, name, ipam):
            nets = self.networks()
            nets[name] = ipam
            (state / "networks.json").write_text(json.dumps(nets))

        def profile_dir(self, name):
            return home / ".minikube" / "profiles" / name

        def set_ip(self, name, ip):
            p = state / "profiles.json"
            profiles = json.loads(p.read_text())
            profiles[name]["ip"] = ip
            p.write_text(json.dumps(profiles))

        def stop(self, name):
            p = state / "profiles.json"
            profiles = json.loads(p.read_text())
            profiles[name]["running"] = False
            p.write_text(json.dumps(profiles))

    return Fake()


@pytest.fixture(scope="module")
def commands():
    """The create/update/delete lines of every Command the east-west program registers."""
    r = run_main()
    return {rec.name: unwrap(rec.inputs) for rec in r.of_type("command:local:Command")}


def test_network_is_created_with_a_gateway_and_owned(fake, commands):
    net = commands["docker-network-istio"]
    out = fake.sh(net["create"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "created"
    create = [c for c in fake.calls() if c[:3] == ["docker", "network", "create"]]
    assert len(create) == 1
    assert "--subnet=192.168.50.0/24" in create[0] and "--gateway=192.168.50.1" in create[0]
    assert "com.docker.network.bridge.enable_ip_masquerade=true" in create[0]
    assert "com.docker.network.bridge.enable_icc=true" in create[0]
    assert not [a for a in create[0] if "minikube.sigs.k8s.io" in a]  # `minikube delete --all` must not take it
    # Destroy removes it, because this stack created it.
    out = fake.sh(net["delete"], PULUMI_COMMAND_STDOUT="created")
    assert out.returncode == 0, out.stderr
    assert "istio" not in fake.networks()


def test_an_identical_existing_network_is_adopted_and_left_behind(fake, commands):
    net = commands["docker-network-istio"]
    fake.set_network("istio", [{"Subnet": "192.168.50.0/24", "Gateway": "192.168.50.1"}])
    out = fake.sh(net["create"])
    assert (out.returncode, out.stdout.strip()) == (0, "existing")
    assert not [c for c in fake.calls() if c[:3] == ["docker", "network", "create"]]
    out = fake.sh(net["delete"], PULUMI_COMMAND_STDOUT="existing")
    assert out.returncode == 0
    assert "istio" in fake.networks()
    # An update keeps the ownership recorded at create time.
    out = fake.sh(net["update"], PULUMI_COMMAND_STDOUT="created")
    assert (out.returncode, out.stdout.strip()) == (0, "created")


@pytest.mark.parametrize("ipam", [
    [{"Subnet": "192.168.50.0/24", "Gateway": ""}],  # no gateway: minikube would ignore --static-ip
    [{"Subnet": "192.168.49.0/24", "Gateway": "192.168.49.1"}],
])
def test_a_mismatched_existing_network_fails_clearly(fake, commands, ipam):
    fake.set_network("istio", ipam)
    out = fake.sh(commands["docker-network-istio"]["create"])
    assert out.returncode == 1
    assert "docker network 'istio' already exists" in out.stderr
    assert "kiali-multicluster:minikube" in out.stderr


def test_profiles_start_on_the_network_with_their_static_ip(fake, commands):
    for name, ip in (("east", "192.168.50.2"), ("west", "192.168.50.3")):
        out = fake.sh(commands[f"{name}-minikube"]["create"])
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"{name} {ip}"
    starts = [c for c in fake.calls() if c[:2] == ["minikube", "start"]]
    east = starts[0]
    assert east[east.index("-p") + 1] == "east"
    for flag, value in (("--driver", "docker"), ("--network", "istio"), ("--static-ip", "192.168.50.2"),
                        ("--memory", "8192mb"), ("--cpus", "4"), ("--kubernetes-version", "v1.34.0")):
        assert east[east.index(flag) + 1] == value
    # update is a cheap status check, delete removes the profile
    assert fake.sh(commands["east-minikube"]["update"]).returncode == 0
    assert fake.sh(commands["east-metallb-addon"]["create"]).returncode == 0
    assert ["minikube", "addons", "enable", "metallb", "-p", "east"] in fake.calls()
    assert fake.sh(commands["east-minikube"]["delete"]).returncode == 0
    assert ["minikube", "delete", "-p", "east"] in fake.calls()
    out = fake.sh(commands["east-minikube"]["update"])
    assert out.returncode == 1 and "not running" in out.stderr


def test_start_fails_when_minikube_ignores_the_static_ip(fake, commands):
    out = fake.sh(commands["west-minikube"]["create"], FAKE_IP_OVERRIDE="192.168.50.2")
    assert out.returncode == 1
    assert "came up at 192.168.50.2, not 192.168.50.3" in out.stderr


def test_an_existing_profile_with_other_settings_is_refused(fake, commands):
    d = fake.profile_dir("east")
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({
        "Driver": "docker", "Network": "istio", "StaticIP": "192.168.50.2", "Memory": 4096, "CPUs": 4,
        "KubernetesConfig": {"KubernetesVersion": "v1.34.0"}}))
    out = fake.sh(commands["east-minikube"]["create"])
    assert out.returncode == 1
    assert "memory (MB): profile has 4096, config wants 8192" in out.stderr
    assert not [c for c in fake.calls() if c[:2] == ["minikube", "start"]]


@pytest.mark.parametrize("field,value,words", [
    ("Driver", "podman", "driver: profile has 'podman'"),
    ("Network", "other", "network: profile has 'other'"),
    ("StaticIP", "192.168.50.9", "static IP: profile has '192.168.50.9'"),
    ("Memory", 4096, "memory (MB): profile has 4096"),
    ("CPUs", 2, "cpus: profile has 2"),
    ("KubernetesConfig", {"KubernetesVersion": "v1.33.0"}, "kubernetes version: profile has 'v1.33.0'"),
])
def test_every_profile_setting_minikube_cannot_change_is_compared(field, value, words):
    saved = {"Driver": "docker", "Network": "istio", "StaticIP": "192.168.50.2", "Memory": 8192, "CPUs": 4,
             "KubernetesConfig": {"KubernetesVersion": "v1.34.0"}}
    wanted = dict(driver="docker", network="istio", static_ip="192.168.50.2", memory_mb=8192, cpus=4,
                  kubernetes_version="v1.34.0")
    assert minikube_ops.profile_mismatches(saved, **wanted) == []
    diffs = minikube_ops.profile_mismatches({**saved, field: value}, **wanted)
    assert len(diffs) == 1 and diffs[0].startswith(words)


def test_update_fails_when_the_profile_moved_address(fake, commands):
    assert fake.sh(commands["east-minikube"]["create"]).returncode == 0
    fake.set_ip("east", "192.168.50.7")
    out = fake.sh(commands["east-minikube"]["update"])
    assert out.returncode == 1 and "is at 192.168.50.7, expected 192.168.50.2" in out.stderr


def test_a_network_still_in_use_is_kept_without_failing_destroy(fake, commands):
    net = commands["docker-network-istio"]
    assert fake.sh(net["create"]).stdout.strip() == "created"
    out = fake.sh(net["delete"], PULUMI_COMMAND_STDOUT="created", FAKE_RM_FAIL="1")
    assert out.returncode == 0
    assert "warning: could not remove docker network istio" in out.stderr
    assert "istio" in fake.networks()


def test_resume_starts_only_stopped_profiles_of_the_stack(fake, commands):
    for name in ("east", "west"):
        assert fake.sh(commands[f"{name}-minikube"]["create"]).returncode == 0
    fake.stop("west")
    py = sys.executable
    dry = fake.sh(f"{py} tools/minikube_ops.py resume --stack-file Pulumi.east-west.yaml --dry-run")
    assert dry.stdout.strip() == "would start stopped profiles: west"
    before = len(fake.calls())
    out = fake.sh(f"{py} tools/minikube_ops.py resume --stack-file Pulumi.east-west.yaml")
    assert out.stdout.strip() == "started stopped profiles: west"
    assert ["minikube", "start", "-p", "west"] in fake.calls()[before:]
    assert ["minikube", "start", "-p", "east"] not in fake.calls()[before:]
