#!/usr/bin/env python3
"""The minikube and docker steps the Pulumi program runs through pulumi-command.

Standard library only: the Command provider runs it with the system ``python3`` from the
project directory. Each subcommand is idempotent and fails with a message that says what to do.

  network-create  create the shared docker network (or adopt an identical one); prints created|existing
  network-update  re-check the network, keep the ownership recorded at create time
  network-delete  remove the network only if this stack created it ($PULUMI_COMMAND_STDOUT)
  start           start a profile on the network with its static IP; refuse a profile with other settings
  status          cheap check used as the Command's update step
  delete          delete a profile
  metallb         enable the MetalLB addon
  resume          (make up / make preview) start every stopped profile of a stack file
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence


class OpsError(RuntimeError):
    pass


def run(argv: Sequence[str], *, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(argv), text=True, capture_output=capture)
    except FileNotFoundError as e:
        raise OpsError(f"{argv[0]} is not installed or not on PATH ({e})") from e
    if check and proc.returncode != 0:
        out = ((proc.stdout or "") + (proc.stderr or "")).strip()
        raise OpsError(f"`{' '.join(argv)}` failed with exit code {proc.returncode}:\n{out}")
    return proc


# --- docker network ----------------------------------------------------------------------------


def network_ipam(name: str) -> list[tuple[str, str]] | None:
    """(subnet, gateway) pairs of a docker network, or None if it does not exist."""
    proc = run(["docker", "network", "inspect", name, "--format", "{{json .IPAM.Config}}"], check=False)
    if proc.returncode != 0:
        return None
    entries = json.loads(proc.stdout.strip() or "[]") or []
    return [(e.get("Subnet", ""), e.get("Gateway", "")) for e in entries]


def network_problem(name: str, ipam: list[tuple[str, str]], subnet: str, gateway: str) -> str | None:
    if (subnet, gateway) in ipam:
        return None
    have = ", ".join(f"subnet {s or '?'} gateway {g or 'none'}" for s, g in ipam) or "no IPAM config"
    return (
        f"docker network {name!r} already exists with {have}, but this stack needs subnet {subnet} "
        f"gateway {gateway} (without a gateway minikube ignores --network/--static-ip, minikube#19284). "
        f"Remove it (`docker network rm {name}`) or set kiali-multicluster:minikube.network/subnet to match."
    )


def network_create(name: str, subnet: str, gateway: str) -> str:
    ipam = network_ipam(name)
    if ipam is not None:
        problem = network_problem(name, ipam, subnet, gateway)
        if problem:
            raise OpsError(problem)
        return "existing"
    # No minikube labels: `minikube delete --all` would remove a network carrying them.
    run([
        "docker", "network", "create", "--driver=bridge", f"--subnet={subnet}", f"--gateway={gateway}",
        "-o", "com.docker.network.bridge.enable_ip_masquerade=true",
        "-o", "com.docker.network.bridge.enable_icc=true",
        name,
    ])
    return "created"


def network_update(name: str, subnet: str, gateway: str, previous: str) -> str:
    ipam = network_ipam(name)
    if ipam is None:
        return network_create(name, subnet, gateway)
    problem = network_problem(name, ipam, subnet, gateway)
    if problem:
        raise OpsError(problem)
    return previous if previous in ("created", "existing") else "existing"


def network_delete(name: str, previous: str) -> str:
    if previous != "created":
        return f"left docker network {name} in place (it existed before this stack)"
    if network_ipam(name) is None:
        return f"docker network {name} is already gone"
    proc = run(["docker", "network", "rm", name], check=False)
    if proc.returncode != 0:
        # Something else still uses it: leave it rather than block the destroy.
        print(f"warning: could not remove docker network {name}: {proc.stderr.strip()}", file=sys.stderr)
        return f"kept docker network {name}"
    return f"removed docker network {name}"


# --- minikube profiles -------------------------------------------------------------------------


def minikube_home() -> str:
    base = os.environ.get("MINIKUBE_HOME") or os.path.expanduser("~")
    return base if os.path.basename(base.rstrip("/")) == ".minikube" else os.path.join(base, ".minikube")


def profile_config(profile: str) -> dict | None:
    path = os.path.join(minikube_home(), "profiles", profile, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def profile_mismatches(cfg: dict, *, driver: str, network: str, static_ip: str, memory_mb: int, cpus: int,
                       kubernetes_version: str) -> list[str]:
    """How an existing profile's saved settings differ from the wanted ones (minikube keeps the old ones)."""
    have = {
        "driver": cfg.get("Driver"),
        "network": cfg.get("Network"),
        "static IP": cfg.get("StaticIP"),
        "memory (MB)": cfg.get("Memory"),
        "cpus": cfg.get("CPUs"),
        "kubernetes version": (cfg.get("KubernetesConfig") or {}).get("KubernetesVersion"),
    }
    want = {
        "driver": driver,
        "network": network,
        "static IP": static_ip,
        "memory (MB)": memory_mb,
        "cpus": cpus,
        "kubernetes version": kubernetes_version,
    }
    return [f"{k}: profile has {have[k]!r}, config wants {want[k]!r}" for k in want if have[k] != want[k]]


def start(profile: str, *, driver: str, network: str, static_ip: str, memory_mb: int, cpus: int,
          kubernetes_version: str) -> str:
    wanted = dict(driver=driver, network=network, static_ip=static_ip, memory_mb=memory_mb, cpus=cpus,
                  kubernetes_version=kubernetes_version)
    existing = profile_config(profile)
    if existing is not None:
        diffs = profile_mismatches(existing, **wanted)
        if diffs:
            raise OpsError(
                f"minikube profile {profile!r} already exists with other settings:\n  " + "\n  ".join(diffs)
                + f"\nminikube cannot change these in place. Delete it (`minikube delete -p {profile}`) "
                "or change the stack config to match."
            )
    run([
        "minikube", "start", "-p", profile, "--driver", driver, "--network", network, "--static-ip", static_ip,
        "--memory", f"{memory_mb}mb", "--cpus", str(cpus), "--kubernetes-version", kubernetes_version,
    ], capture=False)
    ip = run(["minikube", "ip", "-p", profile]).stdout.strip()
    if ip != static_ip:
        raise OpsError(
            f"minikube profile {profile!r} came up at {ip}, not {static_ip}: minikube ignored --network/--static-ip "
            f"(is docker network {network!r} missing its gateway? minikube#19284). Delete the profile and retry."
        )
    return f"{profile} {ip}"


def status(profile: str, static_ip: str) -> str:
    proc = run(["minikube", "status", "-p", profile], check=False)
    if proc.returncode != 0:
        raise OpsError(
            f"minikube profile {profile!r} is not running (exit {proc.returncode}). "
            f"Run `minikube start -p {profile}` (make up does this) and retry."
        )
    ip = run(["minikube", "ip", "-p", profile]).stdout.strip()
    if ip != static_ip:
        raise OpsError(f"minikube profile {profile!r} is at {ip}, expected {static_ip}")
    return f"{profile} {ip}"


def delete(profile: str) -> str:
    run(["minikube", "delete", "-p", profile], capture=False)
    return f"deleted {profile}"


def metallb(profile: str) -> str:
    run(["minikube", "addons", "enable", "metallb", "-p", profile], capture=False)
    return f"metallb enabled on {profile}"


def resume(stack_file: str, *, dry_run: bool = False) -> list[str]:
    """Start every minikube profile of the stack that exists but is stopped (a stopped cluster fails refresh)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from components.config import parse, read_stack_file

    cfg = parse(read_stack_file(stack_file))
    actions = []
    for cl in cfg.clusters:
        if cl.minikube is None or profile_config(cl.name) is None:
            continue
        if run(["minikube", "status", "-p", cl.name], check=False).returncode == 0:
            continue
        actions.append(cl.name)
        if not dry_run:
            run(["minikube", "start", "-p", cl.name], capture=False)
    return actions


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="minikube_ops", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("network-create", "network-update", "network-delete"):
        s = sub.add_parser(name)
        s.add_argument("--name", required=True)
        if name != "network-delete":
            s.add_argument("--subnet", required=True)
            s.add_argument("--gateway", required=True)
    s = sub.add_parser("start")
    s.add_argument("--profile", required=True)
    s.add_argument("--driver", required=True)
    s.add_argument("--network", required=True)
    s.add_argument("--static-ip", required=True)
    s.add_argument("--memory-mb", type=int, required=True)
    s.add_argument("--cpus", type=int, required=True)
    s.add_argument("--kubernetes-version", required=True)
    s = sub.add_parser("status")
    s.add_argument("--profile", required=True)
    s.add_argument("--static-ip", required=True)
    for name in ("delete", "metallb"):
        sub.add_parser(name).add_argument("--profile", required=True)
    s = sub.add_parser("resume")
    s.add_argument("--stack-file", required=True)
    s.add_argument("--dry-run", action="store_true")
    a = p.parse_args(argv)
    previous = os.environ.get("PULUMI_COMMAND_STDOUT", "").strip()
    try:
        if a.cmd == "network-create":
            print(network_create(a.name, a.subnet, a.gateway))
        elif a.cmd == "network-update":
            print(network_update(a.name, a.subnet, a.gateway, previous))
        elif a.cmd == "network-delete":
            print(network_delete(a.name, previous), file=sys.stderr)
        elif a.cmd == "start":
            print(start(a.profile, driver=a.driver, network=a.network, static_ip=a.static_ip,
                        memory_mb=a.memory_mb, cpus=a.cpus, kubernetes_version=a.kubernetes_version))
        elif a.cmd == "status":
            print(status(a.profile, a.static_ip))
        elif a.cmd == "delete":
            print(delete(a.profile))
        elif a.cmd == "metallb":
            print(metallb(a.profile))
        elif a.cmd == "resume":
            started = resume(a.stack_file, dry_run=a.dry_run)
            verb = "would start" if a.dry_run else "started"
            print(f"{verb} stopped profiles: {', '.join(started)}" if started else "no stopped profile")
    except OpsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
