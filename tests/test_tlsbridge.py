"""The TLS bridge, exercised with the bundled (SSL-less) client programs against real servers.

`pg_ssl` accepts only SSL connections, so every success here went through the bridge's TLS; `pg` has no SSL
at all. Passwords reach the client programs through PGPASSWORD, never argv.

The tunnelling is tested in this process (``TlsBridge``, whose threads a test can count) and, wherever the
client must see the same thing, also through the child process pgvault runs (``BridgeProcess``, what
``client_env`` uses); the child's own failure modes (it cannot start, it is killed, its parent dies) are
tested at the end.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support import certs
from tests.support.procs import alive, bridge_processes, wait_until
from tests.support.servers import system_pg_bin

from pgvault.errors import ConnectionFailed, ToolError
from pgvault.pgtools import tlsbridge
from pgvault.pgtools.binaries import bundled_bin_dir
from pgvault.pgtools.connection import ServerAddress
from pgvault.pgtools.localserver import LocalServer
from pgvault.pgtools.runner import client_env
from pgvault.pgtools.tlsbridge import THREAD_NAME_PREFIX, BridgeProcess, TlsBridge

SRC_DB = "tlsbridge_src"
TABLES = ("accounts", "events", "blobs")


# -- helpers ----------------------------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    """The caller's environment minus anything libpq would pick up (a stray PGSSLMODE, PGHOST...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", PGCONNECT_TIMEOUT="30")
    return env


Bridge = TlsBridge | BridgeProcess
MakeBridge = Callable[..., Bridge]


def bridge_env(bridge: Bridge, server: LocalServer, *, password: str | None = None,
               dbname: str = "postgres") -> dict[str, str]:
    return {
        **_clean_env(), **bridge.libpq_env(), "PGUSER": server.superuser,
        "PGPASSWORD": server.password if password is None else password, "PGDATABASE": dbname,
    }


def direct_env(server: LocalServer, *, dbname: str = "postgres") -> dict[str, str]:
    return {
        **_clean_env(), "PGHOST": server.host, "PGPORT": str(server.port), "PGUSER": server.superuser,
        "PGPASSWORD": server.password, "PGDATABASE": dbname, "PGSSLMODE": "disable",
    }


def tool(name: str) -> str:
    return str(bundled_bin_dir() / name)


def run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def psql(env: dict[str, str], sql: str) -> subprocess.CompletedProcess[str]:
    return run([tool("psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql], env)


def bridge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME_PREFIX)]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fingerprint(server: LocalServer, dbname: str) -> dict[str, tuple[int, str]]:
    out = {}
    with server.connect(dbname) as conn:
        for table in TABLES:
            row = conn.execute(
                f"select count(*), md5(string_agg(t::text, '|' order by id)) from {table} t"
            ).fetchone()
            assert row is not None
            out[table] = (row[0], row[1])
    return out


def fresh_db(server: LocalServer, dbname: str) -> None:
    with server.connect() as conn:
        conn.execute(f"drop database if exists {dbname}")
        conn.execute(f"create database {dbname}")


@pytest.fixture(autouse=True)
def _no_bridge_leftovers() -> Iterator[None]:
    """Every test must leave no bridge thread and no bridge process behind, whatever it does."""
    yield
    assert bridge_threads() == []
    assert bridge_processes() == []


@pytest.fixture(params=["thread", "process"])
def make_bridge(request: pytest.FixtureRequest) -> MakeBridge:
    """The bridge in this process, and in the child process that pgvault runs: clients must see the same."""
    return TlsBridge if request.param == "thread" else BridgeProcess


# -- servers and data -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def src_db(pg_ssl: LocalServer) -> str:
    """A few MB in three tables (so that pg_dump -j has something to parallelise), on the SSL server."""
    fresh_db(pg_ssl, SRC_DB)
    with pg_ssl.connect(SRC_DB) as conn:
        conn.execute(
            "create table accounts as select i as id, 'user ' || i as name, (i * 7 % 1000)::numeric / 3 "
            "as balance from generate_series(1, 100000) i"
        )
        conn.execute(
            "create table events as select i as id, jsonb_build_object('n', i, 'h', md5(i::text), "
            "'when', timestamptz '2024-01-01' + i * interval '1 minute') as payload "
            "from generate_series(1, 50000) i"
        )
        conn.execute(
            "create table blobs as select i as id, decode(repeat(md5(i::text) || md5((-i)::text), 16), "
            "'hex') as data from generate_series(1, 3000) i"
        )
        for table in TABLES:
            conn.execute(f"alter table {table} add primary key (id)")
        size = conn.execute("select pg_database_size(current_database())").fetchone()
        assert size is not None and size[0] > 10_000_000
    return SRC_DB


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def v6_ca(tmp_path_factory: pytest.TempPathFactory) -> certs.TestCA:
    """A CA whose server certificate names ::1 only: right for IPv6, a mismatch for 127.0.0.1."""
    return certs.make_ca(tmp_path_factory.mktemp("v6-ca"), cn="pgvault v6 CA", hosts=("::1",))


@pytest.fixture(scope="module")
def pg_v6(v6_ca: certs.TestCA) -> Iterator[LocalServer]:
    """Listens on 127.0.0.1 and ::1. Its folder is not under pytest's basetemp: every pytest session that
    starts on the machine resets /tmp/pytest-of-<user> to 0700, which locks the server's unprivileged
    account out of the folder of a session still running (its pg_ctl stop then fails)."""
    bin_dir = system_pg_bin()
    if bin_dir is None:
        pytest.skip("no SSL-capable PostgreSQL server installed (run scripts/test-deps.sh as root)")
    v6 = _ipv6_loopback()
    base = Path(tempfile.mkdtemp(prefix="pgvault-test-v6-"))
    server = LocalServer(
        base, bin_dir=bin_dir, ssl_cert=v6_ca.server_cert, ssl_key=v6_ca.server_key,
        hba=["hostssl all all 127.0.0.1/32 scram-sha-256", "hostssl all all ::1/128 scram-sha-256"],
        settings={"listen_addresses": "'127.0.0.1,::1'" if v6 else "'127.0.0.1'"},
    )
    try:
        with server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- it works ---------------------------------------------------------------------------------------------


def test_verified_connection_is_ssl(make_bridge: MakeBridge, pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    with make_bridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert) as bridge:
        folder = Path(bridge.socket_dir)
        assert folder.stat().st_mode & 0o777 == 0o700
        assert (folder / f".s.PGSQL.{bridge.port}").is_socket()
        res = psql(
            bridge_env(bridge, pg_ssl),
            "select s.ssl, s.version like 'TLS%', current_setting('server_version_num')::int / 10000 "
            "from pg_stat_ssl s where s.pid = pg_backend_pid()",
        )
    assert res.returncode == 0, res.stderr
    major = int(Path(system_pg_bin() or "").parent.name)  # /usr/lib/postgresql/<major>/bin
    assert res.stdout.strip() == f"t|t|{major}"


def test_unverified_connection_works(make_bridge: MakeBridge, pg_ssl: LocalServer) -> None:
    with make_bridge("127.0.0.1", pg_ssl.port, ca_file=None) as bridge:
        res = psql(bridge_env(bridge, pg_ssl), "select ssl from pg_stat_ssl where pid = pg_backend_pid()")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "t"


def test_ipv6_host_with_verification(pg_v6: LocalServer, v6_ca: certs.TestCA) -> None:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    for host in ("::1", "[::1]"):
        with TlsBridge(host, pg_v6.port, ca_file=v6_ca.ca_cert) as bridge:
            res = psql(
                bridge_env(bridge, pg_v6),
                "select s.ssl, inet_client_addr() from pg_stat_ssl s where s.pid = pg_backend_pid()",
            )
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "t|::1"


def test_dump_and_restore_through_bridge(
    make_bridge: MakeBridge, pg_ssl: LocalServer, pg: LocalServer, test_ca: certs.TestCA, src_db: str, tmp_path: Path
) -> None:
    dump = tmp_path / "src.dump"
    with make_bridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert) as bridge:
        res = run([tool("pg_dump"), "-Fc", "-f", str(dump)], bridge_env(bridge, pg_ssl, dbname=src_db))
    assert res.returncode == 0, res.stderr
    assert dump.stat().st_size > 1_000_000
    fresh_db(pg, "tlsbridge_fc")
    res = run([tool("pg_restore"), "--exit-on-error", "-d", "tlsbridge_fc", str(dump)],
              direct_env(pg, dbname="tlsbridge_fc"))
    assert res.returncode == 0, res.stderr
    source = fingerprint(pg_ssl, src_db)
    assert source["accounts"][0] == 100000
    assert fingerprint(pg, "tlsbridge_fc") == source


def test_parallel_dump_uses_several_connections(
    pg_ssl: LocalServer, pg: LocalServer, test_ca: certs.TestCA, src_db: str, tmp_path: Path
) -> None:
    out = tmp_path / "dir"
    peak = 0
    with TlsBridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert) as bridge, subprocess.Popen(
        [tool("pg_dump"), "-Fd", "-j", "3", "-f", str(out)],
        env=bridge_env(bridge, pg_ssl, dbname=src_db), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        while proc.poll() is None:
            peak = max(peak, sum(t.name.startswith(f"{THREAD_NAME_PREFIX}-conn") for t in bridge_threads()))
            time.sleep(0.002)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    # The leader and its three workers stay connected for the whole data phase.
    assert peak >= 4, f"pg_dump -j 3 had at most {peak} connections open through the bridge at once"
    fresh_db(pg, "tlsbridge_fd")
    res = run([tool("pg_restore"), "--exit-on-error", "-j", "3", "-d", "tlsbridge_fd", str(out)],
              direct_env(pg, dbname="tlsbridge_fd"))
    assert res.returncode == 0, res.stderr
    assert fingerprint(pg, "tlsbridge_fd") == fingerprint(pg_ssl, src_db)


def test_concurrent_sessions_run_in_parallel(pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    with TlsBridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert) as bridge:
        env = bridge_env(bridge, pg_ssl)
        sql = "select pg_sleep(1.5), ssl from pg_stat_ssl where pid = pg_backend_pid()"
        started = time.monotonic()
        procs = [
            subprocess.Popen([tool("psql"), "-X", "-A", "-t", "-c", sql], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(5)
        ]
        results = [(p.communicate(timeout=60), p.returncode) for p in procs]
        elapsed = time.monotonic() - started
    for (out, err), code in results:
        assert code == 0, err
        assert out.strip() == "|t"
    assert elapsed < 5 * 1.5 * 0.6, f"five 1.5 s sessions took {elapsed:.1f} s: not concurrent"


def test_server_errors_reach_the_client(make_bridge: MakeBridge, pg_ssl: LocalServer, test_ca: certs.TestCA,
                                        caplog: pytest.LogCaptureFixture) -> None:
    wrong = "not-the-password-" + "x" * 8
    caplog.set_level("DEBUG", logger="pgvault")
    with make_bridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert) as bridge:
        bad = psql(bridge_env(bridge, pg_ssl, password=wrong), "select 1")
        good = psql(bridge_env(bridge, pg_ssl), "select 1")
    assert bad.returncode != 0
    assert 'password authentication failed for user "postgres"' in bad.stderr
    assert good.returncode == 0, good.stderr
    assert wrong not in caplog.text and pg_ssl.password not in caplog.text


def test_cancel_request_goes_through(pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    """Ctrl-C in psql (and pg_dump stopping its workers) sends a CancelRequest on a new connection to the
    same socket; the bridge carries it inside TLS like any other first packet."""
    with TlsBridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert) as bridge, subprocess.Popen(
        [tool("psql"), "-X", "-c", "select pg_sleep(60) /* tlsbridge cancel test */"],
        env=bridge_env(bridge, pg_ssl), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    ) as proc, pg_ssl.connect() as conn:
        deadline = time.monotonic() + 30
        while not conn.execute("select 1 from pg_stat_activity where query like '%tlsbridge cancel test%' "
                               "and pid <> pg_backend_pid()").fetchone():
            assert time.monotonic() < deadline, "the query never started"
            time.sleep(0.05)
        started = time.monotonic()
        proc.send_signal(2)  # SIGINT, what Ctrl-C sends
        _, err = proc.communicate(timeout=20)
        elapsed = time.monotonic() - started
    assert "canceling statement due to user request" in err
    assert elapsed < 10


def test_last_words_of_a_closing_server_are_delivered(pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    """The server sends 800 kB and its FATAL, then hangs up, while psql is busy elsewhere (``\\!``) and
    reads nothing: the bridge has to keep what it could not deliver yet and hand it over afterwards."""
    script = "\n".join([
        r"\startpipeline",
        r"select length(repeat('x', 800000)), repeat('x', 800000) \bind \sendpipeline",
        r"select pg_terminate_backend(pg_backend_pid()) \bind \sendpipeline",
        r"\syncpipeline",
        r"\flush",
        r"\! sleep 2",
        r"\endpipeline",
        "",
    ])
    with TlsBridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert) as bridge:
        res = subprocess.run([tool("psql"), "-X", "-A", "-t"], input=script, env=bridge_env(bridge, pg_ssl),
                             capture_output=True, text=True, timeout=60, check=False)
    assert res.stdout == "800000|" + "x" * 800000 + "\n", res.stderr
    assert "terminating connection due to administrator command" in res.stderr


# -- it fails clearly -------------------------------------------------------------------------------------


def test_untrusted_certificate_is_refused(make_bridge: MakeBridge, pg_ssl: LocalServer, other_ca: certs.TestCA,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="pgvault.pgtools.tlsbridge")
    with make_bridge("127.0.0.1", pg_ssl.port, ca_file=other_ca.ca_cert) as bridge:
        res = psql(bridge_env(bridge, pg_ssl), "select 1")
    assert res.returncode != 0
    assert f"SSL connection to 127.0.0.1:{pg_ssl.port} failed" in res.stderr
    assert "certificate verify failed: unable to get local issuer certificate" in res.stderr
    # The service's log says it too, from the child as from a thread.
    assert f"TLS bridge: SSL connection to 127.0.0.1:{pg_ssl.port} failed: certificate verify failed" in caplog.text


def test_host_name_mismatch_is_refused(make_bridge: MakeBridge, pg_v6: LocalServer, v6_ca: certs.TestCA) -> None:
    """The chain is fine (right CA), but the certificate names ::1 only, not 127.0.0.1."""
    with make_bridge("127.0.0.1", pg_v6.port, ca_file=v6_ca.ca_cert) as bridge:
        res = psql(bridge_env(bridge, pg_v6), "select 1")
    assert res.returncode != 0
    assert "certificate verify failed" in res.stderr
    assert "mismatch, certificate is not valid for '127.0.0.1'" in res.stderr
    # The same server and CA without verification: so the refusal above was the host name check.
    with make_bridge("127.0.0.1", pg_v6.port, ca_file=None) as bridge:
        assert psql(bridge_env(bridge, pg_v6), "select 1").returncode == 0


def test_server_without_ssl(make_bridge: MakeBridge, pg: LocalServer) -> None:
    with make_bridge("127.0.0.1", pg.port, ca_file=None) as bridge:
        res = psql(bridge_env(bridge, pg), "select 1")
    assert res.returncode != 0
    assert f"server at 127.0.0.1:{pg.port} does not support SSL, but SSL was required" in res.stderr


def test_unreachable_port(make_bridge: MakeBridge, pg_ssl: LocalServer) -> None:
    port = free_port()
    with make_bridge("127.0.0.1", port, ca_file=None) as bridge:
        res = psql(bridge_env(bridge, pg_ssl), "select 1")
    assert res.returncode != 0
    assert f"could not connect to server at 127.0.0.1:{port}: Connection refused" in res.stderr


def test_unknown_host(make_bridge: MakeBridge, pg_ssl: LocalServer) -> None:
    with make_bridge("no-such-host.invalid", 5432, ca_file=None) as bridge:
        res = psql(bridge_env(bridge, pg_ssl), "select 1")
    assert res.returncode != 0
    assert 'could not translate host name "no-such-host.invalid" to address' in res.stderr


def test_silent_server_times_out(make_bridge: MakeBridge, pg_ssl: LocalServer) -> None:
    """A TCP peer that never answers the SSL request (the kernel completes the handshake, nobody reads)."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        port = mute.getsockname()[1]
        started = time.monotonic()
        with make_bridge("127.0.0.1", port, ca_file=None, connect_timeout=1) as bridge:
            res = psql(bridge_env(bridge, pg_ssl), "select 1")
        elapsed = time.monotonic() - started
    assert res.returncode != 0
    assert f"server at 127.0.0.1:{port} did not answer the SSL request within 1 s" in res.stderr
    assert elapsed < 10


def _startup_packet(user: str = "postgres", dbname: str = "postgres") -> bytes:
    body = struct.pack("!i", 196608) + f"user\0{user}\0database\0{dbname}\0\0".encode()
    return struct.pack("!i", len(body) + 4) + body


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    head = b""
    while len(head) < 5:
        chunk = sock.recv(5 - len(head))
        assert chunk, "connection closed before a whole message header arrived"
        head += chunk
    length = struct.unpack("!i", head[1:])[0]
    body = b""
    while len(body) < length - 4:
        chunk = sock.recv(length - 4 - len(body))
        assert chunk, "connection closed in the middle of a message"
        body += chunk
    return head[:1], body


def test_error_response_is_well_formed(make_bridge: MakeBridge, pg: LocalServer) -> None:
    """Byte level, as any driver would see it: an SSL request to the bridge is declined with 'N', and the
    refusal is one ErrorResponse followed by a clean end of stream, even though the client had sent more
    than its startup packet (a bridge that closed on unread bytes would hand it ECONNRESET instead, and
    libpq may then lose the message)."""
    with make_bridge("127.0.0.1", pg.port, ca_file=None) as bridge, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(os.path.join(bridge.socket_dir, f".s.PGSQL.{bridge.port}"))
        sock.sendall(struct.pack("!ii", 8, 80877103))
        assert sock.recv(1) == b"N"
        sock.sendall(_startup_packet() + b"X\0\0\0\4")  # and a Terminate right behind it
        time.sleep(0.5)  # let the bridge answer and hang up before we read anything
        kind, body = _read_message(sock)
        assert sock.recv(1) == b""
    assert kind == b"E"
    assert body.endswith(b"\0\0")
    fields = {f[:1].decode(): f[1:].decode() for f in body[:-1].split(b"\0") if f}
    assert fields["S"] == "FATAL" and fields["V"] == "FATAL" and fields["C"] == "08006"
    assert "does not support SSL" in fields["M"]


def test_server_hang_up_is_a_clean_end_of_stream(pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    """Byte level through a live TLS session: the SASL offer comes without channel binding, and when the
    server refuses and hangs up, a client that is still writing (as psql does) neither gets EPIPE nor
    loses the server's last message."""
    with TlsBridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert) as bridge, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(os.path.join(bridge.socket_dir, f".s.PGSQL.{bridge.port}"))
        sock.sendall(_startup_packet())
        kind, body = _read_message(sock)
        assert (kind, struct.unpack("!i", body[:4])[0]) == (b"R", 10)  # AuthenticationSASL
        assert body[4:] == b"SCRAM-SHA-256\0\0"  # the server offered -PLUS too; the bridge hid it
        mechanism, no_data = b"NO-SUCH-MECHANISM\0", struct.pack("!i", -1)
        sock.sendall(b"p" + struct.pack("!i", 4 + len(mechanism) + len(no_data)) + mechanism + no_data)
        time.sleep(0.5)  # the server refuses and hangs up meanwhile
        sock.sendall(b"X\0\0\0\4")
        kind, body = _read_message(sock)
        assert sock.recv(1) == b""
    assert kind == b"E"
    assert b"invalid SASL authentication mechanism" in body


def test_bad_ca_file_fails_at_start(make_bridge: MakeBridge, tmp_path: Path) -> None:
    bogus = tmp_path / "ca.crt"
    bogus.write_text("not a certificate\n")
    bridge = make_bridge("127.0.0.1", 5432, ca_file=bogus)
    with pytest.raises(ConnectionFailed, match="cannot use CA certificate file"):
        bridge.start()
    bridge.close()
    with pytest.raises(ConnectionFailed, match="cannot use CA certificate file"):
        make_bridge("127.0.0.1", 5432, ca_file=tmp_path / "missing.crt").start()


# -- it cleans up -----------------------------------------------------------------------------------------


def test_close_drops_open_connections(pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    marker = "select pg_sleep(120) /* tlsbridge close test */"
    bridge = TlsBridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert).start()
    folder = Path(bridge.socket_dir)
    try:
        with subprocess.Popen([tool("psql"), "-X", "-c", marker], env=bridge_env(bridge, pg_ssl),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc, \
                pg_ssl.connect() as conn:
            running = "select pid from pg_stat_activity where query = %s"
            deadline = time.monotonic() + 30
            while not conn.execute(running, (marker,)).fetchone():
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the query never started"
                time.sleep(0.05)
            assert len(bridge_threads()) == 2  # acceptor + this connection
            started = time.monotonic()
            bridge.close()
            assert time.monotonic() - started < 5
            _, err = proc.communicate(timeout=10)
            conn.execute(f"select pg_terminate_backend(pid) from ({running}) q", (marker,))
    finally:
        bridge.close()
    assert proc.returncode != 0
    assert "server closed the connection unexpectedly" in err
    assert not folder.exists()
    assert bridge_threads() == []
    bridge.close()  # idempotent


def test_many_bridges_leak_nothing(make_bridge: MakeBridge, pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    # Warm up once so that lazily created process-wide descriptors (none expected) do not count.
    with make_bridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert) as bridge:
        assert psql(bridge_env(bridge, pg_ssl), "select 1").returncode == 0
    fds = open_fds()
    folders = []
    for i in range(15):
        with make_bridge("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert if i % 2 else None) as bridge:
            folders.append(Path(bridge.socket_dir))
            if i % 3:
                res = psql(bridge_env(bridge, pg_ssl), "select 1")
                assert res.returncode == 0, res.stderr
    unused = make_bridge("127.0.0.1", pg_ssl.port, ca_file=None)
    unused.close()  # never started
    assert bridge_threads() == []
    assert open_fds() == fds
    assert not any(f.exists() for f in folders)


# -- the child process: what the process boundary adds ---------------------------------------------------


def test_process_stop_drops_open_connections(pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    """Stopping the child (end of file on its stdin) cuts a session in progress at once, removes the socket
    folder, and is no failure."""
    marker = "select pg_sleep(120) /* tlsbridge process close test */"
    bridge = BridgeProcess("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert).start()
    folder, pid = Path(bridge.socket_dir), bridge.pid
    assert pid is not None and bridge_processes() == [pid]
    assert folder.stat().st_mode & 0o777 == 0o700
    try:
        with subprocess.Popen([tool("psql"), "-X", "-c", marker], env=bridge_env(bridge, pg_ssl),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc, \
                pg_ssl.connect() as conn:
            running = "select pid from pg_stat_activity where query = %s"
            wait_until(lambda: conn.execute(running, (marker,)).fetchone() is not None, 30, "the query never started")
            started = time.monotonic()
            assert bridge.close() is None
            assert time.monotonic() - started < 5
            _, err = proc.communicate(timeout=10)
            conn.execute(f"select pg_terminate_backend(pid) from ({running}) q", (marker,))
    finally:
        bridge.close()
    assert proc.returncode != 0
    assert "server closed the connection unexpectedly" in err
    assert not folder.exists() and not alive(pid)
    assert bridge.close() is None  # idempotent


def test_child_that_cannot_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No program, a program that dies at once, one that never answers: each a ToolError saying so, and
    nothing left running (the marker in argv lets the leftover check find the fake children)."""
    monkeypatch.setattr(tlsbridge, "_child_argv", lambda: [str(tmp_path / "no-such-python")])
    with pytest.raises(ToolError, match=re.escape("could not start the TLS bridge process for 127.0.0.1:5432: No")):
        BridgeProcess("127.0.0.1", 5432, ca_file=None).start()

    dies = "import sys; sys.stderr.write('ImportError: no module named ssl\\n'); sys.exit(3)"
    monkeypatch.setattr(tlsbridge, "_child_argv", lambda: [sys.executable, "-c", dies, "pgvault.pgtools.tlsbridge"])
    with pytest.raises(ToolError) as died:
        BridgeProcess("127.0.0.1", 5432, ca_file=None).start()
    assert str(died.value) == ("the TLS bridge process for 127.0.0.1:5432 ended before it was ready "
                               "(exit code 3: ImportError: no module named ssl)")

    # Deaf to end of file and to SIGTERM: only SIGKILL ends it.
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    monkeypatch.setattr(tlsbridge, "_child_argv", lambda: [sys.executable, "-c", deaf, "pgvault.pgtools.tlsbridge"])
    monkeypatch.setattr(tlsbridge, "_READY_TIMEOUT", 1.0)
    monkeypatch.setattr(tlsbridge, "_STOP_TIMEOUT", 0.5)
    monkeypatch.setattr(tlsbridge, "_TERM_TIMEOUT", 0.5)
    started = time.monotonic()
    expected = "the TLS bridge process for 127.0.0.1:5432 did not start listening within 1 s"
    with pytest.raises(ToolError, match=re.escape(expected)):
        BridgeProcess("127.0.0.1", 5432, ca_file=None).start()
    assert time.monotonic() - started < 15


def test_bridge_killed_mid_dump_fails_with_that_reason(pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    """The child dies while pg_dump waits for a lock through it: pg_dump fails as a client whose server
    vanished, and leaving ``client_env`` turns that into the real reason; nothing is left behind."""
    dbname = "tlsbridge_locked"
    fresh_db(pg_ssl, dbname)
    with pg_ssl.connect(dbname) as conn:
        conn.execute("create table t as select generate_series(1, 1000) x")
    address = ServerAddress(host="127.0.0.1", port=pg_ssl.port, user=pg_ssl.superuser, password=pg_ssl.password,
                            dbname=dbname, ssl_enabled=True, ssl_ca=str(test_ca.ca_cert))
    waiting = ("select count(*) from pg_stat_activity where datname = %s and application_name = 'pgvault' "
               "and wait_event_type = 'Lock'")
    holder, watcher = pg_ssl.connect(dbname), pg_ssl.connect()
    try:
        holder.execute("begin")
        holder.execute("lock table t in access exclusive mode")
        with pytest.raises(ToolError) as failed, client_env(address) as env:
            [pid] = bridge_processes()
            folder = Path(env["PGHOST"])
            proc = subprocess.Popen([tool("pg_dump"), "-Fc", "-Z0", "--no-password"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                wait_until(lambda: watcher.execute(waiting, (dbname,)).fetchone() == (1,), 30,
                           "pg_dump never waited for the lock")
                os.kill(pid, signal.SIGKILL)
                _, err = proc.communicate(timeout=30)
            finally:
                proc.kill()
                proc.communicate()
            assert proc.returncode != 0
            assert "server closed the connection unexpectedly" in err
    finally:
        holder.execute("rollback")
        holder.close()
        watcher.close()
        with pg_ssl.connect() as conn:
            conn.execute(f"drop database {dbname} with (force)")
    assert str(failed.value) == (
        f"the TLS bridge process for 127.0.0.1:{pg_ssl.port} ended unexpectedly (killed by signal 9 (SIGKILL)), "
        "cutting every connection to the server through it")
    assert not folder.exists() and not folder.parent.exists()
    assert not alive(pid)


def test_terminated_bridge_cleans_up_and_is_a_failure(pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    bridge = BridgeProcess("127.0.0.1", pg_ssl.port, ca_file=test_ca.ca_cert).start()
    folder, pid = Path(bridge.socket_dir), bridge.pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not folder.exists(), 10, "a terminated bridge left its socket folder")
    failure = bridge.close()
    assert failure is not None and "ended unexpectedly (killed by signal 15 (SIGTERM))" in failure


def test_a_dead_bridge_explains_a_failure_but_not_a_bug(pg_ssl: LocalServer) -> None:
    """Leaving the block after the child died: the error raised in the block (pg_dump's, say) becomes the
    cause of the bridge's; an exception that is no pgvault error (a cancel, a bug) goes on unchanged."""
    with pytest.raises(ToolError, match="ended unexpectedly") as failed, \
            BridgeProcess("127.0.0.1", pg_ssl.port, ca_file=None) as bridge:
        assert bridge.pid is not None
        os.kill(bridge.pid, signal.SIGKILL)
        raise ToolError("pg_dump exited with code 1: server closed the connection unexpectedly")
    assert isinstance(failed.value.__cause__, ToolError)
    with pytest.raises(KeyError), BridgeProcess("127.0.0.1", pg_ssl.port, ca_file=None) as bridge:
        assert bridge.pid is not None
        os.kill(bridge.pid, signal.SIGKILL)
        raise KeyError("a bug")


def test_bridge_ends_with_its_parent(pg_ssl: LocalServer, test_ca: certs.TestCA) -> None:
    """A service killed outright cannot stop its bridges: each sees end of file on its stdin, drops its
    connections and removes its folder by itself."""
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from pgvault.pgtools.tlsbridge import BridgeProcess
        bridge = BridgeProcess("127.0.0.1", {pg_ssl.port}, ca_file=Path({str(test_ca.ca_cert)!r})).start()
        print(bridge.pid, bridge.socket_dir, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        words = parent.stdout.readline().split()
        assert len(words) == 2, words
        pid, folder = int(words[0]), Path(words[1])
        assert bridge_processes(parent.pid) == [pid] and folder.is_dir()
        with subprocess.Popen([tool("psql"), "-X", "-c", "select pg_sleep(120)"],
                              env={**_clean_env(), "PGHOST": str(folder), "PGUSER": pg_ssl.superuser,
                                   "PGPASSWORD": pg_ssl.password, "PGSSLMODE": "disable"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as session:
            time.sleep(1)  # connected and sleeping
            parent.kill()
            parent.wait()
            wait_until(lambda: not alive(pid), 10, "the bridge outlived its parent")
            _, err = session.communicate(timeout=10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    assert session.returncode != 0 and "server closed the connection unexpectedly" in err
    assert not folder.exists()


# -- how fast ---------------------------------------------------------------------------------------------


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_throughput_report(
    pg_ssl: LocalServer, test_ca: certs.TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prints, asserts nothing but success: ~200 MB through the bridge, in this process (its CPU is this
    process's: the bridge is all that runs in it meanwhile) and in the child process pgvault runs (its CPU
    read from /proc, and what this process spent meanwhile), next to libpq's own TLS when an SSL-capable
    psql exists."""
    rows, width = 200_000, 1000
    total = rows * (width + 1)
    sql = f"copy (select repeat('x', {width}) from generate_series(1, {rows})) to stdout"
    lines = []

    def timed(args: list[str], env: dict[str, str], child: int | None = None) -> tuple[float, float, float]:
        before = resource.getrusage(resource.RUSAGE_SELF)
        child_before = _process_cpu(child) if child is not None else 0.0
        started = time.perf_counter()
        subprocess.run(args, env=env, stdout=subprocess.DEVNULL, check=True, timeout=300)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        child_cpu = _process_cpu(child) - child_before if child is not None else 0.0
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), child_cpu

    for kind in ("thread", "process"):
        with (TlsBridge if kind == "thread" else BridgeProcess)("127.0.0.1", pg_ssl.port,
                                                                ca_file=test_ca.ca_cert) as bridge:
            env = bridge_env(bridge, pg_ssl)
            child = bridge.pid if isinstance(bridge, BridgeProcess) else None
            for attempt in range(3):
                wall, own, child_cpu = timed([tool("psql"), "-X", "-A", "-t", "-c", sql], env, child)
                cpu = own if child is None else child_cpu
                where = "" if child is None else f"; this process meanwhile {own:.2f} s"
                lines.append(
                    f"bridge ({kind}) run {attempt + 1}: {total / 1e6:.0f} MB in {wall:.2f} s = "
                    f"{total / 1e6 / wall:.0f} MB/s; bridge CPU {cpu:.2f} s "
                    f"({100 * cpu / wall:.0f}% of one core, {cpu / total * 1e9:.1f} s/GB){where}"
                )
    native = system_pg_bin()
    if native is not None and (native / "psql").exists():
        env = {**direct_env(pg_ssl), "PGSSLMODE": "require"}
        wall, _, _ = timed([str(native / "psql"), "-X", "-A", "-t", "-c", sql], env)
        lines.append(f"libpq's own TLS (system psql, no bridge): {total / 1e6 / wall:.0f} MB/s")
    with capsys.disabled():
        print("\nTLS bridge throughput:\n  " + "\n  ".join(lines))
