"""Login throttling (docs/api.md, "Login throttling"): the rules on a clock the test moves, and the real
service's answers (429 with Retry-After in the error envelope, the lockout, the legitimate login from
another address during it), each client speaking from an address of its own on loopback (127.0.0.x)."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
from tests.support.service import BASE, Service, b64

from pgvault.errors import NotAuthenticated, TooManyRequests
from pgvault.services import auth
from pgvault.services.logins import Logins, LoginThrottle, ThrottleRules, address_key

RULES = ThrottleRules(free=3, lockout_after=6, lockout_seconds=600, max_delay=60, user_free=10, user_max_delay=30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(t: LoginThrottle, user: str, addr: str) -> None:
    t.failed(t.admit(user, addr))


def refused(t: LoginThrottle, user: str, addr: str) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as exc:
        t.admit(user, addr)
    return exc.value


def test_an_address_waits_longer_after_each_failure_then_is_locked_out():
    clock = Clock()
    t = LoginThrottle(RULES, clock)
    for _ in range(3):  # the free failures: no wait
        fail(t, "alice", "10.0.0.1")
    waits = []
    for _ in range(3):  # then 1, 2, 4 s: an attempt before the wait is over is refused, not counted
        ticket_or_refusal = refused(t, "alice", "10.0.0.1")
        waits.append(ticket_or_refusal.retry_after)
        clock.now += ticket_or_refusal.retry_after
        fail(t, "alice", "10.0.0.1")
    assert waits == [1, 2, 4]
    lockout = refused(t, "alice", "10.0.0.1")  # the 6th failure locked the address out
    assert lockout.retry_after == 600 and "locked out" in lockout.message and lockout.http_status == 429
    clock.now += 599
    assert refused(t, "bob", "10.0.0.1").retry_after == 1  # every user name, from that address
    # another address is not affected, not even for the same user name
    t.succeeded(t.admit("alice", "10.0.0.2"))
    clock.now += 1
    fail(t, "alice", "10.0.0.1")  # once the lockout ends, the next failure locks it out again at once
    assert refused(t, "alice", "10.0.0.1").retry_after == 600
    clock.now += 600 + 600 + 1  # quiet for lockout_seconds after the wait: forgotten
    for _ in range(3):
        fail(t, "alice", "10.0.0.1")


def test_beyond_the_free_failures_an_address_has_one_attempt_in_flight():
    t = LoginThrottle(RULES, Clock())
    tickets = [t.admit("alice", "10.0.0.1") for _ in range(3)]  # three at once, within the free failures
    assert "being checked" in refused(t, "alice", "10.0.0.1").message
    for ticket in tickets:
        t.succeeded(ticket)  # successes count nothing
    assert t.admit("alice", "10.0.0.1")


def test_many_addresses_slow_down_a_user_name_but_not_its_owner_from_a_known_address():
    clock = Clock()
    t = LoginThrottle(RULES, clock)
    t.succeeded(t.admit("alice", "192.0.2.7"))  # alice's usual address
    for n in range(10):  # ten addresses, one failure each: the user name's free failures
        fail(t, "alice", f"10.0.1.{n}")
    stranger = refused(t, "alice", "10.0.2.1")
    assert "user name" in stranger.message and stranger.retry_after == 1
    t.succeeded(t.admit("alice", "192.0.2.7"))  # the owner, from where they logged in before: admitted
    t.succeeded(t.admit("bob", "10.0.2.1"))  # another user name from the stranger's address: admitted
    clock.now += 1
    fail(t, "alice", "10.0.2.1")
    assert refused(t, "alice", "10.0.2.2").retry_after == 2  # growing, never a lockout of the name
    for i in range(20):
        clock.now += 60
        fail(t, "alice", f"10.0.3.{i}")
    assert refused(t, "alice", "10.0.4.1").retry_after == RULES.user_max_delay


def test_ipv6_addresses_count_by_their_64():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key(None) == "-"


def test_the_tables_stay_bounded():
    t = LoginThrottle(ThrottleRules(max_entries=100), Clock())
    for n in range(1000):
        fail(t, f"user{n}", f"10.1.{n // 256}.{n % 256}")
    assert len(t._addresses) <= 100 and len(t._users) <= 100


def test_a_refused_login_costs_no_password_check(catalog, monkeypatch):
    """The service function: attempts the throttle refuses never reach scrypt nor the catalog."""
    with catalog.transaction(write=True) as s:
        auth.create_user(s, "alice", "correct horse")
    calls = []
    real = hashlib.scrypt
    monkeypatch.setattr(hashlib, "scrypt", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    logins = Logins(ThrottleRules(free=2, lockout_after=4, lockout_seconds=600))

    async def attempt(password: str, address: str) -> object:
        try:
            return (await logins.login(catalog, None, "alice", password, address, 3600)).user.username  # type: ignore[arg-type]
        except (NotAuthenticated, TooManyRequests) as exc:
            return type(exc).__name__

    async def scenario() -> list[object]:
        flood = await asyncio.gather(*(attempt("wrong", "10.0.0.9") for _ in range(50)))
        return [*flood, await attempt("correct horse", "10.0.0.10")]

    try:
        outcomes = asyncio.run(scenario())
    finally:
        logins.close()
    assert outcomes[-1] == "alice"
    assert outcomes[:-1].count("NotAuthenticated") == 2 and outcomes[:-1].count("TooManyRequests") == 48
    assert len(calls) == 3  # the two admitted wrong ones and the right one


# -- the running service ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("throttle") / "home", PGVAULT_LOGIN_LOCKOUT_FAILURES="4",
                      PGVAULT_LOGIN_LOCKOUT_SECONDS="120").start()
    yield service
    service.stop()


def client(svc: Service, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.0.0.0/8 address is this machine)."""
    return httpx.Client(base_url=svc.url + BASE, timeout=60, transport=httpx.HTTPTransport(local_address=address))


def login(http: httpx.Client, password: str) -> httpx.Response:
    return http.post("/Login", json={"username": "admin", "password": b64(password)})


def test_lockout_of_an_attacker_address_leaves_the_user_other_addresses(svc):
    import time

    attacker, user = client(svc, "127.0.0.2"), client(svc, "127.0.0.3")
    try:
        assert [login(attacker, "guess").status_code for _ in range(2)] == [401, 401]  # free (4 // 2)
        r = login(attacker, "guess")
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert r.json()["errorCode"] == 12 and "wait 1 s" in r.json()["errorMessage"]
        time.sleep(1.05)
        assert login(attacker, "guess").status_code == 401  # waited as told: admitted, wrong
        time.sleep(2.05)
        assert login(attacker, "guess").status_code == 401  # the 4th failure: locked out
        locked = login(attacker, svc.admin_password)  # even with the right password
        assert locked.status_code == 429 and "locked out" in locked.json()["errorMessage"]
        assert 60 < int(locked.headers["Retry-After"]) <= 120
        assert set(locked.json()) == {"errorCode", "errorMessage", "entity"}

        ok = login(user, svc.admin_password)  # the user, from another address, during the lockout
        assert ok.status_code == 200 and ok.json()["token"].startswith("QSDK ")
        assert login(user, "typo").status_code == 401  # and is not throttled there either
        assert login(attacker, svc.admin_password).status_code == 429  # still locked
        log = svc.log_text()
        assert "login failed: user 'admin' from 127.0.0.2" in log and "locked out for 120 s" in log
        assert svc.admin_password not in log and "guess" not in log
    finally:
        attacker.close()
        user.close()


def test_a_flood_from_one_address_is_refused_at_once_and_the_right_login_goes_through(svc):
    async def flood() -> list[int]:
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.4")
        async with httpx.AsyncClient(base_url=svc.url + BASE, timeout=60, transport=transport) as http:
            answers = await asyncio.gather(*(http.post("/Login", json={"username": "admin", "password": b64("x")})
                                             for _ in range(60)))
        return [a.status_code for a in answers]

    codes = asyncio.run(flood())
    assert set(codes) <= {401, 429} and codes.count(401) <= 4 and codes.count(429) >= 56
    with client(svc, "127.0.0.3") as http:  # the user, from the address they logged in from before
        assert login(http, svc.admin_password).status_code == 200


def test_the_owners_login_is_checked_before_the_strangers_queued_ahead_of_it():
    import threading

    from pgvault.services.logins import PasswordChecks

    checks, started, release, order = PasswordChecks(), threading.Event(), threading.Event(), []

    def busy() -> None:
        started.set()
        release.wait(30)

    first = checks.submit(False, busy)
    assert started.wait(30)  # the only thread (KDF_AT_ONCE) is busy: what follows queues
    strangers = [checks.submit(False, order.append, f"stranger{n}") for n in range(5)]
    owner = checks.submit(True, order.append, "owner")
    release.set()
    for fut in [first, *strangers, owner]:
        fut.result(30)
    checks.close()
    assert order == ["owner"] + [f"stranger{n}" for n in range(5)]
