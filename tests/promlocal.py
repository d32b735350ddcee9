"""Real Prometheus on loopback for tests: a tiny exporter, throwaway servers, a query helper.

Every helper is bounded in time and cleans up after itself: each Prometheus gets its own temp
directory (config, TSDB, log), a free loopback port, is waited on until ``/-/ready``, and is
stopped by its PID (SIGTERM, then SIGKILL) before the directory is removed. Callers skip or fail
first with ``tools.need("prometheus")``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds until /-/ready
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
HTTP_TIMEOUT = 5.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def metrics_exporter(text: str | Callable[[], str]) -> Iterator[str]:
    """Serve ``text`` (or what a callable returns) at ``/metrics``; yields ``"127.0.0.1:PORT"``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = (text() if callable(text) else text).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)  # binds port 0: no race for a free port
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_TIMEOUT)


def _get(url: str, timeout: float = HTTP_TIMEOUT) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _stop(proc: subprocess.Popen) -> None:
    """Stop one process by its PID: SIGTERM, wait, then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "<no log>"


@contextlib.contextmanager
def local_prometheus(config_yaml: str, *, binary: str | None = None, start_timeout: float = START_TIMEOUT,
                     extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Run Prometheus with ``config_yaml`` on a free loopback port; yields ``"http://127.0.0.1:PORT"``.

    Raises RuntimeError (with the log tail) if it exits or is not ready within ``start_timeout``.
    """
    exe = binary or shutil.which("prometheus")
    if not exe:
        raise RuntimeError("prometheus is not installed (tests call tools.need('prometheus') first)")
    tmp = tempfile.mkdtemp(prefix="kmc-prom-")
    proc: subprocess.Popen | None = None
    try:
        config_path = os.path.join(tmp, "prometheus.yml")
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(config_yaml)
        log_path = os.path.join(tmp, "prometheus.log")
        for _attempt in range(3):  # a port picked free can be taken before Prometheus binds it
            port = free_port()
            base = f"http://{HOST}:{port}"
            with open(log_path, "w", encoding="utf-8") as log:
                proc = subprocess.Popen(
                    [exe, f"--config.file={config_path}", f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
                     f"--web.listen-address={HOST}:{port}", "--log.level=warn", *extra_args],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
                    start_new_session=True,
                )
            deadline = time.monotonic() + start_timeout
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(OSError):
                    if _get(f"{base}/-/ready", timeout=1.0)[0] == 200:
                        break
                time.sleep(0.1)
            else:
                log_text = _tail(log_path)
                _stop(proc)
                if "address already in use" in log_text:
                    continue
                raise RuntimeError(f"prometheus did not become ready on {base} within {start_timeout:.0f}s:\n{log_text}")
            yield base
            return
        raise RuntimeError("prometheus could not bind a free loopback port in 3 attempts")
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def query(base_url: str, promql: str) -> list:
    """An instant query; returns ``data.result`` (a list of ``{"metric": {...}, "value": [t, "v"]}``)."""
    url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    status, body = _get(url)
    doc = json.loads(body or b"{}")
    if status != 200 or doc.get("status") != "success":
        raise RuntimeError(f"query {promql!r} on {base_url} failed ({status}): {doc.get('error', body[:200])}")
    return doc["data"]["result"]


def targets(base_url: str) -> list:
    """The active scrape targets (``/api/v1/targets``), for diagnostics."""
    status, body = _get(f"{base_url}/api/v1/targets")
    return json.loads(body)["data"]["activeTargets"] if status == 200 else []


def wait_for(fn: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Call ``fn`` until it returns something truthy and return that; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except Exception as e:  # a server still starting: keep the error for the message
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout:.0f}s; last result: {last!r}")
        time.sleep(interval)
