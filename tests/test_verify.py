"""make verify (tools/verify.py): pure checks over recorded API responses, the orchestration with a
fake API server, and the Prometheus query against a real local Prometheus federating another."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import textwrap

import pytest
import yaml

import harness
from tools import need, verify
from tools.verify import FAIL, PASS, SKIP

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "verify")
STACK_FILE = harness.STACK_FILE


def fx(name: str) -> dict:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


# --- pods ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cluster,ns,fixture", [
    ("east", "travel-agency", "east-pods-travel-agency.json"),
    ("east", "travel-portal", "east-pods-travel-portal.json"),
    ("east", "travel-control", "east-pods-travel-control.json"),  # a classic (non-native) sidecar
    ("west", "travel-agency", "west-pods-travel-agency.json"),
])
def test_pods_with_sidecars_and_ready_pass(cluster, ns, fixture):
    c = verify.check_pods(cluster, ns, fx(fixture))
    assert (c.status, c.name, c.cluster) == (PASS, f"sidecars {ns}", cluster)
    assert "each with istio-proxy and Ready" in c.detail


def test_a_pod_without_istio_proxy_fails_and_is_named():
    c = verify.check_pods("west", "travel-agency", fx("west-pods-travel-agency-no-sidecar.json"))
    assert c.status == FAIL
    assert "1/2 without istio-proxy: travels-v3-7c9d8b6f5d-l5m6n" in c.detail
    assert "travels-v2" not in c.detail


def test_a_crashlooping_pod_fails_with_its_reason():
    c = verify.check_pods("east", "travel-portal", fx("east-pods-travel-portal-not-ready.json"))
    assert c.status == FAIL
    assert c.detail == "1/3 not Ready: voyages-v1-7c9d8b6f5d-c9d0e (voyages: CrashLoopBackOff)"


def test_pods_edge_cases():
    assert verify.check_pods("west", "travel-agency", {"items": []}).detail == "no pods in travel-agency"
    assert verify.check_pods("west", "travel-agency", None).status == FAIL
    pods = fx("west-pods-travel-agency-no-sidecar.json")
    pods["items"][1]["metadata"]["deletionTimestamp"] = "2026-01-01T10:05:00Z"  # terminating: ignored
    assert verify.check_pods("west", "travel-agency", pods).status == PASS
    # istio-proxy as a plain init container is no sidecar: it would have to exit for the app to start.
    pod = copy.deepcopy(fx("west-pods-travel-agency.json")["items"][0])
    for c in pod["spec"]["initContainers"]:
        c.pop("restartPolicy", None)
    assert not verify.has_sidecar(pod)
    unready = copy.deepcopy(fx("west-pods-travel-agency.json"))
    unready["items"][0]["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]
    unready["items"][0]["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ImagePullBackOff"}}
    assert "(travels: ImagePullBackOff)" in verify.check_pods("west", "travel-agency", unready).detail


# --- control plane -------------------------------------------------------------------------------


def test_istiod_ready():
    dep = fx("east-istiod-deployment.json")
    assert verify.check_istiod("east", dep) == verify.Check("istiod ready", "east", PASS, "1/1 replicas ready")
    dep["status"]["readyReplicas"] = 0
    dep["status"]["conditions"][0]["status"] = "False"
    c = verify.check_istiod("east", dep)
    assert c.status == FAIL and c.detail.startswith("0/1 replicas ready")
    assert "not installed" in verify.check_istiod("east", None).detail


def test_remote_secret_present_and_usable():
    c = verify.check_remote_secret("east", "west", fx("east-remote-secrets.json"))
    assert c.status == PASS
    assert c.detail == "istio-system/istio-remote-secret-west on east: kubeconfig for https://192.168.50.3:8443"
    assert "fixture-token" not in c.detail  # never print the token


def test_remote_secret_missing_or_broken_fails():
    c = verify.check_remote_secret("east", "west", fx("east-remote-secrets-missing-west.json"))
    assert c.status == FAIL and "holds key 'west'" in c.detail
    unlabelled = fx("east-remote-secrets.json")
    unlabelled["items"][0]["metadata"]["labels"] = {}
    assert verify.check_remote_secret("east", "west", unlabelled).status == FAIL

    broken = fx("east-remote-secrets.json")
    kc = yaml.safe_load(base64.b64decode(broken["items"][0]["data"]["west"]))
    del kc["current-context"]
    broken["items"][0]["data"]["west"] = base64.b64encode(yaml.safe_dump(kc).encode()).decode()
    c = verify.check_remote_secret("east", "west", broken)
    assert c.status == FAIL and "no current-context" in c.detail


def test_kubeconfig_problems():
    good = base64.b64decode(fx("east-remote-secrets.json")["items"][0]["data"]["west"]).decode()
    assert verify.kubeconfig_problem(good, "west") is None
    doc = yaml.safe_load(good)
    doc["clusters"][0]["cluster"]["server"] = "http://192.168.50.3:8443"
    assert "not an https URL" in verify.kubeconfig_problem(yaml.safe_dump(doc), "west")
    doc = yaml.safe_load(good)
    doc["users"] = []
    assert "names user 'west'" in verify.kubeconfig_problem(yaml.safe_dump(doc), "west")
    assert verify.kubeconfig_problem("- a list", "west") == "not a kubeconfig"


def test_remote_istiod_needs_service_and_the_primarys_root():
    svc, mine, theirs = fx("west-istiod-service.json"), fx("west-istio-ca-root-cert.json"), fx("east-istio-ca-root-cert.json")
    assert verify.check_remote_istiod("east", "west", svc, mine, theirs).status == PASS
    c = verify.check_remote_istiod("east", "west", svc, None, theirs)
    assert c.status == FAIL and "has not taken over west" in c.detail
    c = verify.check_remote_istiod("east", "west", svc, fx("other-mesh-istio-ca-root-cert.json"), theirs)
    assert c.status == FAIL and "differs" in c.detail
    assert verify.check_remote_istiod("east", "west", None, mine, theirs).status == FAIL
    assert "not readable" in verify.check_remote_istiod("east", "west", svc, mine, None).detail


def test_injector_webhook_path_and_ca_bundle():
    hooks, root = fx("west-mutatingwebhookconfigurations.json"), verify.root_cert(fx("east-istio-ca-root-cert.json"))
    c = verify.check_injector("west", "network2", hooks, root)
    assert c.status == PASS and c.detail == "4 webhook(s) call /inject/cluster/west/net/network2, caBundle holds the mesh root"

    wrong_net = verify.check_injector("west", "network9", hooks, root)
    assert wrong_net.status == FAIL and "expected /inject/cluster/west/net/network9" in wrong_net.detail

    other = verify.root_cert(fx("other-mesh-istio-ca-root-cert.json"))
    x509 = verify.check_injector("west", "network2", hooks, other)
    assert x509.status == FAIL and "x509: certificate signed by unknown authority" in x509.detail

    url_form = copy.deepcopy(hooks)
    for wh in url_form["items"][0]["webhooks"]:
        wh["clientConfig"] = {"url": "https://192.168.50.20:15017/inject/cluster/west/net/network2",
                              "caBundle": wh["clientConfig"]["caBundle"]}
    assert verify.check_injector("west", "network2", url_form, root).status == PASS

    no_bundle = copy.deepcopy(hooks)
    no_bundle["items"][0]["webhooks"][0]["clientConfig"]["caBundle"] = ""
    assert "has no caBundle" in verify.check_injector("west", "network2", no_bundle, root).detail
    assert verify.check_injector("west", "network2", {"items": []}, root).status == FAIL


# --- Kiali ---------------------------------------------------------------------------------------


def test_kiali_lists_every_remote():
    assert verify.check_kiali("east", ["west"], fx("east-kiali-config.json")).status == PASS
    c = verify.check_kiali("east", ["west"], fx("east-kiali-config-missing-west.json"))
    assert c.status == FAIL and "does not list west (lists east)" in c.detail
    closed = fx("east-kiali-config.json")
    closed["clusters"]["west"]["accessible"] = False
    assert "not accessible" in verify.check_kiali("east", ["west"], closed).detail
    as_list = {"clusters": list(fx("east-kiali-config.json")["clusters"].values())}
    assert verify.check_kiali("east", ["west"], as_list).status == PASS
    assert verify.check_kiali("east", ["west"], None).status == FAIL


# --- table, targets, response decoding -----------------------------------------------------------


def test_render_table_and_exit_code():
    checks = [verify.Check("istiod ready", "east", PASS, "1/1 replicas ready"),
              verify.Check("sidecars travel-agency", "west", FAIL, "1/2 without istio-proxy: x"),
              verify.Check("kiali clusters", "east", SKIP, "login needed")]
    lines = verify.render_table(checks).splitlines()
    assert lines[0].split() == ["CHECK", "CLUSTER", "RESULT", "DETAIL"]
    assert lines[2] == "sidecars travel-agency  west     FAIL    1/2 without istio-proxy: x"
    assert {line.index(status) for line, status in zip(lines[1:4], (PASS, FAIL, SKIP))} == {lines[0].index("RESULT")}
    assert lines[-1] == "3 checks: 1 passed, 1 failed, 1 skipped"
    assert verify.exit_code(checks) == 1
    assert verify.exit_code([checks[0], checks[2]]) == 0


def test_targets_from_the_stack_file():
    from components.config import parse

    cfg = parse(harness.stack_config())
    ts = verify.targets(cfg, environ={"KUBECONFIG": "/tmp/kc-a:/tmp/kc-b"})
    assert [(t.name, t.context, t.kubeconfig, t.network, t.primary) for t in ts] == [
        ("east", "east", "/tmp/kc-a", "network1", True), ("west", "west", "/tmp/kc-a", "network2", False)]
    assert ts[0].namespaces == ("travel-agency", "travel-portal", "travel-control")
    assert ts[1].namespaces == ("travel-agency",)

    raw = harness.stack_config()
    raw["remotes"][0] = {"name": "west", "network": "network2", "existing": {"context": "kind-west", "apiServer": "https://10.0.0.5:6443"},
                         "kubeconfig": "~/.kube/west"}
    ts = verify.targets(parse(raw), environ={})
    assert (ts[1].context, ts[1].kubeconfig, ts[1].namespaces) == ("kind-west", "~/.kube/west", ())
    assert ts[0].kubeconfig == "~/.kube/config"


def test_decode_response():
    assert verify.decode_response("/x", 404, b'{"kind":"Status"}') is None
    assert verify.decode_response("/x", 200, b'{"a": 1}') == {"a": 1}
    prom_error = b'{"status":"error","errorType":"bad_data","error":"parse error"}'
    assert verify.decode_response("/p", 400, prom_error)["errorType"] == "bad_data"
    with pytest.raises(verify.KubeError, match='HTTP 503: no endpoints available for service "prometheus"'):
        verify.decode_response("/p", 503, b'{"kind":"Status","message":"no endpoints available for service \\"prometheus\\""}')
    with pytest.raises(verify.KubeError, match="not JSON"):
        verify.decode_response("/x", 200, b"<html>")


# --- Prometheus polling with a fake clock ----------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_federation_poll_is_bounded_and_reports_the_last_answer():
    clock = FakeClock()
    answers = iter([RuntimeError("connection refused")] + [fx("east-prometheus-query-empty.json")] * 100)

    def get_json(url, params):
        assert url == "/base/api/v1/query" and params == {"query": 'sum(istio_requests_total{cluster="west"})'}
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    [c] = verify.check_federation(get_json, "/base/", "east", ["west"], timeout=35, interval=10, sleep=clock.sleep, clock=clock)
    assert c.status == FAIL and "after 35s (last: no series yet)" in c.detail
    assert sum(clock.sleeps) == 35 and clock.sleeps == [10, 10, 10, 5]


def test_federation_poll_stops_once_every_remote_passed():
    clock = FakeClock()
    responses = {"west": [fx("east-prometheus-query-empty.json"), fx("east-prometheus-query-west.json")],
                 "north": [fx("east-prometheus-query-west.json")]}
    asked = []

    def get_json(url, params):
        remote = params["query"].split('"')[1]
        asked.append(remote)
        return responses[remote].pop(0)

    checks = verify.check_federation(get_json, "/b", "east", ["west", "north"], timeout=300, interval=10,
                                     sleep=clock.sleep, clock=clock)
    assert [c.status for c in checks] == [PASS, PASS]
    assert checks[0].detail == 'sum(istio_requests_total{cluster="west"}) = 1234 on east'
    assert asked == ["west", "north", "west"] and clock.sleeps == [10]


# --- the whole command against a fake API server ---------------------------------------------------


class FakeApi:
    """GET path -> a recorded response (a fixture name, a dict, None for 404 or an exception)."""

    def __init__(self, routes: dict):
        self.routes = routes
        self.calls: list[tuple[str, dict]] = []

    def get(self, path, params=None):
        self.calls.append((path, dict(params or {})))
        if path not in self.routes:
            return None
        r = self.routes[path]
        if isinstance(r, Exception):
            raise r
        return fx(r) if isinstance(r, str) else r


PROM = "/api/v1/namespaces/istio-system/services/prometheus:9090/proxy/api/v1/query"
KIALI = "/api/v1/namespaces/istio-system/services/kiali:20001/proxy/kiali/api/config"


def healthy() -> dict[str, dict]:
    return {
        "east": {
            "/version": "version.json",
            "/apis/apps/v1/namespaces/istio-system/deployments/istiod": "east-istiod-deployment.json",
            "/api/v1/namespaces/istio-system/configmaps/istio-ca-root-cert": "east-istio-ca-root-cert.json",
            "/api/v1/namespaces/istio-system/secrets": "east-remote-secrets.json",
            "/api/v1/namespaces/travel-agency/pods": "east-pods-travel-agency.json",
            "/api/v1/namespaces/travel-portal/pods": "east-pods-travel-portal.json",
            "/api/v1/namespaces/travel-control/pods": "east-pods-travel-control.json",
            PROM: "east-prometheus-query-west.json",
            KIALI: "east-kiali-config.json",
        },
        "west": {
            "/version": "version.json",
            "/api/v1/namespaces/istio-system/services/istiod": "west-istiod-service.json",
            "/api/v1/namespaces/istio-system/configmaps/istio-ca-root-cert": "west-istio-ca-root-cert.json",
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations": "west-mutatingwebhookconfigurations.json",
            "/api/v1/namespaces/travel-agency/pods": "west-pods-travel-agency.json",
        },
    }


def run_verify(routes: dict[str, dict], *args: str, stack_file: str = STACK_FILE, broken: dict | None = None):
    apis = {name: FakeApi(r) for name, r in routes.items()}
    clock = FakeClock()

    def connector(target, timeout):
        assert timeout == verify.REQUEST_TIMEOUT
        if broken and target.name in broken:
            raise broken[target.name]
        return apis[target.name]

    out = io.StringIO()
    code = verify.main(["--stack-file", stack_file, *args], connector=connector, out=out, sleep=clock.sleep, clock=clock)
    rows = {(c.name, c.cluster): c for c in _parse_table(out.getvalue())}
    return code, rows, out.getvalue(), apis, clock


def _parse_table(text: str) -> list[verify.Check]:
    lines = text.splitlines()
    header = lines[0]
    cols = [header.index(h) for h in ("CLUSTER", "RESULT", "DETAIL")]
    out = []
    for line in lines[1:]:
        if not line.strip():
            break
        out.append(verify.Check(line[:cols[0]].strip(), line[cols[0]:cols[1]].strip(), line[cols[1]:cols[2]].strip(),
                                line[cols[2]:].strip()))
    return out


EXPECTED_ROWS = [
    ("kube API", "east"), ("kube API", "west"), ("istiod ready", "east"), ("remote secret", "west"),
    ("remote istiod", "west"), ("injector webhook", "west"), ("sidecars travel-agency", "east"),
    ("sidecars travel-portal", "east"), ("sidecars travel-control", "east"), ("sidecars travel-agency", "west"),
    ("federation", "west"), ("kiali clusters", "east"),
]


def test_healthy_mesh_passes_every_check():
    code, rows, text, apis, clock = run_verify(healthy())
    assert code == 0, text
    assert list(rows) == EXPECTED_ROWS
    assert all(c.status == PASS for c in rows.values()), text
    assert text.rstrip().endswith("12 checks: 12 passed, 0 failed, 0 skipped")
    assert clock.sleeps == []  # nothing to wait for
    east = apis["east"].calls
    assert ("/api/v1/namespaces/istio-system/secrets", {"labelSelector": "istio/multiCluster=true"}) in east
    assert (PROM, {"query": 'sum(istio_requests_total{cluster="west"})'}) in east


@pytest.mark.parametrize("cluster,path,fixture,row,needle", [
    ("west", "/api/v1/namespaces/travel-agency/pods", "west-pods-travel-agency-no-sidecar.json",
     ("sidecars travel-agency", "west"), "without istio-proxy: travels-v3"),
    ("east", "/api/v1/namespaces/travel-portal/pods", "east-pods-travel-portal-not-ready.json",
     ("sidecars travel-portal", "east"), "CrashLoopBackOff"),
    ("east", "/api/v1/namespaces/istio-system/secrets", "east-remote-secrets-missing-west.json",
     ("remote secret", "west"), "does not know west"),
    ("east", KIALI, "east-kiali-config-missing-west.json", ("kiali clusters", "east"), "does not list west"),
    ("west", "/api/v1/namespaces/istio-system/configmaps/istio-ca-root-cert", "other-mesh-istio-ca-root-cert.json",
     ("remote istiod", "west"), "differs"),
])
def test_each_failure_shows_in_its_row_and_the_exit_code(cluster, path, fixture, row, needle):
    routes = healthy()
    routes[cluster][path] = fixture
    code, rows, text, _, _ = run_verify(routes)
    assert code == 1
    assert rows[row].status == FAIL and needle in rows[row].detail, text
    assert [k for k, c in rows.items() if c.status != PASS] == [row]
    assert "11 passed, 1 failed" in text


def test_kiali_is_polled_until_it_lists_the_remote():
    routes = healthy()
    answers = iter([fx("east-kiali-config-missing-west.json"), fx("east-kiali-config.json")])

    class Api(FakeApi):
        def get(self, path, params=None):
            return next(answers) if path == KIALI else super().get(path, params)

    apis = {"east": Api(routes["east"]), "west": FakeApi(routes["west"])}
    clock = FakeClock()
    out = io.StringIO()
    code = verify.main(["--stack-file", STACK_FILE, "--kiali-wait", "60"], connector=lambda t, _: apis[t.name],
                       out=out, sleep=clock.sleep, clock=clock)
    assert code == 0 and clock.sleeps == [verify.POLL_INTERVAL]


def test_federation_waits_then_fails_within_the_bound():
    routes = healthy()
    routes["east"][PROM] = "east-prometheus-query-empty.json"
    code, rows, text, _, clock = run_verify(routes, "--prometheus-wait", "30")
    assert code == 1
    assert rows[("federation", "west")].status == FAIL
    assert "after 30s" in rows[("federation", "west")].detail
    assert sum(clock.sleeps) == 30


def test_unreachable_cluster_fails_once_and_skips_what_needs_it():
    code, rows, text, _, _ = run_verify(healthy(), broken={"west": RuntimeError("context 'west' not found")})
    assert code == 1
    assert rows[("kube API", "west")].status == FAIL and "context 'west' not found" in rows[("kube API", "west")].detail
    assert rows[("remote istiod", "west")].status == SKIP and rows[("injector webhook", "west")].status == SKIP
    assert rows[("sidecars travel-agency", "west")].status == SKIP
    assert rows[("remote secret", "west")].status == PASS  # read on the primary
    assert rows[("federation", "west")].status == PASS

    routes = healthy()
    routes["east"]["/version"] = ConnectionRefusedError("[Errno 111] Connection refused")
    code, rows, text, _, _ = run_verify(routes)
    assert code == 1
    assert "ConnectionRefusedError" in rows[("kube API", "east")].detail
    assert {rows[(n, c)].status for n, c in [("istiod ready", "east"), ("federation", "west"), ("kiali clusters", "east")]} == {SKIP}


def test_an_api_error_is_a_failed_row_not_a_crash():
    routes = healthy()
    routes["east"]["/apis/apps/v1/namespaces/istio-system/deployments/istiod"] = verify.KubeError("GET ...: HTTP 403: forbidden")
    code, rows, _, _, _ = run_verify(routes)
    assert code == 1 and "HTTP 403" in rows[("istiod ready", "east")].detail


def test_kiali_check_is_skipped_for_logins(tmp_path):
    raw = harness.stack_config()
    raw["kiali"] = {**raw.get("kiali", {}), "auth": "openid",
                    "openid": {"issuerUri": "https://idp.example.com/realms/mesh", "clientId": "kiali"}}
    path = tmp_path / "Pulumi.openid.yaml"
    path.write_text(yaml.safe_dump({"config": {f"kiali-multicluster:{k}": v for k, v in raw.items()}}))
    code, rows, _, apis, _ = run_verify(healthy(), stack_file=str(path))
    assert code == 0
    assert rows[("kiali clusters", "east")].status == SKIP
    assert KIALI not in [p for p, _ in apis["east"].calls]


def test_config_errors_exit_2(tmp_path):
    out = io.StringIO()
    assert verify.main(["--stack-file", str(tmp_path / "nope.yaml")], out=out) == 2
    assert "does not exist" in out.getvalue()
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  kiali-multicluster:mesh: {}\n")
    out = io.StringIO()
    assert verify.main(["--stack-file", str(bad)], out=out) == 2
    assert "invalid stack configuration" in out.getvalue()
    assert verify.stack_file("east-west").endswith("Pulumi.east-west.yaml")


# --- the Prometheus query against a real Prometheus ------------------------------------------------


def test_federated_query_against_a_real_prometheus():
    """A 'remote' Prometheus scrapes an exporter as job kubernetes-pods; the 'primary' federates it the
    way the observability component does (honor_labels, static label cluster); verify's query finds it."""
    need("prometheus")
    import promlocal

    metrics = textwrap.dedent("""\
        # TYPE istio_requests_total counter
        istio_requests_total{reporter="destination",destination_workload="travels-v2",response_code="200"} 42
        istio_requests_total{reporter="source",source_workload="travels-v3",response_code="200"} 8
        """)
    with promlocal.metrics_exporter(metrics) as exporter:
        remote_cfg = textwrap.dedent(f"""\
            global: {{scrape_interval: 1s, evaluation_interval: 1s}}
            scrape_configs:
              - job_name: kubernetes-pods
                static_configs: [{{targets: ["{exporter}"]}}]
            """)
        with promlocal.local_prometheus(remote_cfg) as remote:
            primary_cfg = textwrap.dedent(f"""\
                global: {{scrape_interval: 1s, evaluation_interval: 1s}}
                scrape_configs:
                  - job_name: federate-west
                    honor_labels: true
                    metrics_path: /federate
                    params: {{"match[]": ['{{job="kubernetes-pods"}}']}}
                    static_configs:
                      - targets: ["{remote.removeprefix('http://')}"]
                        labels: {{cluster: west}}
                """)
            with promlocal.local_prometheus(primary_cfg) as primary:
                [ok] = verify.check_federation(verify.urllib_get_json, primary, "east", ["west"], timeout=30, interval=0.5)
                assert ok.status == PASS, ok.detail
                assert ok.detail == 'sum(istio_requests_total{cluster="west"}) = 50 on east'

                [missing] = verify.check_federation(verify.urllib_get_json, primary, "east", ["north"], timeout=1.5, interval=0.5)
                assert missing.status == FAIL and "not > 0 on east after 1.5s (last: no series yet)" in missing.detail

                # The remote itself has no cluster label: querying it directly finds nothing.
                assert verify.vector_total(verify.prom_query(verify.urllib_get_json, remote, verify.federation_query("west"))) == 0
                with pytest.raises(verify.PromError, match="bad_data"):
                    verify.prom_query(verify.urllib_get_json, primary, "sum(")
    with pytest.raises(verify.PromError, match="not found"):
        verify.prom_query(lambda url, params: None, "http://127.0.0.1:1", "up")


# --- the thin kubernetes-client layer against a local HTTP API server --------------------------------


class FakeApiServer:
    """A loopback HTTP server answering GETs from fixtures, recording path and query of each request."""

    def __init__(self, routes: dict):
        import threading
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                u = urllib.parse.urlparse(self.path)
                path = urllib.parse.unquote(u.path)
                outer.requests.append((path, dict(urllib.parse.parse_qsl(u.query))))
                route = routes.get(path)
                if callable(route):
                    route = route()
                status, body = (200, fx(route)) if isinstance(route, str) else (route or (404, {"kind": "Status", "code": 404}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client that timed out and hung up: expected
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def write_kubeconfig(path, servers: dict[str, str]) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": next(iter(servers)),
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in servers.items()],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in servers],
        "users": [{"name": n, "user": {"token": f"token-{n}"}} for n in servers],
    }))


def test_kube_api_layer_with_the_real_client(tmp_path):
    import time

    srv = FakeApiServer({
        "/version": "version.json",
        "/api/v1/namespaces/istio-system/secrets": "east-remote-secrets.json",
        PROM: (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}),
        KIALI: (503, {"kind": "Status", "status": "Failure", "message": 'no endpoints available for service "kiali"'}),
        "/slow": lambda: time.sleep(1.2) or "version.json",
    })
    try:
        kc = tmp_path / "config"
        write_kubeconfig(kc, {"east": srv.url})
        api = verify.connect(verify.Target("east", "east", str(kc), "network1", True, ()), timeout=0.5)
        assert api.get("/version")["gitVersion"] == "v1.34.0"
        assert api.get("/api/v1/namespaces/istio-system/secrets", {"labelSelector": "istio/multiCluster=true"})["kind"] == "SecretList"
        assert srv.requests[-1] == ("/api/v1/namespaces/istio-system/secrets", {"labelSelector": "istio/multiCluster=true"})
        assert api.get("/api/v1/namespaces/istio-system/services/istiod") is None  # 404
        with pytest.raises(verify.PromError, match="bad_data: parse error"):
            verify.prom_query(api.get, verify.PROMETHEUS_BASE, 'sum(istio_requests_total{cluster="west"})')
        assert srv.requests[-1] == (PROM, {"query": 'sum(istio_requests_total{cluster="west"})'})
        with pytest.raises(verify.KubeError, match='HTTP 503: no endpoints available for service "kiali"'):
            api.get(KIALI)
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 (urllib3 raises its own timeout types)
            api.get("/slow")
        assert time.monotonic() - started < 1.0  # no retries: one request, one timeout
        with pytest.raises(Exception, match="west"):
            verify.connect(verify.Target("west", "west", str(kc), "network2", False, ()))
    finally:
        srv.close()


def test_main_end_to_end_against_local_api_servers(tmp_path, monkeypatch):
    servers = {name: FakeApiServer(routes) for name, routes in healthy().items()}
    try:
        kc = tmp_path / "config"
        write_kubeconfig(kc, {name: s.url for name, s in servers.items()})
        monkeypatch.setenv("KUBECONFIG", str(kc))
        out = io.StringIO()
        code = verify.main(["--stack-file", STACK_FILE, "--prometheus-wait", "1", "--kiali-wait", "1"], out=out)
        assert code == 0, out.getvalue()
        assert out.getvalue().rstrip().endswith("12 checks: 12 passed, 0 failed, 0 skipped")
        assert ("/api/v1/namespaces/travel-agency/pods", {}) in servers["west"].requests
    finally:
        for s in servers.values():
            s.close()
