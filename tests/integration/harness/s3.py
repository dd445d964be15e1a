"""moto in server mode on loopback, and a fault-injecting proxy in front of it."""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from pathlib import Path

import boto3
import requests
from botocore.config import Config

from .procs import ManagedProcess, free_port, wait_until

# Region and dummy credentials for boto3 and for Weir's S3 client. moto
# accepts any key, and with these no client looks for real credentials or
# queries an instance-metadata service.
REGION = "us-east-1"
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"


def isolate_aws_environment() -> None:
    """Point every AWS client of this process at dummy credentials only."""
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ["AWS_ACCESS_KEY_ID"] = ACCESS_KEY
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


class MotoServer:
    """`moto_server -H 127.0.0.1 -p PORT` as a managed process."""

    def __init__(self, moto_bin: Path, log_dir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        isolate_aws_environment()
        env = dict(os.environ)
        self.process = ManagedProcess(
            "moto",
            [moto_bin, "-H", "127.0.0.1", "-p", str(self.port)],
            log_dir / "moto.log",
            env=env,
        )
        self.client = s3_client(self.endpoint)

    def start(self) -> "MotoServer":
        self.process.start()

        def ready() -> bool:
            if not self.process.alive():
                raise AssertionError(f"moto_server exited:\n{self.process.log_tail()}")
            try:
                return requests.get(f"{self.endpoint}/", timeout=2).status_code < 500
            except requests.ConnectionError:
                return False

        wait_until(ready, timeout=60, message="moto_server to accept requests")
        return self

    def stop(self) -> None:
        self.process.stop()

    def create_bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return name


class FaultyProxy:
    """A TCP proxy to an HTTP server that can be switched to fail requests.

    Modes:
    - "pass": bytes are copied both ways.
    - "http503": each new connection gets `503 Service Unavailable` with an
      S3-style XML error body for its first request, then is closed.
    - "reset": each new connection is accepted and reset at once (RST).
    - "blackhole": connections are accepted and get no response.

    Switching away from "pass" also resets every open connection, so pooled
    keep-alive connections of the client cannot bypass the fault.
    """

    MODES = ("pass", "http503", "reset", "blackhole")

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.mode = "pass"
        self.lock = threading.Lock()
        self.open_sockets: set[socket.socket] = set()
        self.counts = {"connections": 0, "failed": 0}
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, name="faulty-proxy", daemon=True)

    def start(self) -> "FaultyProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping = True
        self.listener.close()
        self._reset_open()
        self.thread.join(timeout=5)

    def set_mode(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; expected one of {self.MODES}")
        with self.lock:
            self.mode = mode
        if mode != "pass":
            self._reset_open()

    def fail_for(self, seconds: float, mode: str = "http503") -> None:
        """Fail requests for `seconds`, then heal (blocking)."""
        self.set_mode(mode)
        try:
            time.sleep(seconds)
        finally:
            self.set_mode("pass")

    # ---- internals -------------------------------------------------------

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        try:
            # SO_LINGER with a zero timeout makes close() send RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass

    def _reset_open(self) -> None:
        with self.lock:
            sockets = list(self.open_sockets)
            self.open_sockets.clear()
        for sock in sockets:
            self._reset(sock)

    def _accept_loop(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                mode = self.mode
                self.counts["connections"] += 1
                if mode != "pass":
                    self.counts["failed"] += 1
            handler = {
                "pass": self._pipe,
                "http503": self._answer_503,
                "reset": self._reset,
                "blackhole": self._hold,
            }[mode]
            threading.Thread(target=handler, args=(client,), daemon=True).start()

    def _hold(self, client: socket.socket) -> None:
        with self.lock:
            self.open_sockets.add(client)

    def _answer_503(self, client: socket.socket) -> None:
        client.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            # Read (and drop) the request body so the client sees the response,
            # not a broken pipe; stop at 64 MiB or after the timeout.
            remaining = min(length, 64 * 1024 * 1024) - len(body)
            while remaining > 0:
                chunk = client.recv(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            payload = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
                b"<Message>injected fault</Message></Error>"
            )
            client.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
                b"Connection: close\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
            )
        except (OSError, ValueError):
            pass
        finally:
            client.close()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            self._reset(client)
            return
        upstream.settimeout(None)
        with self.lock:
            self.open_sockets.update((client, upstream))
        try:
            sockets = [client, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 1.0)
                if self.stopping:
                    return
                for sock in readable:
                    data = sock.recv(1 << 16)
                    if not data:
                        return
                    other = upstream if sock is client else client
                    other.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self.lock:
                self.open_sockets.discard(client)
                self.open_sockets.discard(upstream)
            for sock in (client, upstream):
                try:
                    sock.close()
                except OSError:
                    pass
