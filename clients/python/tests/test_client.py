"""The Python package against the all-in-one (see conftest.py)."""

import asyncio
import base64
import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

import avxrm


def test_flow_through_client(seeded):
    server, app_id = seeded
    with avxrm.Client(server) as c:
        q = c.queues.get("Default")
        assert isinstance(q, avxrm.Queue) and q.maximum_allowed_worker_instances == 10
        job = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=3,
                            labels={"via": "python"}, environment_variables={"SLEEP": "1"})
        assert isinstance(job, avxrm.Job) and job.id.startswith("job-") and job.status == "submitted"
        done = c.jobs.wait(job.id, timeout=120)
        assert done.status == "succeeded" and done.final
        assert [i.status for i in done.instances if i.role == "worker"] == ["succeeded"] * 3
        assert done.condition("Admitted").status == "True"
        assert job.id in [j.id for j in c.jobs.list(label="via=python")]
        assert c.jobs.get(job.id).finished_at is not None
        assert c.jobs.logs(job.id, "worker", 2) == "hello from worker 2\n"
        assert c.jobs.logs(job.id, "worker", 2, offset=6) == "from worker 2\n"
        assert c.jobs.logs(job.id, "worker", 2, offset=1000) == ""
        assert c.jobs.logs(job.id, "worker", 2, tail=1) == "hello from worker 2\n"
        # A failed job: wait returns it with the failing instance named.
        bad = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=2,
                            environment_variables={"FAIL_INDEX": "1"})
        failed = c.jobs.wait(bad.id, timeout=120)
        assert failed.status == "failed"
        assert "worker 1 exited with code 2" in failed.warnings
        # A wait that outlasts its timeout says so, also while no event comes.
        slow = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=1,
                             environment_variables={"SLEEP": "30"})
        with pytest.raises(TimeoutError):
            c.jobs.wait(slow.id, timeout=2)
        c.jobs.cancel(slow.id)
        assert c.jobs.wait(slow.id, timeout=60).status == "cancelled"


def test_pending_jobs_in_order(seeded):
    """A queue's waiting jobs, first in line first, and each job's place in them."""
    server, app_id = seeded
    with avxrm.Client(server) as c:
        c.queues.create(name="Narrow", maximum_allowed_worker_instances=1)
        submit = lambda **kw: c.jobs.submit(queue_id="Narrow", application={"id": app_id}, worker_instances=1,
                                            environment_variables={"SLEEP": "30"}, **kw).id
        jobs = [submit(), submit(), submit(priority=5)]
        try:
            deadline = time.time() + 60
            while True:
                pending = list(c.queues.pending("Narrow"))
                if len(pending) == 2 and all(p.status == "pending" for p in pending):
                    break
                assert time.time() < deadline, f"never two pending jobs: {pending}"
                time.sleep(0.2)
            # The higher priority first; each says why it waits.
            assert all(isinstance(p, avxrm.PendingJob) for p in pending)
            assert [(p.id, p.queue_position) for p in pending] == [(jobs[2], 1), (jobs[1], 2)]
            assert pending[0].message == "queue Narrow allows 1 worker instance, 1 in use, job needs 1"
            assert pending[0].estimate_basis
            # A job's own record gives the scheduler's latest snapshot, which
            # may be a few seconds behind the pending list's count.
            deadline = time.time() + 30
            while True:
                j, listed = c.jobs.get(jobs[1]), list(c.queues.pending("Narrow"))
                if j.queue_position == 2 and j.estimate_basis == listed[1].estimate_basis:
                    break
                assert time.time() < deadline, f"the job says {j.queue_position}, {j.estimate_basis}; the list {listed[1]}"
                time.sleep(0.2)
            assert c.jobs.get(jobs[0]).queue_position is None
        finally:
            for id in jobs:
                c.jobs.cancel(id)
            for id in jobs:
                c.jobs.wait(id, timeout=60)
        c.queues.delete("Narrow")


def test_job_array(seeded):
    """An array submitted, listed, its jobs read, followed to its end; a
    second one cancelled; the async client waits for one too."""
    server, app_id = seeded
    job = {"queue_id": "Default", "application": {"id": app_id}, "worker_instances": 1,
           "environment_variables": {"SLEEP": "0.2"}, "name": "py-sweep"}
    with avxrm.Client(server) as c:
        a = c.arrays.submit(job, count=4, max_parallel=2)
        assert isinstance(a, avxrm.JobArray) and a.id.startswith("arr-") and a.count == 4 and a.max_parallel == 2
        done = c.arrays.wait(a.id, timeout=120, interval=0.2)
        assert done.final and done.counts == {"succeeded": 4} and done.failed_indexes == []
        assert sorted(j.name for j in c.arrays.jobs(a.id)) == [f"py-sweep-{i}" for i in range(4)]
        assert a.id in [x.id for x in c.arrays.list()]
        slow = c.arrays.submit(dict(job, environment_variables={"SLEEP": "30"}, name="py-slow"), count=3, max_parallel=1)
        with pytest.raises(TimeoutError):
            c.arrays.wait(slow.id, timeout=1, interval=0.2)
        assert c.arrays.cancel(slow.id).cancel_requested
        ended = c.arrays.wait(slow.id, timeout=120, interval=0.2)
        assert ended.counts.get("cancelled", 0) >= 1 and ended.final

    async def via_async():
        async with avxrm.AsyncClient(server) as c:
            a = await c.arrays.submit(job, count=2)
            return await c.arrays.wait(a.id, timeout=120, interval=0.2)
    assert asyncio.run(via_async()).counts == {"succeeded": 2}


def test_artifacts_up_and_down(seeded):
    server, app_id = seeded
    with avxrm.Client(server) as c:
        job = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=1)
        scenario = c.jobs.put_artifact(job.id, "scenarios/s-1/my dir/scenario.xosc", "<OpenSCENARIO/>")
        assert isinstance(scenario, avxrm.Artifact) and scenario.sample_id == "s-1" and scenario.path == "my dir/scenario.xosc"
        road = bytes(range(256)) * 10
        asset = c.jobs.put_artifact(job.id, "assets/roads/a.xodr", road, declaration="road-network")
        assert asset.declaration == "road-network" and asset.sha256 == hashlib.sha256(road).hexdigest()
        assert c.jobs.get_artifact(job.id, "scenarios/s-1/my dir/scenario.xosc") == b"<OpenSCENARIO/>"
        assert c.jobs.get_artifact(job.id, "assets/roads/a.xodr", declaration="road-network") == road
        assert sorted(a.path for a in c.jobs.artifacts(job.id)) == ["my dir/scenario.xosc", "roads/a.xodr"]
        with pytest.raises(avxrm.NotFoundError):
            c.jobs.get_artifact(job.id, "assets/roads/a.xodr")  # common asset data: none uploaded
        with pytest.raises(ValueError):
            c.jobs.put_artifact(job.id, "scenario.xosc", b"x")
        with pytest.raises(ValueError):
            c.jobs.get_artifact(job.id, "scenarios/s-1/a.xosc", declaration="road-network")

    async def aget():
        async with avxrm.AsyncClient(server) as c:
            await c.jobs.put_artifact(job.id, "assets/common.txt", b"common")
            return await c.jobs.get_artifact(job.id, "assets/common.txt")

    assert asyncio.run(aget()) == b"common"


def test_put_artifact_sends_its_digest(seeded):
    """An upload carries its sha-256 as Content-Digest, which the server
    checks before it keeps the file; bytes that do not match it are refused."""
    server, app_id = seeded
    with avxrm.Client(server) as c:
        job = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=1)
        sent = []
        c._http.event_hooks["request"] = [lambda r: sent.append(r.headers.get("Content-Digest"))]
        c.jobs.put_artifact(job.id, "assets/a.txt", b"checked")
        want = "sha-256=:" + base64.b64encode(hashlib.sha256(b"checked").digest()).decode() + ":"
        assert sent == [want]
        c._http.event_hooks["request"] = []
        r = c._http.put(f"/jobs/{job.id}/artifacts/assets/b.txt", content=b"changed", headers={"Content-Digest": want})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "Content-Digest", r.text
        assert [a.path for a in c.jobs.artifacts(job.id)] == ["a.txt"]


def test_export_round_trip_and_delete(seeded, tmp_path):
    """An export of a sample: waited for, downloaded and checked, then
    deleted before it expires; a wait on a deleted export ends NotFoundError."""
    server, app_id = seeded
    with avxrm.Client(server) as c:
        job = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=1)
        c.jobs.put_artifact(job.id, "scenarios/s-7/scenario.xosc", "<OpenSCENARIO/>")
        x = c.exports.create(job.id, samples=["s-7"])
        x = c.exports.wait(x.id, timeout=60)
        assert x.status == "ready", x
        manifest = c.exports.download(x.id, str(tmp_path / "s7.zip"))
        assert any("scenario.xosc" in f.get("path", "") for f in manifest.get("files", [])), manifest
        y = c.exports.create(job.id, samples=["s-7"])
        assert [e.id for e in c.exports.list(job.id, limit=1)] == [x.id, y.id]  # oldest first, a page of one at a time
        c.exports.delete(x.id)
        with pytest.raises(avxrm.NotFoundError):
            c.exports.get(x.id)
        assert [e.id for e in c.exports.list(job.id)] == [y.id]
        with pytest.raises(avxrm.NotFoundError):
            c.exports.wait(x.id, timeout=10)


def test_logs_as_bytes_give_the_offset(seeded):
    """A log is bytes: as_bytes returns them, so len() is the offset that reads
    only what came since (a text's length counts characters: 'é' is 2 bytes,
    a byte that is not UTF-8 becomes U+FFFD)."""
    server, _ = seeded
    with avxrm.Client(server) as c:
        job = c.jobs.submit(queue_id="Default", worker_instances=1, application={"name": "bytes", "version": "1", "image": "local"},
                            command=["/bin/sh", "-c", "printf '\\303\\251\\377x\\n'"])
        assert c.jobs.wait(job.id, timeout=60).status == "succeeded"
        raw = c.jobs.logs(job.id, as_bytes=True)
        assert raw == b"\xc3\xa9\xffx\n", raw
        assert c.jobs.logs(job.id) == "\u00e9\ufffdx\n"
        assert c.jobs.logs(job.id, offset=len(raw[:3]), as_bytes=True) == b"x\n"
        assert c.jobs.logs(job.id, offset=len(raw), as_bytes=True) == b""


def test_deployment_replicas_and_logs(seeded):
    server, app_id = seeded
    with avxrm.Client(server) as c:
        d = c.deployments.create(name="viz", application_id=app_id, queue_id="Default", replicas=1,
                                 environment_variables={"SLEEP": "300"})
        deadline = time.time() + 60
        while True:
            d = c.deployments.get("viz")
            reps = d.status.get("replicas") or []
            if reps and reps[0]["state"] == "running":
                break
            assert time.time() < deadline, f"replica never running: {d.status}"
            time.sleep(0.2)
        assert reps[0]["slot"] == 0 and reps[0]["restarts"] == 0
        # Running is said once the process has started, which may be before
        # its first line is written: on a busy machine the log was still empty.
        while c.deployments.logs("viz") == "":
            assert time.time() < deadline, "the running replica wrote nothing"
            time.sleep(0.2)
        assert c.deployments.logs("viz") == "hello from replica 0\n"
        assert c.deployments.logs("viz", offset=len("hello ")) == "from replica 0\n"
        with pytest.raises(avxrm.NotFoundError):
            c.deployments.logs("viz", replica=1)
        c.deployments.delete("viz")


def test_server_version(server):
    with avxrm.Client(server) as c:
        v = c.server_version()
    assert v["version"] and v["go_version"].startswith("go") and "/" in v["platform"]

    async def aget():
        async with avxrm.AsyncClient(server) as c:
            return await c.server_version()

    assert asyncio.run(aget()) == v
    # The server is the binary under test: its build is the one the binary reports of itself.
    binary = os.environ.get("AVXRM_BIN")
    if binary:
        out = subprocess.run([binary, "version", "--client", "-o", "json"], check=True, capture_output=True, text=True)
        assert json.loads(out.stdout)["client"] == v


def test_whoami(seeded):
    # Auth is off on the test server: every request is an administrator's, on every queue.
    server, _ = seeded
    with avxrm.Client(server) as c:
        me = c.whoami()
        assert (me.authenticated_by, me.access, me.expires_at) == ("none", "admin", None)
        default = me.may("Default")
        assert default and default.read and default.submit and default.id.startswith("q-")
        one = c.whoami(queue="Default")
        assert [q.name for q in one.queues] == ["Default"]
        with pytest.raises(avxrm.NotFoundError):
            c.whoami(queue="nothing")

    async def aget():
        async with avxrm.AsyncClient(server) as c:
            return await c.whoami(queue=default.id)

    assert [q.name for q in asyncio.run(aget()).queues] == ["Default"]


def test_flow_through_async_client(seeded):
    server, app_id = seeded

    async def flow():
        async with avxrm.AsyncClient(server) as c:
            q = await c.queues.get("Default")
            assert q.name == "Default"
            job = await c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=2)
            done = await c.jobs.wait(job.id, timeout=120)
            assert done.status == "succeeded"
            ids = [j.id async for j in c.jobs.list(queue_id="Default")]
            assert job.id in ids
            with pytest.raises(avxrm.NotFoundError):
                await c.jobs.get("job-does-not-exist")
            return done

    done = asyncio.run(flow())
    assert isinstance(done, avxrm.Job)


def test_errors_are_typed(seeded):
    server, app_id = seeded
    with avxrm.Client(server) as c:
        with pytest.raises(avxrm.NotFoundError) as e:
            c.jobs.get("job-does-not-exist")
        assert e.value.status == 404 and e.value.problem.status == 404
        with pytest.raises(avxrm.ValidationError) as e:
            c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=0)
        assert any(f.field.endswith("worker_instances") for f in e.value.errors), e.value.errors
        with pytest.raises(avxrm.ConflictError):
            c.queues.create(name="Default")
        with pytest.raises(avxrm.ValidationError) as e:
            c.queues.create(name="bad", no_such_field=1)


class CuttableProxy:
    """A TCP proxy to the server whose open connections the test can cut."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            if getattr(self, "refusing", False):
                c.close()
                continue
            s = socket.create_connection(self.target)
            with self.lock:
                self.conns += [c, s]
                self.accepted += 1
            for a, b in ((c, s), (s, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def refuse(self, on=True):
        """While on, connections are closed as soon as they come (the server seems down)."""
        self.refusing = on

    def cut(self):
        with self.lock:
            for x in self.conns:
                try:
                    x.shutdown(socket.SHUT_RDWR)
                    x.close()
                except OSError:
                    pass
            self.conns = []

    def close(self):
        self.cut()
        self.listener.close()


def test_events_watch_resumes_after_a_disconnect(seeded):
    server, app_id = seeded
    u = urlparse(server)
    proxy = CuttableProxy((u.hostname, u.port))
    disconnects = []
    try:
        with avxrm.Client(server) as direct, avxrm.Client(proxy.url) as c:
            job = direct.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=1,
                                     environment_variables={"SLEEP": "2"})
            got = []
            for ev in c.events.watch(job_id=job.id, after=0, on_disconnect=lambda e, n: disconnects.append(e)):
                got.append(ev)
                if len(got) == 1:
                    proxy.cut()  # the stream drops after the first event
                if ev.type in ("rm.job.succeeded", "rm.job.failed"):
                    break
            # The same events, read in one go from the start, for comparison.
            want = []
            for ev in direct.events.watch(job_id=job.id, after=0):
                want.append(ev)
                if ev.type == got[-1].type:
                    break
    finally:
        proxy.close()
    assert disconnects, "the stream was never cut"
    assert proxy.accepted >= 2
    assert [e.id for e in got] == [e.id for e in want], "events lost or repeated across the reconnect"
    assert got[0].type == "rm.job.submitted" and got[-1].type == "rm.job.succeeded"
    assert all(e.subject == job.id for e in got) and got[-1].job().status == "succeeded"


def test_static_token_is_sent_as_bearer(seeded):
    server, _ = seeded
    sent = []
    with avxrm.Client(server, token="static-token") as c:
        c._http.event_hooks["request"] = [lambda r: sent.append(r.headers.get("Authorization"))]
        c.queues.get("Default")  # auth is off on the all-in-one: the header is harmless
    assert sent == ["Bearer static-token"]


class LoopbackServer:
    """An HTTP server on a free loopback port, serving handler in a thread."""

    def __init__(self, handler):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that logs nothing and answers with whole bodies."""

    def log_message(self, *a):
        pass

    def send(self, code, body, content_type="application/json", headers=()):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class Issuer(LoopbackServer):
    """An OIDC issuer in-process: discovery and a token endpoint with the
    password and refresh grants for alice/secret; tokens valid expires_in s."""

    def __init__(self, expires_in):
        issuer = self
        self.n, self.grants, self.expires_in = 0, [], expires_in

        class Handler(QuietHandler):
            def do_GET(self):
                self.send(200, {"issuer": issuer.url, "token_endpoint": issuer.url + "/token"})

            def do_POST(self):
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
                g = form.get("grant_type")
                issuer.grants.append(g)
                ok = form.get("client_id") == "avxrm" and (
                    (g == "password" and form.get("username") == "alice" and form.get("password") == "secret")
                    or (g == "refresh_token" and form.get("refresh_token") == "rt-%d" % issuer.n))
                if not ok:
                    return self.send(400, {"error": "invalid_grant"})
                issuer.n += 1
                self.send(200, {"access_token": "at-%d" % issuer.n, "refresh_token": "rt-%d" % issuer.n,
                                "token_type": "Bearer", "expires_in": issuer.expires_in})

        super().__init__(Handler)



def test_token_provider_password_then_refresh(seeded):
    server, _ = seeded
    issuer = Issuer(expires_in=10)  # within the provider's 30s leeway: every use refreshes
    try:
        tp = avxrm.TokenProvider(issuer.url, "avxrm", username="alice", password="secret")
        sent = []
        with avxrm.Client(server, token=tp) as c:
            c._http.event_hooks["request"] = [lambda r: sent.append(r.headers.get("Authorization"))]
            c.queues.get("Default")  # auth is off on the all-in-one: the header is harmless
            c.queues.get("Default")
        assert sent == ["Bearer at-1", "Bearer at-2"]
        assert issuer.grants == ["password", "refresh_token"]

        async def via_async():
            async with avxrm.AsyncClient(server, token=tp) as c:
                await c.queues.get("Default")
        asyncio.run(via_async())
        assert issuer.grants[-1] == "refresh_token" and tp.access_token == "at-3"

        with pytest.raises(avxrm.AuthError):
            avxrm.TokenProvider(issuer.url, "avxrm", username="alice", password="wrong").token()

        # Given only the server: the issuer its metadata names (RFC 9728).
        meta = Metadata(issuer.url)
        try:
            tp = avxrm.TokenProvider.for_server(meta.url, username="alice", password="secret")
            assert tp.issuer == issuer.url and tp.client_id == "avxrm" and tp.token().startswith("at-")
        finally:
            meta.close()
        # The all-in-one runs with auth off: it names none, and says so.
        with pytest.raises(avxrm.AuthError, match="auth is off there"):
            avxrm.TokenProvider.for_server(server, username="alice", password="secret")
    finally:
        issuer.close()


class Metadata(LoopbackServer):
    """An HTTP server that serves only protected resource metadata naming ``issuer``."""

    def __init__(self, issuer):
        class Handler(QuietHandler):
            def do_GET(self):
                if self.path == "/.well-known/oauth-protected-resource":
                    self.send(200, {"resource": "x", "authorization_servers": [issuer]})
                else:
                    self.send(404, b"")

        super().__init__(Handler)


class Refuser(LoopbackServer):
    """An HTTP server that answers the first ``refusals`` requests (and every
    DELETE) 503 with Retry-After: 1, the others 201; it records each request."""

    def __init__(self, refusals):
        srv = self
        self.refusals, self.seen = refusals, []

        class Handler(QuietHandler):
            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                srv.seen.append((self.command, self.headers.get("Idempotency-Key"), time.monotonic()))
                if len(srv.seen) <= srv.refusals or self.command == "DELETE":
                    self.send(503, {"title": "Service Unavailable", "status": 503, "detail": "the store cannot be reached"},
                              "application/problem+json", [("Retry-After", "1")])
                else:
                    self.send(201, {"id": "q-1", "name": "a"})

            do_GET = do_POST = do_DELETE = _answer

        super().__init__(Handler)


class StreamLog(QuietHandler):
    """GET of the resource at path answers record (with its status from
    states, one per read); GET /events sends an id alone and keep-alives, or
    closes at once when close_stream. Requests are logged as (path, Last-Event-ID)."""

    log: list = []
    states: list = []
    record: dict = {}
    close_stream = False
    events = b""  # sent after the id

    def do_GET(self):
        self.log.append((self.path.split("?")[0], self.headers.get("Last-Event-ID")))
        if not self.path.startswith("/api/resources/v1/events"):
            status = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return self.send(200, dict(self.record, status=status))
        if self.close_stream:
            return self.send(200, b"", "text/event-stream")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            self.wfile.write(b"id: 7\n\n" + self.events)
            for _ in range(20):
                self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass


def test_export_wait_times_out():
    """exports.wait(timeout=…) of an export that never becomes ready raises
    TimeoutError (the sync client once waited for ever), while the stream
    sends only keep-alives."""

    class Handler(StreamLog):
        log = []
        states = ["requested"]
        record = {"id": "exp-1"}

    srv = LoopbackServer(Handler)
    result = {}

    def wait():
        with avxrm.Client(srv.url, retries=0) as c:
            try:
                c.exports.wait("exp-1", timeout=1)
            except TimeoutError as e:
                result["err"] = str(e)

    try:
        t = threading.Thread(target=wait, daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), "exports.wait(timeout=1) did not return within 20 s"
        assert result.get("err") == "scenario export exp-1 is still requested"
    finally:
        srv.close()


def test_unavailable_is_retried_after_retry_after():
    r = Refuser(refusals=1)
    try:
        with avxrm.Client(r.url) as c:
            c._request("POST", "/queues", json={"name": "a"})
            assert [m for m, _, _ in r.seen] == ["POST", "POST"]
            assert r.seen[0][1] and r.seen[0][1] == r.seen[1][1], "the retry must carry the same Idempotency-Key"
            assert r.seen[1][2] - r.seen[0][2] >= 0.9, "tried again before the Retry-After of 1 s"

            r.seen.clear()
            with pytest.raises(avxrm.ServerError) as e:
                c._request("DELETE", "/queues/a")
            assert e.value.status == 503 and len(r.seen) == 1

        r.seen.clear()
        r.refusals = 100
        with avxrm.Client(r.url, retries=1) as c:
            with pytest.raises(avxrm.ServerError):
                c._request("GET", "/queues/a")
            assert len(r.seen) == 2

        r.seen.clear()
        r.refusals = 1

        async def run():
            async with avxrm.AsyncClient(r.url) as ac:
                await ac._request("GET", "/queues/a")

        asyncio.run(run())
        assert len(r.seen) == 2
    finally:
        r.close()


def test_ids_are_one_path_segment(seeded):
    """An id or name is sent as one escaped path segment: a slash, a
    question mark, a space or '..' in it cannot reach another resource or
    add a query; None and '' are refused before anything is sent."""
    server, app_id = seeded
    with avxrm.Client(server) as c:
        # Once, jobs.get("../queues/Default") returned the queue as a Job.
        for bad in ("../queues/Default", "..", ".", "x?limit=1", "x#y", "a/b", "a b", "é"):
            with pytest.raises(avxrm.NotFoundError):
                c.jobs.get(bad)
        with pytest.raises(avxrm.NotFoundError):
            c.queues.delete("../jobs/job-x")
        with pytest.raises(avxrm.NotFoundError):
            list(c.queues.pending("../jobs"))
        with pytest.raises(avxrm.NotFoundError):
            c.runtime_configs.get("Default/application", "sim")
        with pytest.raises(avxrm.NotFoundError):
            c.jobs.put_artifact("job-x/..", "assets/a", b"x")
        for call in (lambda: c.jobs.get(None), lambda: c.queues.update(None, description="x"),
                     lambda: c.arrays.get(None), lambda: c.exports.create(None),
                     lambda: c.jobs.put_artifact("job-x", None, b"x")):
            with pytest.raises(TypeError):
                call()
        for call in (lambda: c.jobs.get(""), lambda: c.queues.delete(""), lambda: c.jobs.cancel(""),
                     lambda: c.jobs.logs("job-x", ""), lambda: c.exports.get(""),
                     lambda: c.jobs.put_artifact("job-x", "assets/../x", b"x")):
            with pytest.raises(ValueError):
                call()
        # A name with characters a URL escapes still names its resource.
        c.queues.create(name="q.with_dots-1")
        assert c.queues.get("q.with_dots-1").name == "q.with_dots-1"
        c.queues.delete("q.with_dots-1")


def within(seconds, call):
    """What call() returns or raises, run in a thread; AssertionError if it
    has not ended after seconds (a hang)."""
    out = {}

    def run():
        try:
            out["value"] = call()
        except BaseException as e:  # noqa: B902 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def free_port_url():
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "http://127.0.0.1:%d" % s.getsockname()[1]


def test_server_down_names_the_url():
    url = free_port_url()
    with avxrm.Client(url, retries=1) as c:
        with pytest.raises(avxrm.UnreachableError, match=re.escape(url + "/api/resources/v1/queues/Default")) as e:
            c.queues.get("Default")
        assert "cannot connect" in str(e.value) and e.value.attempts == 2
        assert isinstance(e.value, httpx.TransportError)  # as the package raised before
        with pytest.raises(avxrm.UnreachableError, match=re.escape("DELETE " + url)):
            c.queues.delete("x")

    async def run():
        async with avxrm.AsyncClient(url, retries=0) as ac:
            await ac.jobs.get("job-1")

    with pytest.raises(avxrm.UnreachableError, match=re.escape(url + "/api/resources/v1/jobs/job-1")):
        asyncio.run(run())
    # Not a URL: said before anything is sent.
    for bad in ("localhost:8080", "ftp://h", "http://"):
        with pytest.raises(ValueError, match="want a URL such as"):
            avxrm.Client(bad)
    for view, root in (("http://127.0.0.1:8080/ui", "http://127.0.0.1:8080"), ("https://rm.example/rm/ui/jobs/", "https://rm.example/rm")):
        with pytest.raises(ValueError, match=re.escape(f"that is a URL of the server's web view, not its root; give {root}")):
            avxrm.Client(view)
    with pytest.raises(ValueError):
        avxrm.Client(url, retries=-1)  # once: UnboundLocalError on the first request


def test_server_that_never_answers_times_out():
    """A server that takes the connection and never answers is not waited
    for beyond the timeout; by default connecting may take 10 s and each
    part of the answer 30 s, as in the Go SDK."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: [held.append(listener.accept()) for _ in iter(int, 1)], daemon=True).start()
    url = "http://127.0.0.1:%d" % listener.getsockname()[1]
    try:
        with avxrm.Client(url) as c:
            assert (c._http.timeout.connect, c._http.timeout.read) == (10.0, 30.0)
        with avxrm.Client(url, timeout=0.5) as c:
            for call in (lambda: c.jobs.get("job-1"), lambda: c.queues.create(name="x")):
                with pytest.raises(avxrm.RequestTimeoutError, match="did not answer in time") as e:
                    within(10, call)
                assert isinstance(e.value, TimeoutError) and url in str(e.value)

        async def run():
            async with avxrm.AsyncClient(url, timeout=0.5) as ac:
                await ac.jobs.get("job-1")

        with pytest.raises(avxrm.RequestTimeoutError):
            within(10, lambda: asyncio.run(run()))
    finally:
        listener.close()
        for conn, _ in held:
            conn.close()


class WebPage(QuietHandler):
    """Another web server: a page for every request, 404 under /missing, 502 under /bad."""

    def do_GET(self):
        code = 404 if "missing" in self.path else 502 if "bad" in self.path else 200
        self.send(code, b"<html><body><h1>Welcome to nginx!</h1></body></html>", "text/html")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET


def test_a_web_page_is_not_the_api():
    """A server URL that names another web server gets NotAPIError naming
    it, not a JSON decoding error, a page's 404 taken for a missing job, or
    a page returned as a log, an artifact or an event stream read forever."""
    srv = LoopbackServer(WebPage)
    try:
        with avxrm.Client(srv.url) as c:
            for call in (lambda: c.queues.get("Default"), lambda: list(c.jobs.list()), lambda: c.jobs.get("missing"),
                         lambda: c.queues.create(name="x"), lambda: c.server_version(), lambda: c.jobs.logs("job-1"),
                         lambda: c.jobs.get_artifact("job-1", "assets/a"), lambda: c.jobs.wait("job-1", timeout=5),
                         lambda: next(iter(c.events.watch(after=0)))):
                with pytest.raises(avxrm.NotAPIError) as e:
                    within(10, call)
                assert str(e.value).startswith(f"the server at {srv.url} answered ")
                assert str(e.value).endswith("with text/html, not the Resource Manager's API")
                assert not isinstance(e.value, avxrm.NotFoundError)
            # A proxy's error page above 500 still says the API is unavailable, without the page.
            with pytest.raises(avxrm.ServerError) as e:
                c.jobs.get("bad")
            assert e.value.status == 502 and "<html>" not in str(e.value)

        async def run():
            async with avxrm.AsyncClient(srv.url) as ac:
                await ac.queues.get("missing")

        with pytest.raises(avxrm.NotAPIError):
            asyncio.run(run())
    finally:
        srv.close()


def test_wait_timeouts_alike_in_both_clients(seeded):
    """wait(timeout=0 or below) returns a job that has ended, and raises the
    builtin TimeoutError saying the job's status for one that has not: in
    the async client too (which once raised an empty asyncio TimeoutError
    even for an ended job)."""
    server, app_id = seeded
    with avxrm.Client(server) as c:
        done = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=1,
                             environment_variables={"SLEEP": "0"})
        c.jobs.wait(done.id, timeout=60)
        slow = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=1,
                             environment_variables={"SLEEP": "30"})
        try:
            for timeout in (0, -1):
                assert c.jobs.wait(done.id, timeout=timeout).status == "succeeded"
            for timeout in (0, -1, 0.5):
                with pytest.raises(TimeoutError, match=f"^job {slow.id} is still [a-z]+$"):
                    c.jobs.wait(slow.id, timeout=timeout)

            async def run():
                async with avxrm.AsyncClient(server) as ac:
                    for timeout in (0, -1):
                        assert (await ac.jobs.wait(done.id, timeout=timeout)).status == "succeeded"
                    for timeout in (0, -1, 0.5):
                        with pytest.raises(TimeoutError, match=f"^job {slow.id} is still [a-z]+$"):
                            await ac.jobs.wait(slow.id, timeout=timeout)
                    with pytest.raises(ValueError):
                        await ac.arrays.wait("arr-x", interval=0)

            asyncio.run(run())
            with pytest.raises(ValueError):
                c.arrays.wait("arr-x", interval=-1)  # once: time.sleep's ValueError after a request
        finally:
            c.jobs.cancel(slow.id)


def test_arguments_of_the_wrong_kind(seeded):
    """Arguments of the wrong kind get the API's field errors or a clear
    TypeError/ValueError, never a wrong request or an internal error."""
    server, app_id = seeded
    with avxrm.Client(server) as c:
        job = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=1,
                            environment_variables={"SLEEP": "0"})
        with pytest.raises(TypeError, match="want bytes or str"):
            c.jobs.put_artifact(job.id, "assets/five", 5)  # once: five zero bytes uploaded
        assert [a.path for a in c.jobs.artifacts(job.id)] == []
        body = {"queue_id": "Default", "application": {"id": app_id}, "worker_instances": 1}
        for count in (None, "5"):  # once: TypeError from the client's timeout arithmetic
            with pytest.raises(avxrm.ValidationError) as e:
                c.arrays.submit(body, count=count)
            assert any(f.field == "count" for f in e.value.errors), e.value.errors
        # One type as a str, not its letters.
        first = next(iter(c.events.watch(job_id=job.id, types="rm.job.submitted", after=0)))
        assert first.type == "rm.job.submitted" and first.subject == job.id
        with pytest.raises(ValueError):
            c.queues.create(name="nan", maximum_allowed_worker_instances=float("nan"))  # NaN is not JSON
        c.jobs.wait(job.id, timeout=60)


class NewerServer(QuietHandler):
    """A server of a later API version: fields this package does not know,
    nulls where it knows a list, a map or a number."""

    ANSWERS = {
        "/api/resources/v1/jobs/job-1": {
            "id": "job-1", "status": "running", "version": None, "conditions": None, "warnings": None,
            "instances": [{"role": "worker", "index": 0, "status": "running", "gpu": "a100"}, None],
            "attempts": None, "application": None, "preemptible": True, "budget": {"cpu_hours": 3}},
        "/api/resources/v1/job-arrays/arr-1": {"id": "arr-1", "count": 2, "counts": None, "failed_indexes": None},
        "/api/resources/v1/whoami": {"authenticated_by": "oidc", "roles": None, "groups": None, "queues": None},
    }

    def do_GET(self):
        self.send(200, self.ANSWERS[self.path.split("?")[0]])


def test_models_read_a_newer_server():
    srv = LoopbackServer(NewerServer)
    try:
        with avxrm.Client(srv.url) as c:
            job = c.jobs.get("job-1")  # once: condition() and final raised TypeError on the nulls
            assert job.condition("Admitted") is None and job.warnings == [] and job.version == 0
            assert [i.raw["gpu"] for i in job.instances] == ["a100"] and job.application == {}
            assert job.raw["budget"] == {"cpu_hours": 3} and not job.final
            arr = c.arrays.get("arr-1")
            assert arr.ended == 0 and not arr.final and arr.failed_indexes == []
            me = c.whoami()
            assert me.may("Default") is None and me.roles == []
    finally:
        srv.close()


def scenario_zip():
    """A zip as a scenario export makes it: one scenario and manifest.json."""
    import io
    import zipfile

    data = b"<OpenSCENARIO/>" * 200
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("s-0/a.xosc", data)
        z.writestr("manifest.json", json.dumps({"files": [
            {"path": "s-0/a.xosc", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}))
    return buf.getvalue()


class ExportServer(QuietHandler):
    """Serves export exp-1 (the zip's first connection is cut halfway),
    exp-html (a web page in place of the zip) and exp-wrong (a sha256 its
    zip does not have); it records each download's Range."""

    ZIP = scenario_zip()
    ranges = []
    cuts = [1]  # how many downloads of exp-1 to cut yet

    def do_GET(self):
        id = self.path.split("/")[5]
        if not self.path.endswith("/download"):
            sha = "0" * 64 if id == "exp-wrong" else hashlib.sha256(self.ZIP).hexdigest()
            return self.send(200, {"id": id, "status": "ready", "sha256": sha})
        rng = self.headers.get("Range")
        self.ranges.append(rng)
        if id == "exp-html":
            return self.send(200, b"<html>Welcome</html>", "text/html")
        start = int(rng[len("bytes="):-1]) if rng else 0
        if start >= len(self.ZIP):
            return self.send(416, {"title": "Requested Range Not Satisfiable", "status": 416},
                             "application/problem+json")
        body = self.ZIP[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if id == "exp-1" and self.cuts[0] > 0:
            self.cuts[0] -= 1
            self.wfile.write(body[:len(body) // 2])  # then the connection is lost
            self.close_connection = True
            return
        self.wfile.write(body)


def test_export_download_resumes_and_leaves_no_bad_part(tmp_path):
    """download() resumes a lost connection with Range; a .part that turns
    out wrong is removed (once it was kept, and every later download
    appended to it and failed); a web page is not written as the zip."""
    srv = LoopbackServer(ExportServer)
    ranges = ExportServer.ranges
    try:
        with avxrm.Client(srv.url) as c:
            out = str(tmp_path / "a.zip")
            manifest = c.exports.download("exp-1", out)
            assert manifest["files"][0]["path"] == "s-0/a.xosc"
            assert open(out, "rb").read() == ExportServer.ZIP and not os.path.exists(out + ".part")
            half = (len(ExportServer.ZIP)) // 2
            assert ranges == [None, f"bytes={half}-"]

            # A .part of something else: the resumed zip fails, so it is fetched whole.
            ranges.clear()
            out = str(tmp_path / "b.zip")
            with open(out + ".part", "wb") as f:
                f.write(b"not the start of this zip")
            c.exports.download("exp-1", out)
            assert open(out, "rb").read() == ExportServer.ZIP and ranges == ["bytes=25-", None]

            out = str(tmp_path / "c.zip")
            with pytest.raises(ValueError, match="sha256"):
                c.exports.download("exp-wrong", out)
            assert not os.path.exists(out + ".part") and not os.path.exists(out)
            with pytest.raises(avxrm.NotAPIError):
                c.exports.download("exp-html", out)
            assert not os.path.exists(out + ".part")

        async def run():
            async with avxrm.AsyncClient(srv.url) as ac:
                ranges.clear()
                return await ac.exports.download("exp-1", str(tmp_path / "d.zip"))

        assert asyncio.run(run()) == manifest and len(ranges) == 1
    finally:
        srv.close()


class SlowCreate(QuietHandler):
    """A server whose first POST stores nothing yet and loses its answer (the
    connection closes), whose next POST with that key is told the first
    still holds it (409, as the API answers), and whose third gets 201."""

    posts = []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.posts.append(self.headers.get("Idempotency-Key"))
        if len(self.posts) == 1:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif len(self.posts) == 2:
            self.send(409, {"title": "Conflict", "status": 409,
                            "detail": "a request with this Idempotency-Key is still in progress; retry later",
                            "errors": [{"field": "Idempotency-Key", "message": "request in progress"}]},
                      "application/problem+json")
        else:
            self.send(201, {"id": "q-1", "name": "a"})


def test_retry_waits_for_its_own_first_attempt():
    """A create whose answer was lost is retried with its key; the API's 409
    for a key still held by that first attempt is retried too, not raised
    as a ConflictError (a duplicate name, to the caller)."""
    srv = LoopbackServer(SlowCreate)
    try:
        with avxrm.Client(srv.url) as c:
            assert c.queues.create(name="a").id == "q-1"
        assert len(SlowCreate.posts) == 3 and len(set(SlowCreate.posts)) == 1
        # The same 409 to a first attempt is the caller's (its own key in use): raised.
        SlowCreate.posts[:] = ["earlier"]
        with avxrm.Client(srv.url) as c:
            with pytest.raises(avxrm.ConflictError):
                c.queues.create(name="a")
    finally:
        srv.close()


def test_token_provider_errors_name_the_url():
    """TokenProvider's failures are the package's errors naming the URL
    asked, not raw httpx errors, JSONDecodeError or KeyError."""
    url = free_port_url()
    with pytest.raises(avxrm.UnreachableError, match=re.escape(url + "/.well-known/oauth-protected-resource")):
        avxrm.TokenProvider.for_server(url, username="alice", password="secret")
    with pytest.raises(avxrm.UnreachableError, match=re.escape(url + "/.well-known/openid-configuration")):
        avxrm.TokenProvider(url, "avxrm", username="alice", password="secret").token()
    page = LoopbackServer(WebPage)
    try:
        with pytest.raises(avxrm.NotAPIError, match=re.escape(f"the server at {page.url} answered 200")):
            avxrm.TokenProvider.for_server(page.url, username="alice", password="secret")
        with pytest.raises(avxrm.ServerError):
            avxrm.TokenProvider.for_server(page.url + "/bad", username="alice", password="secret")
        with pytest.raises(avxrm.AuthError, match="not an OpenID Connect discovery document"):
            avxrm.TokenProvider(page.url, "avxrm", username="alice", password="secret").token()
        with pytest.raises(avxrm.AuthError, match="not an OpenID Connect discovery document"):
            asyncio.run(avxrm.TokenProvider(page.url, "avxrm", username="alice", password="secret").atoken())
    finally:
        page.close()


def test_a_malformed_event_ends_watch():
    """An event the client cannot read ends watch with MalformedEventError
    naming the last event read, after the events before it: reconnecting would
    only get it again (as the Go SDK's Watch ends there)."""
    bodies = [b'id: 1\nevent: rm.queue.created\ndata: {"type": "rm.queue.created", "subject": "q-1", "data": {}}\n\n'
              b'id: 2\nevent: rm.queue.created\ndata: {not json\n\n',
              b'id: x\nevent: rm.queue.created\ndata: {}\n\n']

    class Handler(QuietHandler):
        def do_GET(self):
            self.send(200, bodies[int(self.headers.get("Last-Event-ID") or 0) and 1 or 0], "text/event-stream")

    srv = LoopbackServer(Handler)
    try:
        with avxrm.Client(srv.url) as c:
            got = []
            with pytest.raises(avxrm.MalformedEventError) as e:
                for ev in c.events.watch(after=0):
                    got.append(ev.id)
            assert got == [1] and e.value.after == 1 and "event 2" in str(e.value)
            with pytest.raises(avxrm.MalformedEventError) as e:
                for ev in c.events.watch(after=1):
                    pass
            assert e.value.after == 1 and "'x'" in str(e.value)

        async def via_async():
            async with avxrm.AsyncClient(srv.url) as ac:
                async for _ in ac.events.watch(after=0):
                    pass

        with pytest.raises(avxrm.MalformedEventError):
            asyncio.run(via_async())
    finally:
        srv.close()


def test_watch_of_new_events_resumes_where_it_started(seeded):
    """A watch of new events only (after=None) that loses its connection before
    its first event resumes from where the stream stood when it opened (the
    server's first message, an id alone): an event stored while it was away
    comes first. It used to reconnect without Last-Event-ID and lose it."""
    server, _ = seeded
    u = urlparse(server)
    proxy = CuttableProxy((u.hostname, u.port))
    opened = threading.Event()
    disconnected = threading.Event()
    got = []

    def watch():
        with avxrm.Client(proxy.url) as c:
            c._http.event_hooks["response"] = [lambda r: opened.set()]
            for ev in c.events.watch(types=["rm.queue.created"], on_disconnect=lambda e, n: disconnected.set()):
                got.append(ev.data.get("name"))
                break

    t = threading.Thread(target=watch, daemon=True)
    try:
        t.start()
        assert opened.wait(20), "the watch never opened its stream"
        time.sleep(0.5)  # the id that follows the headers is read
        proxy.refuse()
        proxy.cut()
        assert disconnected.wait(20), "the watch never saw its connection cut"
        with avxrm.Client(server) as direct:
            direct.queues.create(name="made-in-the-gap", maximum_allowed_worker_instances=1)
            proxy.refuse(False)
            direct.queues.create(name="made-after", maximum_allowed_worker_instances=1)
        t.join(20)
        assert not t.is_alive(), "the watch got no event within 20 s"
    finally:
        proxy.close()
    assert got == ["made-in-the-gap"], got


@pytest.mark.parametrize("kind", ["job", "export"])
def test_waits_follow_from_the_streams_end(kind):
    """jobs.wait and exports.wait open the stream without Last-Event-ID and
    read the record once it is open: an end between the first read and the
    stream's start is seen, and the stored events are not replayed (a wait
    from 0 replayed every export's end ever stored)."""
    path, record, first, final = {
        "job": ("/api/resources/v1/jobs/job-1", {"id": "job-1", "version": 1, "queue_id": "q-1"}, "pending", "succeeded"),
        "export": ("/api/resources/v1/scenario-exports/exp-1", {"id": "exp-1"}, "requested", "ready"),
    }[kind]

    class Handler(StreamLog):
        log = []
        states = [first, final]

    Handler.record = record
    srv = LoopbackServer(Handler)

    def sync():
        with avxrm.Client(srv.url) as c:
            return (c.jobs.wait if kind == "job" else c.exports.wait)(record["id"], timeout=10)

    async def via_async():
        async with avxrm.AsyncClient(srv.url) as c:
            return await (c.jobs.wait if kind == "job" else c.exports.wait)(record["id"], timeout=10)

    try:
        for run in (sync, lambda: asyncio.run(via_async())):
            Handler.log.clear()
            Handler.states[:] = [first, final]
            assert run().status == final
            assert Handler.log == [(path, None), ("/api/resources/v1/events", None), (path, None)], Handler.log
    finally:
        srv.close()


def test_wait_does_not_overrun_its_timeout_while_reconnecting():
    """A wait whose stream keeps closing ends at its timeout: the backoff
    before a reconnect (up to 5 s) is cut short at the deadline."""

    class Handler(StreamLog):
        log = []
        states = ["pending"]
        record = {"id": "job-1", "version": 1, "queue_id": "q-1"}
        close_stream = True

    srv = LoopbackServer(Handler)
    try:
        with avxrm.Client(srv.url) as c:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                c.jobs.wait("job-1", timeout=1.6)
            took = time.monotonic() - start
        # The backoffs (0.1, 0.2, 0.4, 0.8, 1.6 s less up to a quarter) ran
        # to 2.3–3.1 s before; now the last is cut at 1.6 s.
        assert took < 2.2, f"jobs.wait(timeout=1.6) took {took:.2f} s"
        assert len([p for p, _ in Handler.log if p.endswith("/events")]) >= 3
    finally:
        srv.close()


def test_export_wait_ends_when_the_export_is_deleted():
    """A wait on an export deleted meanwhile (DELETE, expiry, its job's
    deletion) ends with NotFoundError; it waited for ever, as only ready and
    failed ended it."""

    class Handler(StreamLog):
        log = []
        states = ["building"]
        record = {"id": "exp-1"}
        events = (b'id: 8\nevent: rm.export.deleted\ndata: {"type": "rm.export.deleted", "subject": "exp-1", '
                  b'"data": {"id": "exp-1", "status": "building"}}\n\n')

    srv = LoopbackServer(Handler)

    async def via_async():
        async with avxrm.AsyncClient(srv.url) as c:
            await c.exports.wait("exp-1", timeout=10)

    try:
        with avxrm.Client(srv.url) as c:
            with pytest.raises(avxrm.NotFoundError, match="exp-1 was deleted"):
                c.exports.wait("exp-1", timeout=10)
        with pytest.raises(avxrm.NotFoundError, match="exp-1 was deleted"):
            asyncio.run(via_async())
    finally:
        srv.close()


def _ev(i):
    return b'id: %d\nevent: rm.queue.created\ndata: {"type": "rm.queue.created", "subject": "q-%d", "data": {}}\n\n' % (i, i)


class ExpiringStream(LoopbackServer):
    """An API whose event stream ends, as the real one does, when its token is
    no longer accepted: events after Last-Event-ID (two a connection, from
    1 on), then, a token's life later (1.2 s), a message of event
    token-expired alone; the token is refused (401) from then on."""

    def __init__(self):
        api = self
        self.opens, self.dead = [], set()

        class Handler(QuietHandler):
            def do_GET(self):
                tok = self.headers.get("Authorization", "")
                api.opens.append((tok, self.headers.get("Last-Event-ID")))
                if tok in api.dead:
                    return self.send(401, {"title": "Unauthorized", "status": 401, "detail": "token expired at …"},
                                     "application/problem+json")
                after = int(self.headers.get("Last-Event-ID") or 0)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(b"id: 0\n\n" if self.headers.get("Last-Event-ID") is None else b"")
                self.wfile.write(_ev(after + 1) + _ev(after + 2))
                self.wfile.flush()
                time.sleep(1.2)  # the token's life
                api.dead.add(tok)
                try:
                    self.wfile.write(b": the token is no longer accepted\nevent: token-expired\n\n")
                except OSError:
                    pass  # the client has what it wanted and left

        super().__init__(Handler)


def test_watch_goes_on_across_token_expiries():
    """When the API ends the stream as its token expired, watch reopens it at
    once with Last-Event-ID and the token the TokenProvider gives anew
    (refreshed): every event once, in order, and on_disconnect is not told.
    A static token gets the 401 of an expired one, which ends the watch."""
    issuer = Issuer(expires_in=10)  # within the provider's 30s leeway: every use refreshes
    api = ExpiringStream()
    lost = []
    try:
        with avxrm.Client(api.url, token=avxrm.TokenProvider(issuer.url, "avxrm", username="alice", password="secret")) as c:
            got = []
            for ev in c.events.watch(on_disconnect=lambda e, n: lost.append(e)):
                got.append(ev.id)
                if len(got) == 5:
                    break
        assert got == [1, 2, 3, 4, 5] and lost == []
        assert api.opens == [("Bearer at-1", None), ("Bearer at-2", "2"), ("Bearer at-3", "4")]

        async def via_async():
            ids = []
            async with avxrm.AsyncClient(api.url, token=avxrm.TokenProvider(issuer.url, "avxrm", username="alice",
                                                                             password="secret")) as ac:
                async for ev in ac.events.watch(after=10, on_disconnect=lambda e, n: lost.append(e)):
                    ids.append(ev.id)
                    if len(ids) == 3:
                        return ids

        api.opens.clear()
        assert asyncio.run(via_async()) == [11, 12, 13] and lost == []
        assert [o[1] for o in api.opens] == ["10", "12"] and api.opens[0][0] != api.opens[1][0]

        with avxrm.Client(api.url, token="static") as c:
            got = []
            with pytest.raises(avxrm.AuthError) as e:
                for ev in c.events.watch(on_disconnect=lambda e, n: lost.append(e)):
                    got.append(ev.id)
            assert got == [1, 2] and "expired" in str(e.value) and lost == []
    finally:
        api.close()
        issuer.close()


def test_array_wait_ends_once_jobs_are_deleted(seeded):
    """An array some of whose jobs were deleted ends once every job left has
    ended: a deleted job is in none of its counts, so ended never reaches
    count (arrays.wait once timed out on it, "190 of 200 jobs ended")."""
    server, app_id = seeded
    job = {"queue_id": "Default", "application": {"id": app_id}, "worker_instances": 1,
           "environment_variables": {"SLEEP": "30"}, "name": "py-deleted"}
    with avxrm.Client(server) as c:
        a = c.arrays.submit(job, count=12, max_parallel=1)
        ids = [j.id for j in c.arrays.jobs(a.id)]
        assert len(ids) == 12
        for id in ids[-3:]:
            c.jobs.delete(id)
        c.arrays.cancel(a.id)
        done = within(60, lambda: c.arrays.wait(a.id, timeout=30, interval=0.2))
        assert done.final and done.counts == {"cancelled": 9} and (done.ended, done.active, done.count) == (9, 0, 12)

        async def via_async():
            async with avxrm.AsyncClient(server) as ac:
                return await ac.arrays.wait(a.id, timeout=30, interval=0.2)

        assert within(60, lambda: asyncio.run(via_async())).final


def test_job_array_final_by_its_counts():
    """final: no job of the array that exists is in a status that is not
    final; an empty counts (every job deleted) is final, counts the server
    did not send is not."""
    final = lambda d: avxrm.JobArray.from_dict(d).final
    assert final({"count": 200, "counts": {"cancelled": 190}})
    assert final({"count": 3, "counts": {"succeeded": 1, "failed": 1, "cancelled": 1}})
    assert final({"count": 5, "counts": {}})
    assert not final({"count": 200, "counts": {"cancelled": 189, "running": 1}})
    assert not final({"count": 2, "counts": {"pending": 0, "submitted": 2}})
    assert not final({"count": 2}) and not final({"count": 2, "counts": None})


class EndlessArray(QuietHandler):
    """An array whose one job runs for ever; it records when it was read."""

    reads = []

    def do_GET(self):
        self.reads.append(time.monotonic())
        self.send(200, {"id": "arr-1", "count": 2, "counts": {"running": 1, "succeeded": 1}})


def test_array_wait_honours_its_timeout():
    """arrays.wait(timeout=…) waits that long, reading the array a last time
    at the end (it gave up an interval early: after 4.1 s for timeout=5),
    and says how far the array got."""
    srv = LoopbackServer(EndlessArray)
    try:
        with avxrm.Client(srv.url) as c:
            for timeout, interval in ((1.5, 1.0), (0.5, 2.0)):
                EndlessArray.reads.clear()
                start = time.monotonic()
                with pytest.raises(TimeoutError, match=r"^job array arr-1: 1 of its jobs not ended after [0-9.]+s "
                                                       r"\(1 of 2 ended\)$"):
                    within(20, lambda: c.arrays.wait("arr-1", timeout=timeout, interval=interval))
                took = time.monotonic() - start
                assert timeout <= took < timeout + 0.8, f"wait(timeout={timeout}, interval={interval}) took {took:.2f} s"
                assert EndlessArray.reads[-1] - start >= timeout - 0.05, "not read at the deadline"
            with pytest.raises(TimeoutError):
                c.arrays.wait("arr-1", timeout=0)

        async def via_async():
            async with avxrm.AsyncClient(srv.url) as ac:
                await ac.arrays.wait("arr-1", timeout=1.5, interval=1.0)

        start = time.monotonic()
        with pytest.raises(TimeoutError, match="1 of its jobs not ended"):
            within(20, lambda: asyncio.run(via_async()))
        assert 1.5 <= time.monotonic() - start < 2.3
    finally:
        srv.close()


class Pages(QuietHandler):
    """Any list: three items over pages of the size asked; it records each query."""

    queries = []

    def do_GET(self):
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        self.queries.append(q)
        limit, at = int(q["limit"]), int(q.get("cursor", 0))
        items = [{"id": f"x-{i}"} for i in range(at, min(at + limit, 3))]
        page = {"items": items}
        if at + limit < 3:
            page["next_cursor"] = str(at + limit)
        self.send(200, page)


def test_lists_honour_the_callers_page_size():
    """limit= is the page size of the iteration, 1..1000 (it was replaced by
    200, and 5000 was ignored); out of range it is refused when the list is
    asked for, before anything is sent."""
    srv = LoopbackServer(Pages)
    q = Pages.queries
    try:
        with avxrm.Client(srv.url) as c:
            assert [j.id for j in c.jobs.list(array_id="arr-1", limit=2)] == ["x-0", "x-1", "x-2"]
            assert q == [{"array_id": "arr-1", "limit": "2"}, {"array_id": "arr-1", "limit": "2", "cursor": "2"}]
            q.clear()
            assert len(list(c.jobs.list(array_id="arr-1"))) == 3 and q == [{"array_id": "arr-1", "limit": "200"}]
            for call, path in ((lambda **kw: c.arrays.jobs("arr-1", **kw), "array_id"), (c.arrays.list, None),
                               (lambda **kw: c.queues.pending("Default", **kw), None), (c.queues.list, None),
                               (lambda **kw: c.jobs.artifacts("job-1", **kw), None), (c.runtime_configs.list, None)):
                q.clear()
                assert len(list(call(limit=1000))) == 3 and [x["limit"] for x in q] == ["1000"]
            q.clear()
            for bad in (0, 1001, 5000, -1, "7", 7.0, True):
                with pytest.raises(ValueError, match=r"^limit: want the page size, an int of 1\.\.1000"):
                    c.jobs.list(limit=bad)
            assert q == []

        async def via_async():
            async with avxrm.AsyncClient(srv.url) as ac:
                with pytest.raises(ValueError, match="limit"):
                    ac.jobs.list(limit=5000)
                return [j.id async for j in ac.jobs.list(limit=1)]

        q.clear()
        assert asyncio.run(via_async()) == ["x-0", "x-1", "x-2"] and [x["limit"] for x in q] == ["1", "1", "1"]
    finally:
        srv.close()


def _schema_fields(doc, name):
    """The properties of the schema name in the OpenAPI document doc."""
    schemas, props = doc["components"]["schemas"], set()

    def collect(s):
        if "$ref" in s:
            collect(schemas[s["$ref"].rsplit("/", 1)[-1]])
        for sub in s.get("allOf", []):
            collect(sub)
        props.update(s.get("properties", {}))

    collect(schemas[name])
    return props


def test_models_have_every_field_the_api_sends(seeded):
    """Each model has an attribute for every field of its schema in the
    OpenAPI document the server serves (Job lacked array_id, command,
    depends_on, instance_counts, …; ScenarioExport expires_at, ready_at,
    queue_id; Application resource_version), and they are read."""
    import dataclasses

    server, app_id = seeded
    doc = httpx.get(server + "/api/resources/v1/openapi.json").json()
    for model in (avxrm.Queue, avxrm.QueueUsage, avxrm.Plugin, avxrm.Application, avxrm.AppRuntimeConfig,
                  avxrm.Deployment, avxrm.Condition, avxrm.Instance, avxrm.Job, avxrm.JobArray, avxrm.PendingJob,
                  avxrm.Whoami, avxrm.QueuePermissions, avxrm.Artifact, avxrm.ScenarioExport):
        missing = _schema_fields(doc, model.__name__) - {f.name for f in dataclasses.fields(model)}
        assert not missing, f"{model.__name__} lacks {sorted(missing)}"

    with avxrm.Client(server) as c:
        assert c.applications.get(app_id).resource_version >= 1
        first = c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=1,
                              environment_variables={"SLEEP": "0"})
        a = c.arrays.submit({"queue_id": "Default", "application": {"id": app_id}, "worker_instances": 1,
                             "command": ["/bin/sh", "-c"], "args": ["echo $RM_ARRAY_INDEX"],
                             "depends_on": [{"job_id": first.id, "condition": "finished"}]}, count=2)
        jobs = sorted(c.arrays.jobs(a.id), key=lambda j: j.array_index)
        assert [(j.array_id, j.array_index) for j in jobs] == [(a.id, 0), (a.id, 1)]
        assert jobs[0].command == ["/bin/sh", "-c"] and jobs[0].args == ["echo $RM_ARRAY_INDEX"]
        assert jobs[0].depends_on == [{"job_id": first.id, "condition": "finished"}]
        done = c.arrays.wait(a.id, timeout=60, interval=0.2)
        assert done.counts == {"succeeded": 2}, done.counts
        # Jobs in lists carry instance_counts and no instances.
        listed = next(iter(c.arrays.jobs(a.id, limit=1)))
        assert listed.instance_counts["worker"] == {"succeeded": 1} and listed.instances == [], listed.raw
        c.jobs.put_artifact(first.id, "scenarios/s-1/a.xosc", "<OpenSCENARIO/>")
        x = c.exports.wait(c.exports.create(first.id, samples=["s-1"]).id, timeout=60)
        assert x.status == "ready" and x.queue_id == first.queue_id and x.ready_at and x.expires_at > x.ready_at
        c.exports.delete(x.id)


def test_error_messages_stay_short(seeded):
    """An error's message is one bounded line: the problem's detail (whose
    "and N more" counts the rest) and at most three field errors it does not
    name; every field error stays in .errors. (60 unknown depends_on entries
    made a message of 2,499 characters.)"""
    server, app_id = seeded
    with avxrm.Client(server) as c:
        with pytest.raises(avxrm.ValidationError) as e:
            c.jobs.submit(queue_id="Default", application={"id": app_id}, worker_instances=1,
                          depends_on=[{"job_id": f"job-none{i}", "condition": "succeeded"} for i in range(60)])
    msg = str(e.value)
    assert len(e.value.errors) == 60 and "and 50 more" in msg and "job-none10" not in msg, msg
    assert len(msg) < 1000 and "\n" not in msg

    def message(problem):
        return str(avxrm.errors.error_for(422, json.dumps(problem).encode(), "application/problem+json"))

    errors = [{"field": f"items[{i}]", "message": "bad\nvalue " + "x" * 500} for i in range(60)]
    msg = message({"title": "Unprocessable Entity", "status": 422, "detail": "validation failed", "errors": errors})
    assert msg.startswith("422 validation failed (items[0]: bad value xxx") and msg.count("items[") == 3, msg
    assert msg.endswith("; and 57 more (errors lists them all))") and len(msg) < 1000 and "\n" not in msg
    # A field error the detail does not name is still added, as before.
    msg = message({"title": "Conflict", "status": 409, "detail": "a queue named Default already exists",
                   "errors": [{"field": "name", "message": "taken"}]})
    assert msg == "409 a queue named Default already exists (name: taken)"
    assert len(message({"title": "x", "status": 422, "detail": "y" * 100000})) <= 2004


def test_server_urls_that_are_not_the_root(monkeypatch):
    """URLs under the root that a browser shows, and a URL with a query or a
    fragment, are refused naming the root to give, as the Go SDK's New
    refuses them (they got a NotFoundError from the first request), the
    API's base path too (it is appended to the root); the root is taken."""
    root = "http://127.0.0.1:8080"
    for bad in ("/api/resources/docs", "/api/resources/docs/", "/api/resources/v1/openapi.json", "/api/resources",
                "/api/resources/v1/jobs", "/api/resources/v1", "/api/resources/v1/"):
        with pytest.raises(ValueError, match=re.escape(f"that is a URL of the server's API, not its root; give {root}")):
            avxrm.Client(root + bad)
    for bad, give in (("http://127.0.0.1:8080?x=1", root), ("http://127.0.0.1:8080/?x=1", root),
                      ("http://127.0.0.1:8080#top", root), ("https://rm.example/rm?x=1", "https://rm.example/rm")):
        with pytest.raises(ValueError, match=re.escape(f"a root URL has no query or fragment; give {give}")):
            avxrm.Client(bad)
    with pytest.raises(ValueError, match=re.escape("web view, not its root; give https://rm.example/rm")):
        avxrm.AsyncClient("https://rm.example/rm/ui/jobs?status=failed")
    for good, want in ((root, root), (root + "/", root), ("https://rm.example/rm/uix/", "https://rm.example/rm/uix")):
        with avxrm.Client(good) as c:
            assert c.server == want
    with pytest.raises(TypeError, match="server"):
        avxrm.Client(8080)
    # None (or ""): $RM_SERVER, checked alike.
    monkeypatch.setenv("RM_SERVER", "https://rm.example:8443")
    assert avxrm.Client().server == avxrm.Client("").server == "https://rm.example:8443"
    monkeypatch.setenv("RM_SERVER", "https://rm.example:8443/api/resources/docs")
    with pytest.raises(ValueError, match="give https://rm.example:8443$"):
        avxrm.Client(None)
    monkeypatch.delenv("RM_SERVER")
    assert avxrm.Client().server == avxrm.DEFAULT_SERVER


def test_rough_edges_are_said_before_sending():
    """Jobs have no update or replace (the API has no PUT or PATCH of a job:
    they got 405); an id that is not a str is refused (jobs.get(5) asked for
    job "5"); an index that is not an int says so; a timeout of 0 or a str is
    refused naming timeout. Nothing is sent."""
    url = free_port_url()  # nothing listens: a request would raise UnreachableError
    with avxrm.Client(url, retries=0) as c:
        assert not hasattr(c.jobs, "update") and not hasattr(c.jobs, "replace")
        for name in ("update", "replace"):
            with pytest.raises(AttributeError, match=f"jobs have no {name}\\(\\): a job cannot be changed once submitted"):
                getattr(c.jobs, name)("job-1", priority=1)
        assert callable(c.queues.update) and callable(c.deployments.replace)
        for call in (lambda: c.jobs.get(5), lambda: c.jobs.cancel(5), lambda: c.queues.get(1), lambda: c.arrays.get(1.5),
                     lambda: c.exports.get(b"exp-1"), lambda: c.runtime_configs.get("Default", 3)):
            with pytest.raises(TypeError, match="want a str, got"):
                call()
        for bad in (True, "2", 2.0, None):
            with pytest.raises(TypeError, match=f"^index: want an int, got {type(bad).__name__}"):
                c.jobs.logs("job-1", "worker", bad)
            with pytest.raises(TypeError, match="^replica: want an int"):
                c.deployments.logs("viz", replica=bad)
        with pytest.raises(ValueError, match="^index: want 0 or more"):
            c.jobs.logs("job-1", "worker", -1)
    for cls in (avxrm.Client, avxrm.AsyncClient):
        for bad in (0, -1, 0.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=r"^timeout: want seconds above 0"):
                cls(url, timeout=bad)
        for bad in ("5", True, [5]):
            with pytest.raises(TypeError, match=r"^timeout: want seconds"):
                cls(url, timeout=bad)
        for good in (0.5, 3, None, httpx.Timeout(5.0)):
            cls(url, timeout=good)


def test_readme_async_example_runs(seeded):
    """The README's async example runs as written on a server set up as the
    main README's "Try it" sets it up (a queue Default on the local driver),
    twice: the second run takes the application the first made. (It made
    the application sim 1.0 that "Try it" had made, 409, and gave it no
    command, 422 on the local driver.)"""
    server, _ = seeded
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    code = re.search(r"## Async example\n.*?```python\n(.*?)```", readme, re.S).group(1)
    assert 'AsyncClient("http://127.0.0.1:8080")' in code
    code = code.replace("http://127.0.0.1:8080", server)
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        # Then the failed jobs on Default, which other tests left.
        assert out.stdout.startswith("succeeded []\nworker 7: seed 42\n"), out.stdout
