"""A TCP relay in front of an S3 endpoint (moto on loopback) that can hold or refuse the upload of one object,
so a test catches a backup at a chosen moment: writing its manifest, or in the middle of a multipart
upload. Bytes pass unchanged (the Host header too, so SigV4 signatures still verify at the endpoint)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from urllib.parse import urlsplit

_REQUEST = re.compile(rb"^(PUT|POST) /[^ ]*?(?P<key>[^ /?]+)(\?[^ ]*)? HTTP/1\.1\r\n", re.MULTILINE)


class Relay:
    """``endpoint`` is the relay's own URL. ``hold = "manifest.json"``: a PUT of an object so named is never
    forwarded (``held`` is set); ``refuse = ("manifest.json", status, code)``: it is answered with that S3
    error, as a full MinIO answers (``507``, ``XMinioStorageFull``); ``hold_part = "app.dump.zst"``: the
    upload of a part of a multipart upload whose key ends so is never forwarded (the upload itself was
    created, so the store keeps it, unfinished)."""

    def __init__(self, upstream_url: str) -> None:
        up = urlsplit(upstream_url)
        self.upstream = (up.hostname or "127.0.0.1", up.port or 80)
        self.hold: str | None = None
        self.hold_part: str | None = None
        self.refuse: tuple[str, int, str] | None = None
        self.held = threading.Event()
        self.refused = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True, name="relay-conn").start()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        threading.Thread(target=_pump, args=(server, client), daemon=True, name="relay-s2c").start()
        try:
            while data := client.recv(1 << 16):
                m = _REQUEST.search(data)
                key = m.group("key").decode() if m else None
                part = m is not None and b"partNumber=" in (m.group(3) or b"")
                held_part = part and self.hold_part is not None and key is not None and key.endswith(self.hold_part)
                if key is not None and (key == self.hold or held_part):
                    self.held.set()
                    while not self._closed and client.recv(1 << 16):  # until the client goes away
                        pass
                    return
                if key is not None and self.refuse is not None and key == self.refuse[0]:
                    self._answer(client, data, *self.refuse[1:])
                    return
                server.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def _answer(self, client: socket.socket, data: bytes, status: int, code: str) -> None:
        """Read the request's body (so the client sees the answer, not a reset), then answer the error."""
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        remaining = (int(length.group(1)) if length else 0) - len(body)
        while remaining > 0:
            chunk = client.recv(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>Storage backend has '
               f"reached its minimum free drive threshold.</Message></Error>").encode()
        client.sendall(f"HTTP/1.1 {status} Refused\r\nContent-Type: application/xml\r\nContent-Length: {len(xml)}\r\n"
                       f"Connection: close\r\n\r\n".encode() + xml)
        self.refused += 1


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(1 << 16):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
