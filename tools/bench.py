#!/usr/bin/env python3
"""`make bench`: how long `pulumi preview` evaluates the program, and what `pulumi up` must wait for.

1. Program evaluation under the test mocks (tests/harness.py) for the east-west stack (1 remote)
   and generated stacks with 4 and 16 remotes: resources registered, min/median wall seconds of
   several runs, milliseconds per resource. Each stack is evaluated once untimed first (imports,
   and the mocks' RSA-4096 keys, which they cache per process by resource name), so the timed
   runs measure the program plus the mocks answering it. The mocks' certificate signing is
   shown separately ("mock TLS", CPU seconds summed over the SDK's threads).
2. The `pulumi up` critical path of each stack under the step-time model of tools/graph.py, next
   to the serial sum of the same steps (the tutorial done one command after another).
3. The targets, each with met / NOT MET.

Prints tables only; exits 0 even when a target is missed (it is a measurement, not a test).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

import harness  # noqa: E402
from tools import graph  # noqa: E402

EVAL_TARGET_SECONDS = 1.0  # east-west, 2-core machine
FLATNESS_TARGET = 1.25  # ms/resource at 16 remotes <= 1.25 x at 1 remote
CRITICAL_RATIO_TARGET = 0.30
INHERENT_SECONDS = 230  # cluster -> kubeconfig -> base -> istiod -> EW gateway -> IP -> remote istiod -> token -> workload
INHERENT_SLACK = 15

# The inherent chain, as (model step, cluster role) for steps longer than the 1-s glue steps.
INHERENT_CHAIN = (
    (graph.MINIKUBE_START.label, "primary"),
    (graph.HELM_BASE.label, "primary"),
    (graph.HELM_ISTIOD.label, "primary"),
    (graph.HELM_GATEWAY.label, "primary"),
    (graph.LOADBALANCER.label, "primary"),
    (graph.HELM_ISTIOD.label, "remote"),
    (graph.TOKEN.label, "remote"),
    (graph.WORKLOAD.label, "remote"),
)


# --- machine ---------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def sdk_import_seconds() -> float:
    """Wall time of a fresh interpreter importing the Pulumi SDKs (paid once per `pulumi preview`)."""
    code = "import pulumi, pulumi_kubernetes, pulumi_command, pulumi_tls, yaml"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t


# --- evaluation timing -------------------------------------------------------------------------------


class TlsTimer:
    """Sums the CPU time the mocks spend building keys and certificates (the mocks' cost, not the program's)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._orig = harness._tls_outputs

    def __enter__(self):
        def timed(*a, **kw):
            t = time.thread_time()
            try:
                return self._orig(*a, **kw)
            finally:
                with self._lock:
                    self.seconds += time.thread_time() - t

        harness._tls_outputs = timed
        return self

    def __exit__(self, *exc):
        harness._tls_outputs = self._orig


class GcTimer:
    """Wall time spent in the cyclic garbage collector, and how many full (gen 2) collections ran."""

    def __init__(self) -> None:
        self.seconds, self.full, self._t = 0.0, 0, 0.0

    def _cb(self, phase, info):
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t
            self.full += info.get("generation") == 2

    def __enter__(self):
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self._cb)


def evaluate(config: dict, runs: int) -> dict:
    harness.run_main(config)  # warm: imports, RSA keys
    times, cpu, tls, gcs, count = [], [], [], [], 0
    for _ in range(runs):
        result = None
        gc.collect()  # start each run on a clean heap, as a fresh `pulumi preview` process does
        with TlsTimer() as timer, GcTimer() as gct:
            t, c = time.perf_counter(), time.process_time()
            result = harness.run_main(config)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        tls.append(timer.seconds)
        gcs.append((gct.seconds, gct.full))
        count = len([u for u, q in result.requests.items() if q["type"] != graph.STACK_TYPE])
    median = statistics.median(times)
    return {"resources": count, "min": min(times), "median": median, "ms_per_resource": 1000 * median / count,
            "cpu": statistics.median(cpu), "tls": statistics.median(tls),
            "gc": statistics.median(g for g, _ in gcs), "gc_full": max(n for _, n in gcs)}


def analyse(config: dict) -> tuple[graph.Graph, harness.Result]:
    with graph.capture_read_ids() as captured:
        result = harness.run_main(config)
    return graph.graph_of(result.requests, result.records, graph.read_id_urns(captured)), result


# --- checks on the east-west graph ------------------------------------------------------------------


def roles(config: dict) -> dict[str, str]:
    out = {config["primary"]["name"]: "primary"}
    out.update({r["name"]: "remote" for r in config["remotes"]})
    return out


def chain_problems(g: graph.Graph, path: list[str], role_of: dict[str, str]) -> list[str]:
    heavy = [(g.nodes[u].step.label, role_of.get(g.nodes[u].cluster or "", "-")) for u in path
             if g.nodes[u].step.seconds > 1]
    if tuple(heavy) == INHERENT_CHAIN:
        return []
    extra, missing = list(heavy), []
    for step in INHERENT_CHAIN:
        if step in extra:
            extra.remove(step)
        else:
            missing.append(step)
    return [f"extra: {', '.join(f'{s} on {r}' for s, r in extra) or '-'}; "
            f"missing: {', '.join(f'{s} on {r}' for s, r in missing) or '-'}"]


def start_commands(g: graph.Graph) -> dict[str, str]:
    return {n.cluster or n.name: u for u, n in g.nodes.items() if n.step is graph.MINIKUBE_START}


def independence_problems(g: graph.Graph) -> list[str]:
    starts = start_commands(g)
    out = []
    for a, ua in sorted(starts.items()):
        for b, ub in sorted(starts.items()):
            if a != b and ub in g.ancestors(ua):
                out.append(f"cluster {a} waits for cluster {b}")
    return out


def chain_tail(g: graph.Graph, role_of: dict[str, str]) -> set[str]:
    """The inherent chain after the primary istiod: the primary's gateway releases (its IP read waits
    for them) and every remote istiod. Waiting for any of these puts a step after the Istio chain."""
    return {u for u, n in g.nodes.items()
            if (n.step is graph.HELM_GATEWAY and role_of.get(n.cluster or "") == "primary")
            or (n.step is graph.HELM_ISTIOD and role_of.get(n.cluster or "") == "remote")}


def groups_beside(g: graph.Graph, role_of: dict[str, str]) -> list[tuple[str, int, float, list[str]]]:
    """(group, members, latest finish, what of the chain tail it waits for) for Prometheus, Kiali, primary Travels."""
    finish = g.finish_times()
    tail = chain_tail(g, role_of)
    groups: dict[str, list[str]] = {}
    for u, n in g.nodes.items():
        top = g.nodes.get(g.top_component(u))
        if top is None or not n.step.seconds:
            continue
        t = top.type.rsplit(":", 1)[-1]
        if "Prometheus" in t or "Kiali" in t:
            groups.setdefault(f"{t} {top.name}", []).append(u)
        elif "Travels" in t and role_of.get(n.cluster or "") == "primary":
            groups.setdefault(f"{t} {top.name} (primary)", []).append(u)
    out = []
    for name, members in sorted(groups.items()):
        waits = sorted({f"{g.nodes[t].name} ({g.nodes[t].step.label})" for m in members for t in (g.ancestors(m) & tail)})
        out.append((name, len(members), max(finish[m] for m in members), waits))
    return out


# --- output -------------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list], aligns: str = "") -> str:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    aligns = aligns or "l" * len(headers)

    def fmt(r):
        return "  ".join((c.rjust(w) if a == "r" else c.ljust(w)) for c, w, a in zip(r, widths, aligns)).rstrip()

    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]])


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed evaluations per stack (default 7)")
    ap.add_argument("--remotes", default="1,4,16", help="remote counts to evaluate (default 1,4,16; 1 = east-west)")
    a = ap.parse_args(argv)
    counts = [int(x) for x in a.remotes.split(",")]

    base = harness.offline(harness.stack_config())
    stacks = {n: (base if n == 1 else graph.with_remotes(base, n)) for n in counts}

    print("# kiali-multicluster benchmark")
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
          f"Python {platform.python_version()}")
    print(f"SDK imports in a fresh interpreter (once per `pulumi preview`): {sdk_import_seconds():.2f} s\n")

    print(f"## Program evaluation under mocks ({a.runs} timed runs per stack after one warm-up run)")
    evals = {n: evaluate(cfg, a.runs) for n, cfg in stacks.items()}
    rows = [[("east-west" if n == 1 else f"{n} remotes"), n, e["resources"], f"{e['min']:.3f}", f"{e['median']:.3f}",
             f"{e['ms_per_resource']:.2f}", f"{e['cpu']:.3f}", f"{e['gc']:.3f} ({e['gc_full']})", f"{e['tls']:.3f}"]
            for n, e in evals.items()]
    print(table(["stack", "remotes", "resources", "min s", "median s", "ms/resource", "cpu s", "gc s (full)", "mock TLS cpu-s"],
                rows, "lrrrrrrrr"))
    print("cpu s: process CPU time (all threads); gc s: time in the cyclic collector, (full) gen-2 collections per run;\n"
          "mock TLS: the mocks signing certificates, not the program. Medians.")
    print()

    print("## Step-time model (modelled seconds per `pulumi up` step)")
    print(table(["step", "s", "applies to"], [[s.label, f"{s.seconds:g}", s.what] for s in graph.STEP_MODEL], "lrl"))
    print()

    analyses = {n: analyse(cfg) for n, cfg in stacks.items()}
    print("## `pulumi up` critical path vs the tutorial's serial sum")
    rows = []
    for n, (g, _) in analyses.items():
        total, _path = g.critical_path()
        serial = g.serial_sum()
        rows.append([("east-west" if n == 1 else f"{n} remotes"), len(g.nodes), f"{total:.0f}", f"{serial:.0f}",
                     f"{total / serial:.2f}" if serial else "-"])
    print(table(["stack", "resources", "critical s", "serial s", "ratio"], rows, "lrrrr"))
    print()

    results = []
    if 1 in analyses:
        g, _ = analyses[1]
        role_of = roles(stacks[1])
        total, path = g.critical_path()
        serial = g.serial_sum()
        finish = g.finish_times()
        print("### east-west: the longest chain")
        print(table(["done at s", "step s", "step", "cluster", "resource"],
                    [[f"{finish[u]:.0f}", f"{g.nodes[u].step.seconds:g}", g.nodes[u].step.label, g.nodes[u].cluster or "-",
                      graph.short(u)] for u in path], "rrlll"))
        print()
        beside = groups_beside(g, role_of)
        print("### east-west: what runs beside the Istio chain")
        print(table(["group", "steps", "done at s", "waits for (EW gateway / its IP / remote istiod)"],
                    [[name, k, f"{f:.0f}", ", ".join(w) or "-"] for name, k, f, w in beside], "lrrl"))
        print()
        chain = chain_problems(g, path, role_of)
        indep = independence_problems(g)
        after = [f"{name} waits for {', '.join(w)}" for name, _, _, w in beside if w]
        missing = [k for k in ("Prometheus", "Kiali", "Travels") if not any(k in name for name, *_ in beside)]
        after += [f"no {k} component registered" for k in missing]
        results += [
            ("east-west chain holds only the inherent steps", not chain, "; ".join(chain) or f"{len(path)} members"),
            (f"east-west chain is about {INHERENT_SECONDS} s", abs(total - INHERENT_SECONDS) <= INHERENT_SLACK, f"{total:.0f} s"),
            ("clusters start independently", not indep, "; ".join(indep) or f"{len(start_commands(g))} clusters"),
            ("Prometheus, Kiali, primary Travels beside the chain", not after,
             "; ".join(after) or ", ".join(f"{n} done at {f:.0f} s" for n, _, f, _ in beside)),
            (f"critical path <= {CRITICAL_RATIO_TARGET:.2f} x serial", serial and total / serial <= CRITICAL_RATIO_TARGET,
             f"{total:.0f} / {serial:.0f} = {total / serial:.2f}" if serial else "-"),
        ]
        e = evals[1]
        results.append((f"east-west evaluation <= {EVAL_TARGET_SECONDS:.1f} s", e["median"] <= EVAL_TARGET_SECONDS,
                        f"median {e['median']:.3f} s on {len(os.sched_getaffinity(0))} cores"))
    if 1 in evals and 16 in evals:
        ratio = evals[16]["ms_per_resource"] / evals[1]["ms_per_resource"]
        results.append((f"cost per resource flat (16 remotes <= {FLATNESS_TARGET} x 1 remote)", ratio <= FLATNESS_TARGET,
                        f"{evals[16]['ms_per_resource']:.2f} / {evals[1]['ms_per_resource']:.2f} ms = {ratio:.2f}"))

    print("## Targets")
    print(table(["target", "result", "measured"], [[t, verdict(ok), m] for t, ok, m in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
