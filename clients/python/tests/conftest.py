"""Runs the all-in-one from the built avxrm binary ($AVXRM_BIN, else built
here with go build) on free ports, with its data in a temp dir."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _binary(tmp):
    b = os.environ.get("AVXRM_BIN")
    if b:
        return b
    b = os.path.join(tmp, "avxrm")
    subprocess.run(["go", "build", "-o", b, "./cmd/avxrm"], cwd=ROOT, check=True)
    return b


@pytest.fixture(scope="session")
def server():
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [_binary(tmp), "up", "--data-dir", os.path.join(tmp, "data"), "--http-addr", "127.0.0.1:0",
             "--nats-addr", "127.0.0.1:0", "--mongo-addr", "127.0.0.1:0", "--log-format", "json",
             "--outbox-interval", "200ms"],
            stderr=subprocess.PIPE, text=True)
        found = {}
        ready = threading.Event()

        def read():
            for line in proc.stderr:
                m = re.search(r'"api":"(http://[^"]+)"', line)
                if m and not ready.is_set():
                    found["url"] = m.group(1)
                    ready.set()
                if os.environ.get("RM_TEST_LOG"):
                    sys.stderr.write(line)

        threading.Thread(target=read, daemon=True).start()
        try:
            assert ready.wait(120), "avxrm up never said where it listens"
            url = found["url"]
            deadline = time.time() + 60
            while True:
                try:
                    if httpx.get(url + "/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.time() < deadline, "the all-in-one never became ready"
                time.sleep(0.1)
            yield url
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


SCRIPT = ('echo "hello from $RM_ROLE $RM_INSTANCE_INDEX"\n'
          'if [ "$RM_ROLE" = worker ] && [ "$RM_INSTANCE_INDEX" = "${FAIL_INDEX:-none}" ]; then exit 2; fi\n'
          'exec sleep "${SLEEP:-1}"')


@pytest.fixture(scope="session")
def seeded(server):
    """Queue Default (limit 10) and the local application sim:1.0."""
    import avxrm

    with avxrm.Client(server) as c:
        c.queues.create(name="Default", description="Test queue", maximum_allowed_worker_instances=10)
        app = c.applications.create(name="sim", version="1.0", image="local", command=["/bin/sh", "-c", SCRIPT])
    return server, app.id
