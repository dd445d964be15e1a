"""A TCP proxy on loopback that delays every chunk by a fixed one-way delay
in each direction, in place of netem (this VM's kernel has no `sch_netem`).

Each direction has a reader that stamps every chunk with the time it was
read and keeps reading, and a writer that sleeps until stamp + delay and
then writes the chunk. Chunks in flight overlap, so the delay adds latency
without limiting bandwidth: a request/response protocol sees a round trip
of twice the delay, and a stream is limited only by the proxy's CPU and by
MAX_BUFFERED_BYTES per direction (the bandwidth-delay product it can hold).

Run it as its own process, so that its Python interpreter shares no GIL with
the caller:

    python delay_proxy.py --port 9001 --upstream-port 9092 --delay-ms 50

It prints `listening on 127.0.0.1:PORT` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys

CHUNK_BYTES = 256 * 1024
# Bytes read and not yet written, per direction of one connection. The
# reader waits above it, so a slow receiver pushes back on the sender
# without unbounded memory. 64 MiB over a 50 ms one-way delay is 1.3 GB/s.
MAX_BUFFERED_BYTES = 64 * 1024 * 1024

log = logging.getLogger("delay_proxy")


class Direction:
    """One direction of a proxied connection: read, stamp, delay, write."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float):
        self.name = name
        self.reader = reader
        self.writer = writer
        self.delay = delay
        # (monotonic read time, chunk); b"" marks the end of the stream.
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.buffered = 0
        self.room = asyncio.Event()
        self.room.set()

    async def read(self) -> None:
        """Read until end of stream; a read error propagates and ends the connection."""
        loop = asyncio.get_running_loop()
        while True:
            await self.room.wait()
            chunk = await self.reader.read(CHUNK_BYTES)
            self.queue.put_nowait((loop.time(), chunk))
            if not chunk:
                return
            self.buffered += len(chunk)
            if self.buffered >= MAX_BUFFERED_BYTES:
                self.room.clear()

    async def write(self) -> None:
        """Write each chunk at its read time + delay, then pass on the end of stream."""
        loop = asyncio.get_running_loop()
        while True:
            stamp, chunk = await self.queue.get()
            wait = stamp + self.delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return
            self.writer.write(chunk)
            await self.writer.drain()
            self.buffered -= len(chunk)
            if self.buffered < MAX_BUFFERED_BYTES:
                self.room.set()


class DelayProxy:
    def __init__(self, port: int, upstream_host: str, upstream_port: int, delay: float):
        self.port = port
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.delay = delay
        self.connections = 0

    async def serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        peer = client_writer.get_extra_info("peername")
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError as error:
            log.warning("connection %d from %s: connecting to %s:%d failed: %s",
                        number, peer, self.upstream_host, self.upstream_port, error)
            client_writer.close()
            return
        for writer in (client_writer, upstream_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.debug("connection %d from %s opened", number, peer)
        directions = (
            Direction(f"{number} client->upstream", client_reader, upstream_writer, self.delay),
            Direction(f"{number} upstream->client", upstream_reader, client_writer, self.delay),
        )
        try:
            # A failed read or write cancels the other three tasks.
            async with asyncio.TaskGroup() as group:
                for direction in directions:
                    group.create_task(direction.read())
                    group.create_task(direction.write())
        except* (ConnectionError, OSError) as errors:
            log.debug("connection %d from %s failed: %s", number, peer, errors.exceptions[0])
        except* asyncio.CancelledError:
            # asyncio.run cancels open connections at stop. Python 3.11's
            # start_server logs a cancelled handler as an error, so the
            # handler returns normally.
            pass
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()
            log.debug("connection %d from %s closed", number, peer)


async def main_async(args: argparse.Namespace) -> None:
    proxy = DelayProxy(args.port, args.upstream_host, args.upstream_port, args.delay_ms / 1000)
    server = await asyncio.start_server(proxy.serve, args.host, args.port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening on {args.host}:{args.port}, upstream {args.upstream_host}:{args.upstream_port}, "
          f"one-way delay {args.delay_ms} ms", flush=True)
    async with server:
        await stop.wait()
    log.info("stopped after %d connections", proxy.connections)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="TCP proxy that adds a fixed one-way delay in each direction")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--upstream-host", default="127.0.0.1", help="address to forward to (default 127.0.0.1)")
    parser.add_argument("--upstream-port", type=int, required=True, help="port to forward to")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay in milliseconds, per direction (default 0)")
    parser.add_argument("--verbose", action="store_true", help="log every connection")
    args = parser.parse_args(argv)
    if args.delay_ms < 0:
        parser.error(f"--delay-ms must be >= 0, got {args.delay_ms}")
    return args


def main() -> int:
    args = parse_args(sys.argv[1:])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
