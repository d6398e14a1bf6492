"""Kubernetes Events for pod victims, posted to a real HTTP(S) server on loopback standing in for
the API server: the request it receives is judged (path, token, the Event's body), and so is what
the daemon's loop sees (posting never waits for the server, a server that is down is a log line,
a burst is cut at the limit).
"""
from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bpfoom import daemon
from conftest import require
from daemon_process import WAIT_S
from fake_api import fake_api

POD_UID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
KILL = {"policy": "largest_leaf", "constraint": "memcg", "pid": 4242, "comm": "java",
        "uid": 1000, "oom_score_adj": 1000,
        "victim_cgroup": f"/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/"
                         f"kubepods-besteffort-pod{POD_UID.replace('-', '_')}.slice/cri-containerd-1.scope",
        "victim_unit": "cri-containerd-1.scope", "victim_pod_uid": POD_UID,
        "victim_namespace": "shop", "victim_pod": "web-0"}


class Lines:
    """The daemon's log, as (level, event, fields)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        self.seen.append((level, event, fields))

    def events(self) -> list[str]:
        return [event for _, event, _ in self.seen]


def test_a_pod_victim_becomes_a_warning_event_on_the_pod(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    log = Lines()
    with fake_api() as api:
        server = daemon.ApiServer(f"http://127.0.0.1:{api.port}", str(token))
        events = daemon.KubeEvents(server, log, node="node-7")
        events.post(KILL)
        request = api.next()
        events.close(WAIT_S)
    assert request["path"] == "/api/v1/namespaces/shop/events"
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    assert (body["apiVersion"], body["kind"], body["type"], body["reason"]) == \
        ("v1", "Event", "Warning", "OOMKilledByBpfoom")
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "shop",
                                      "name": "web-0", "uid": POD_UID}
    assert body["metadata"] == {"generateName": "web-0.", "namespace": "shop"}
    assert body["source"] == {"component": "bpfoom", "host": "node-7"}
    assert "largest_leaf" in body["message"] and "pid 4242" in body["message"]
    assert KILL["victim_cgroup"] in body["message"]
    assert body["count"] == 1 and body["firstTimestamp"] == body["lastTimestamp"]
    assert log.events() == ["kube_event_posted"]
    assert events.posted == 1


def test_a_victim_outside_any_pod_posts_nothing(tmp_path):
    log = Lines()
    with fake_api() as api:
        events = daemon.KubeEvents(daemon.ApiServer(f"http://127.0.0.1:{api.port}"), log, node="n")
        events.post({key: value for key, value in KILL.items()
                     if key not in ("victim_pod", "victim_namespace")})
        events.post(KILL)  # the one request the server sees
        assert api.next()["body"]["involvedObject"]["name"] == "web-0"
        events.close(WAIT_S)
        assert api.requests.empty()
    assert events.posted == 1


def test_posting_never_waits_for_the_server(tmp_path):
    log = Lines()
    with fake_api() as api:
        api.gate = threading.Event()  # the server holds its answer until the test lets it go
        events = daemon.KubeEvents(daemon.ApiServer(f"http://127.0.0.1:{api.port}"), log, node="n")
        events.post(KILL)  # returns although the server has not answered
        api.next()  # the request reached the server, which still holds its answer
        events.reap()
        assert events.posted == 0 and events.due() is not None
        api.gate.set()
        events.close(WAIT_S)
    assert events.posted == 1 and events.due() is None


def test_a_server_that_is_down_is_a_log_line_and_posting_goes_on(tmp_path):
    with fake_api() as api:
        port = api.port  # closed below: nothing listens there any more
    log = Lines()
    events = daemon.KubeEvents(daemon.ApiServer(f"http://127.0.0.1:{port}"), log, node="n")
    events.post(KILL)
    events.post(KILL)
    events.close(WAIT_S)
    assert events.failed == 2 and events.posted == 0
    level, event, fields = log.seen[0]
    assert (level, event) == ("warning", "kube_event_failed")
    assert "Connection refused" in fields["error"] and fields["pod"] == "web-0"


def test_an_error_answer_is_logged_with_the_status(tmp_path):
    log = Lines()
    with fake_api() as api:
        api.forbid = True
        events = daemon.KubeEvents(daemon.ApiServer(f"http://127.0.0.1:{api.port}"), log, node="n")
        events.post(KILL)
        events.close(WAIT_S)
    level, event, fields = log.seen[0]
    assert (level, event) == ("warning", "kube_event_failed")
    assert fields["error"].startswith("the API server answered 403 Forbidden")
    assert 'cannot create resource \\"events\\"' in fields["error"]


def test_a_burst_of_kills_is_cut_at_the_limit(tmp_path):
    now = [1000.0]
    log = Lines()
    with fake_api() as api:
        events = daemon.KubeEvents(daemon.ApiServer(f"http://127.0.0.1:{api.port}"), log,
                                   node="n", clock=lambda: now[0])
        for _ in range(13):
            events.post(KILL)
        received = [api.next() for _ in range(10)]
        deadline = time.monotonic() + WAIT_S
        while events.posted < 10:  # the outcomes arrive from the worker thread
            assert time.monotonic() < deadline, "the posts' outcomes did not arrive"
            time.sleep(0.05)
            events.reap()
        assert events.skipped == 3
        assert log.events().count("kube_event_skipped") == 1  # once per run of skips
        now[0] += 1.0  # one second refills one post
        events.post(KILL)
        received.append(api.next())
        events.close(WAIT_S)
    assert len(received) == 11 and api.requests.empty()
    resumed = [fields for _, event, fields in log.seen if event == "kube_events_resumed"]
    assert resumed == [{"skipped": 3}]


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    require(shutil.which("openssl") is not None, "openssl (to make the fake API server's certificate)")
    cert, key = tmp_path / "ca.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_in_cluster_config_reaches_the_api_server_over_tls_with_the_pods_token(tmp_path):
    cert, key = _self_signed(tmp_path)
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    shutil.copy(cert, account / "ca.crt")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    log = Lines()
    with fake_api(tls) as api:
        server = daemon.ApiServer.in_cluster({"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                       "KUBERNETES_SERVICE_PORT": str(api.port)}, str(account))
        assert server.server == f"https://127.0.0.1:{api.port}"
        events = daemon.KubeEvents(server, log, node="n")
        events.post(KILL)
        request = api.next()
        events.close(WAIT_S)
    assert request["headers"]["Authorization"] == "Bearer pod-token"
    assert request["body"]["involvedObject"]["name"] == "web-0"
    assert log.events() == ["kube_event_posted"]


def test_in_cluster_outside_a_pod_says_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="KUBERNETES_SERVICE_HOST"):
        daemon.ApiServer.in_cluster({}, str(tmp_path))
    with pytest.raises(ValueError, match="automountServiceAccountToken: true"):
        daemon.ApiServer.in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1",
                              "KUBERNETES_SERVICE_PORT": "443"}, str(tmp_path))


def bpfoom_check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", "run", "--check", str(config)],
                          capture_output=True, text=True, timeout=120)


def test_the_config_takes_in_cluster_or_a_server(tmp_path):
    config = tmp_path / "policies.toml"
    for value in ('"in-cluster"', '"off"',
                  '{ server = "https://10.0.0.1:6443", token_file = "/t", ca_file = "/c" }'):
        config.write_text(f'[daemon]\nkubernetes_events = {value}\n'
                          '[[attach]]\npolicy = "largest_leaf"\n')
        done = bpfoom_check(config)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("value, said", [
    ('"on"', 'must be "off", "in-cluster" or a table'),
    ('{ server = "10.0.0.1:6443" }', "must be the API server's URL"),
    ('{ server = "https://h", token = "/t" }', "unknown key 'token'"),
    ('{ server = "https://h", ca_file = "ca.crt" }', "ca_file = 'ca.crt' must be an absolute path"),
])
def test_the_config_refuses_a_bad_kubernetes_events_value(tmp_path, value, said):
    config = tmp_path / "policies.toml"
    config.write_text(f'[daemon]\nkubernetes_events = {value}\n[[attach]]\npolicy = "largest_leaf"\n')
    done = bpfoom_check(config)
    assert done.returncode != 0 and said in done.stderr, done.stderr
