"""A throwaway certificate authority and a TLS-terminating proxy.

tansu 0.6.0 cannot serve TLS itself: its `--cert` and `--key` flags are in
one clap group, so they exclude each other, and the broker never uses the
acceptor it builds. Tests therefore put this proxy in front of a plaintext
broker and advertise the proxy's port, so every client connection crosses
a real TLS handshake (Python's ssl module, OpenSSL).
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from pathlib import Path

from .procs import free_port


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """Create a CA and a certificate for 127.0.0.1 signed by it with the
    openssl command. Returns (ca.pem, broker.pem, broker.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    key, csr, pem = directory / "broker.key", directory / "broker.csr", directory / "broker.pem"
    extensions = directory / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_pem),
        "-days", "2", "-subj", "/CN=weir-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(pem), "-days", "2", "-extfile", str(extensions))
    return ca_pem, pem, key


class TlsProxy:
    """Accept TLS on a free loopback port and forward the plaintext to
    `upstream_port`, on an asyncio loop in a background thread."""

    def __init__(self, upstream_port: int, cert: Path, key: Path, port: int | None = None):
        self.port = port or free_port()
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"tls-proxy-{self.port}", daemon=True)

    def start(self) -> "TlsProxy":
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.context), self.loop
        )
        self._server = future.result(10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _serve(self, client_reader, client_writer) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return

        async def pump(reader, writer) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                writer.close()

        await asyncio.gather(pump(client_reader, upstream_writer), pump(upstream_reader, client_writer))
