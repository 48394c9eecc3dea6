"""Row counts per table, read from pg_dump's own output as it streams by.

A custom-format archive written with ``--compress=0`` carries each table's rows as COPY text, one row
per line (newlines inside values are escaped), in a data block tagged with the table's TOC entry. So the
exact row count of every table of the very snapshot pg_dump used costs one ``bytes.count`` per chunk in
pgvault's process, and nothing on the server (counting with SQL during the dump cost about a tenth of
the backup's time, see docs/performance.md).

The format (pg_dump's pg_backup_archiver.c and pg_backup_custom.c): a header, the table of contents,
then data blocks. Integers are a sign byte and ``intSize`` little-endian bytes; strings an integer length
(-1: null) and the bytes. Archive versions 1.12 to 1.16 are understood (pg_dump 9.6 to 18); anything
else, or anything that does not parse, gives no counts rather than wrong ones.
"""

from __future__ import annotations

import re

# pg_dump ends each table's COPY data with the end-of-data marker and blank lines ("\\.\n\n\n"): those
# newlines are not rows. A row cannot be a lone "\." (COPY escapes the backslash).
_END_MARK = re.compile(rb"(?:^|\n)\\\.\n(\n*)$")

BLK_DATA, BLK_BLOBS = 1, 3
_MIN, _MAX = (1, 12), (1, 16)


class _NeedMore(Exception):
    pass


class _Bad(Exception):
    pass


class RowCounter:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._phase = "head"
        self._int_size = 4
        self._off_size = 8
        self._version = (0, 0)
        self._tables: dict[int, str] = {}  # dumpId -> "schema.table" for TABLE DATA entries
        self._toc_left = 0
        self.counts: dict[str, int] = {}
        self._current: str | None = None  # table whose data block is being read
        self._chunk_left = 0  # bytes of the current data chunk still to come
        self._blobs = False
        self._blob_state = "oid"
        self._tail = b""  # the last bytes of the current table's data, to find its end-of-data marker
        self.failed: str | None = None

    # -- primitives over the buffer -----------------------------------------------------------------
    def _take(self, n: int) -> bytes:
        if len(self._buf) - self._pos < n:
            raise _NeedMore
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return out

    def _int(self) -> int:
        raw = self._take(1 + self._int_size)
        value = int.from_bytes(raw[1:], "little")
        return -value if raw[0] else value

    def _str(self) -> str | None:
        n = self._int()
        if n < 0:
            return None
        if n > 1 << 30:
            raise _Bad("absurd string length")
        return self._take(n).decode("utf-8", "replace")

    # -- feeding --------------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        if self.failed is not None:
            return
        view = memoryview(chunk)
        try:
            while view:
                if self._phase == "data" and self._chunk_left and self._pos == len(self._buf):
                    # The fast path: data bytes go straight through without buffering.
                    take = min(self._chunk_left, len(view))
                    if self._current and not self._blobs:
                        piece = view[:take].tobytes()
                        self.counts[self._current] += piece.count(b"\n")
                        self._tail = (self._tail + piece[-16:])[-16:]
                    self._chunk_left -= take
                    view = view[take:]
                    continue
                self._buf += view
                view = view[:0]
                self._advance()
        except _Bad as exc:
            self.failed = str(exc)

    def _advance(self) -> None:
        while True:
            start = self._pos
            try:
                if self._phase == "head":
                    self._head()
                elif self._phase == "toc":
                    if self._toc_left == 0:
                        self._phase = "data"
                        continue
                    self._entry()
                elif self._phase == "data":
                    if self._chunk_left:
                        self._data_bytes()
                        if self._chunk_left:
                            return
                        continue
                    self._data_step()
                else:
                    return
            except _NeedMore:
                self._pos = start
                self._compact()
                return

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0

    def _head(self) -> None:
        if self._take(5) != b"PGDMP":
            raise _Bad("not a custom-format archive")
        vmaj, vmin, _vrev = self._take(3)
        self._version = (vmaj, vmin)
        if not _MIN <= self._version <= _MAX:
            raise _Bad(f"archive version {vmaj}.{vmin} is not one pgvault reads")
        self._int_size, self._off_size = self._take(2)
        if self._take(1)[0] != 1:
            raise _Bad("not the custom format")
        if self._version >= (1, 15):
            if self._take(1)[0] != 0:
                raise _Bad("the archive is compressed")
        elif self._int() != 0:
            raise _Bad("the archive is compressed")
        for _ in range(7):  # creation time
            self._int()
        self._str()  # database name
        self._str()  # server version
        self._str()  # pg_dump version
        self._toc_left = self._int()
        if not 0 <= self._toc_left < 10_000_000:
            raise _Bad("absurd table of contents")
        self._phase = "toc"
        self._compact()

    def _entry(self) -> None:
        dump_id = self._int()
        self._int()  # had a data dumper
        self._str()  # table oid
        self._str()  # oid
        tag = self._str()
        desc = self._str()
        self._int()  # section
        self._str()  # definition
        self._str()  # drop statement
        self._str()  # copy statement
        namespace = self._str()
        self._str()  # tablespace
        if self._version >= (1, 14):
            self._str()  # table access method
        if self._version >= (1, 16):
            self._int()  # relkind
        self._str()  # owner
        self._str()  # "with oids", always false
        while self._str() is not None:  # dependencies
            pass
        self._take(1 + self._off_size)  # where the data is (unknown when written to a pipe)
        if desc == "TABLE DATA" and tag is not None:
            name = f"{namespace}.{tag}"
            self._tables[dump_id] = name
            self.counts.setdefault(name, 0)
        self._toc_left -= 1
        self._compact()

    def _data_step(self) -> None:
        """Between data chunks: a block header, a chunk length, a blob oid, or the end."""
        if self._current is None and not self._blobs:
            kind = self._take(1)[0]
            dump_id = self._int()
            if kind == BLK_DATA:
                self._current = self._tables.get(dump_id, "")
            elif kind == BLK_BLOBS:
                self._blobs, self._blob_state = True, "oid"
            else:
                raise _Bad(f"unknown data block type {kind}")
            self._compact()
            return
        if self._blobs and self._blob_state == "oid":
            oid = self._int()
            if oid == 0:
                self._blobs = False
            else:
                self._blob_state = "chunks"
            self._compact()
            return
        length = self._int()
        if length < 0:
            raise _Bad("negative chunk length")
        if length == 0:
            if self._blobs:
                self._blob_state = "oid"
            else:
                if self._current:
                    m = _END_MARK.search(self._tail)
                    if m:
                        self.counts[self._current] -= 1 + len(m.group(1))
                self._current, self._tail = None, b""
        else:
            self._chunk_left = length
        self._compact()

    def _data_bytes(self) -> None:
        available = len(self._buf) - self._pos
        take = min(self._chunk_left, available)
        if self._current and not self._blobs:
            self.counts[self._current] += self._buf.count(b"\n", self._pos, self._pos + take)
            self._tail = (self._tail + bytes(self._buf[max(self._pos, self._pos + take - 16) : self._pos + take]))[-16:]
        self._pos += take
        self._chunk_left -= take
        self._compact()

    def result(self) -> dict[str, int] | None:
        """The counts, or None if the archive could not be read to its end."""
        if self.failed is not None or self._phase != "data" or self._chunk_left or self._current or self._blobs:
            return None
        if self._pos != len(self._buf):
            return None
        return dict(self.counts)
