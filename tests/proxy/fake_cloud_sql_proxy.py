"""A stand-in for Google's cloud-sql-proxy v2: same command line and log lines, forwarding TCP to a local server.

Google Cloud is not reachable from the tests, so this plays the proxy's part; everything behind it (the
PostgreSQL server it forwards to) is real. FAKE_PROXY_TARGET_PORT names that server's port and
FAKE_PROXY_MODE picks a behaviour: ok, never-ready, no-credentials, dial-fail, ignore-term, quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time

VERSION = "2.99.0+fake"


def log(message: str) -> None:
    sys.stdout.write(time.strftime("%Y/%m/%d %H:%M:%S ") + message + "\n")
    sys.stdout.flush()


class CobraLikeParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"Error: {message.replace('unrecognized arguments', 'unknown flag')}\n")
        raise SystemExit(1)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = CobraLikeParser(prog="cloud-sql-proxy", add_help=False)
    parser.add_argument("instances", nargs="*")
    parser.add_argument("--version", "-v", action="store_true")
    parser.add_argument("--port", "-p", type=int, default=5432)
    parser.add_argument("--address", "-a", default="127.0.0.1")
    parser.add_argument("--auto-iam-authn", "-i", action="store_true")
    parser.add_argument("--private-ip", action="store_true")
    parser.add_argument("--credentials-file", "-c")
    parser.add_argument("--impersonate-service-account")
    parser.add_argument("--health-check", action="store_true")
    parser.add_argument("--http-address", default="localhost")
    parser.add_argument("--http-port", type=int, default=9090)
    return parser.parse_args(argv)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(args: argparse.Namespace, mode: str) -> None:
    instance = args.instances[0]
    target_host = os.environ.get("FAKE_PROXY_TARGET_HOST", "127.0.0.1")
    target_port = int(os.environ.get("FAKE_PROXY_TARGET_PORT", "5432"))

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        log(f"[{instance}] Accepted connection from {peer[0]}:{peer[1]}")
        if mode == "dial-fail":
            log(f"[{instance}] failed to connect to instance: failed to get instance: Refresh error: failed to get "
                f"instance metadata (connection name = \"{instance}\"): googleapi: Error 404: The Cloud SQL "
                "instance does not exist., instanceDoesNotExist")
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
        except OSError as error:
            log(f"[{instance}] failed to connect to instance: {error}")
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    try:
        server = await asyncio.start_server(client, args.address, args.port)
    except OSError as error:
        log(f"The proxy has encountered a terminal error: unable to start: [{instance}] Unable to mount socket: "
            f"listen tcp {args.address}:{args.port}: bind: {error.strerror.lower()}")
        raise SystemExit(1) from None
    log(f"[{instance}] Listening on {args.address}:{args.port}")

    if args.health_check:
        async def health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()

        await asyncio.start_server(health, "127.0.0.1", args.http_port)

    if mode not in ("never-ready", "quiet"):
        log("The proxy has started successfully and is ready for new connections!")
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.version:
        print(f"cloud-sql-proxy version {VERSION}")
        return 0
    if not args.instances:
        sys.stderr.write("Error: missing instance_connection_name (e.g., project:region:instance)\n")
        return 1
    mode = os.environ.get("FAKE_PROXY_MODE", "ok")
    log("Authorizing with Application Default Credentials")
    if mode == "no-credentials":
        log("The proxy has encountered a terminal error: unable to start: failed to create default credentials: "
            "google: could not find default credentials. See https://cloud.google.com/docs/authentication/"
            "external/set-up-adc for more information")
        return 1

    def terminate(signum: int, frame: object) -> None:
        log("SIGTERM signal received. Shutting down...")
        os._exit(143)  # at once, as the real proxy does with no open connections

    signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "ignore-term" else terminate)
    if mode == "never-ready":
        # A helper in the proxy's process group, started first thing: the test checks it dies with the proxy.
        helper = subprocess.Popen(["sleep", "300"])
        log(f"still fetching the instance's certificate (helper pid {helper.pid})")
    asyncio.run(serve(args, mode))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
