"""The rendered primary Prometheus config against a real Prometheus (Debian's prometheus/promtool).

1. ``promtool check config`` on the primary's rendered ``prometheus.yml``. Debian's build has no
   Kubernetes service discovery ("field kubernetes_sd_configs not found"), so the check runs on a
   copy without those jobs, and the test asserts separately that those jobs are the addon's, unchanged.
2. A real federation on loopback: a leaf Prometheus scrapes a tiny exporter under job
   ``kubernetes-pods``; a second Prometheus runs the generated ``federate-west`` job with only its
   target rewritten to the leaf; the series must arrive labelled ``cluster="west"``.
"""

import os
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest
import yaml
from test_prometheus import WEST_PROM, fixture_docs, fixture_prometheus_yml, jobs_of

from components import manifests as M
from components import prometheus as P
from promlocal import local_prometheus, metrics_exporter, query, wait_for
from tools import need

MOUNT = "/etc/config"  # where the addon Deployment mounts the ConfigMap
FEDERATION_TIMEOUT = 60  # s; measured ~10-25 s: Prometheus waits 5 s before its first scrape, then up to one 15 s interval


def rendered_primary_config_map() -> dict:
    return M.select(P.addon_docs(fixture_docs(), federate={"west": WEST_PROM}), "ConfigMap", "prometheus")[0]


def mount_config_map(cm: dict, directory) -> str:
    """Write every key as the kubelet would; return prometheus.yml with /etc/config pointing there."""
    directory.mkdir()
    for key, value in cm["data"].items():
        (directory / key).write_text(value)
    return cm["data"]["prometheus.yml"].replace(f"{MOUNT}/", f"{directory}/")


def promtool(config_path) -> subprocess.CompletedProcess:
    return subprocess.run([need("promtool"), "check", "config", str(config_path)],
                          capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rendered_primary_config(tmp_path):
    need("promtool")
    text = mount_config_map(rendered_primary_config_map(), tmp_path / "config")
    config = yaml.safe_load(text)

    # The jobs Debian's promtool cannot parse are exactly the addon's.
    sd_jobs = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" in j]
    addon_sd_jobs = [j for j in yaml.safe_load(fixture_prometheus_yml())["scrape_configs"] if "kubernetes_sd_configs" in j]
    assert sd_jobs == addon_sd_jobs and sd_jobs, "the kubernetes_sd_configs jobs must be the addon's, unchanged"

    full = tmp_path / "full.yml"
    full.write_text(text)
    out = promtool(full)
    assert out.returncode != 0
    problems = [line for line in (out.stdout + out.stderr).splitlines() if line.strip().startswith("line ")]
    assert problems and all("field kubernetes_sd_configs not found" in p for p in problems), out.stdout + out.stderr

    config["scrape_configs"] = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" not in j]
    assert "federate-west" in {j["job_name"] for j in config["scrape_configs"]}
    checked = tmp_path / "checked.yml"
    checked.write_text(yaml.safe_dump(config, sort_keys=False))
    out = promtool(checked)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is valid prometheus config file syntax" in out.stdout
    assert f"SUCCESS: {len(config['rule_files'])} rule files found" in out.stdout


def test_promtool_would_catch_a_broken_federation_job(tmp_path):
    """Control: the check above is not vacuous."""
    need("promtool")
    bad = P.federation_job("west", WEST_PROM)
    bad["honor_labels"] = "maybe"
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"scrape_configs": [bad]}))
    out = promtool(path)
    assert out.returncode == 1 and "maybe" in out.stdout + out.stderr


EXPORTED = """\
# HELP istio_requests_total Total requests.
# TYPE istio_requests_total counter
istio_requests_total{source_workload="travels-v2",destination_service_name="hotels",response_code="200"} 7
"""


def test_federation_on_loopback_brings_the_remote_series_labelled_with_its_cluster():
    need("prometheus")
    job = jobs_of(rendered_primary_config_map()["data"]["prometheus.yml"])["federate-west"]
    assert job == P.federation_job("west", WEST_PROM)

    with metrics_exporter(EXPORTED) as exporter:
        # The leaf (west): the pods job plus a second job on the same target that must NOT be federated.
        leaf_config = yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "kubernetes-pods", "static_configs": [{"targets": [exporter]}]},
                {"job_name": "kubernetes-service-endpoints", "static_configs": [{"targets": [exporter]}]},
            ],
        })
        with local_prometheus(leaf_config) as leaf:
            wait_for(lambda: len(query(leaf, "istio_requests_total")) == 2, timeout=30)

            # The primary (east): the generated job verbatim, only the target rewritten to the leaf.
            federating = dict(job, static_configs=[dict(job["static_configs"][0], targets=[leaf.removeprefix("http://")])])
            assert {k: v for k, v in federating.items() if k != "static_configs"} == {k: v for k, v in job.items() if k != "static_configs"}
            assert federating["static_configs"][0]["labels"] == {"cluster": "west"}
            with local_prometheus(yaml.safe_dump({"scrape_configs": [federating]})) as primary:
                series = wait_for(lambda: query(primary, 'istio_requests_total{cluster="west"}'), timeout=FEDERATION_TIMEOUT)
                assert len(series) == 1, series
                labels, value = series[0]["metric"], series[0]["value"][1]
                assert labels == {
                    "__name__": "istio_requests_total",
                    "cluster": "west",  # the static label of the federation job
                    "job": "kubernetes-pods",  # honor_labels keeps the leaf's job and instance
                    "instance": exporter,
                    "source_workload": "travels-v2",
                    "destination_service_name": "hotels",
                    "response_code": "200",
                }
                assert value == "7"
                # match[] selected only the pods job.
                assert query(primary, 'istio_requests_total{job="kubernetes-service-endpoints"}') == []
                up = query(primary, 'up{job="federate-west"}')
                assert [s["value"][1] for s in up] == ["1"]


def _scratch_dirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("kmc-prom-")}


def test_local_prometheus_stops_and_cleans_up():
    need("prometheus")
    before = _scratch_dirs()
    with local_prometheus("scrape_configs: []\n") as base:
        assert query(base, "vector(1)")[0]["value"][1] == "1"
        assert len(_scratch_dirs() - before) == 1
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base}/-/ready", timeout=2)
    assert _scratch_dirs() == before


def test_a_prometheus_that_cannot_start_fails_fast_with_its_log():
    need("prometheus")
    before = _scratch_dirs()
    with pytest.raises(RuntimeError, match="did not become ready(.|\n)*bogus"), local_prometheus("scrape_configs: [{job_name: x, bogus: 1}]\n"):
        pass
    assert _scratch_dirs() == before
