"""Logging in with a password, throttled: the one function every password login calls (``POST /Login``, and
the console's login form through it), so that no way in checks passwords faster than these rules allow.

**Throttling** (docs/api.md, "Login throttling"): failures are counted per client address and per user
name, in this process's memory (docs/architecture.md says why not in the catalog).

- An address may fail ``free`` times; after that each failure makes its next attempt wait 1, 2, 4, ...
  seconds (at most ``max_delay``), and ``lockout_after`` failures lock it out for ``lockout_seconds``.
  Beyond the free failures, an address has one attempt in flight at a time.
- A user name may fail ``user_free`` times (from any addresses); after that each failure makes the next
  attempt on that name wait 1, 2, 4, ... seconds (at most ``user_max_delay``), so that many addresses
  together cannot try passwords quickly either. A user name is never locked out, and an address that
  logged in as that user lately (``trusted_days``) skips this rule: an attacker flooding a user name
  slows down strangers' attempts on it, not its owner's from their usual address, and a locked-out
  attacker address locks out nobody else.
- An attempt refused by these rules is answered at once with 429 and ``Retry-After``: no catalog read, no
  thread, no password check. It does not count as a failure and does not lengthen any wait.
- Counters are forgotten ``lockout_seconds`` after the last wait they imposed ended. A success counts
  nothing back (an attacker who owns one account cannot wipe their address's failures with it).

**The password check** (scrypt, ``services.auth.KDF_AT_ONCE`` at a time) runs on a thread of its own, not
the shared threadpool: a login waiting for its turn is a coroutine that holds no thread, so a burst of logins
costs the rest of the API nothing but that thread's CPU. The logins of an address known for that user go
first. At most ``max_waiting`` other logins wait for it; more are refused with 429 (Retry-After 1) rather
than queued for seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from ..catalog.db import Catalog
from ..errors import NotAuthenticated, TooManyRequests, shown
from . import auth
from .auth import AuthUser

log = logging.getLogger("pgvault.login")


@dataclass(frozen=True)
class ThrottleRules:
    free: int = 5
    lockout_after: int = 10
    lockout_seconds: float = 900.0
    max_delay: float = 60.0
    user_free: int = 20
    user_max_delay: float = 30.0
    trusted_days: float = 30.0
    max_waiting: int = 32
    max_entries: int = 50_000  # per kind; beyond it, the entries idle longest are forgotten


@dataclass
class _Entry:
    failures: int = 0
    in_flight: int = 0
    until: float = 0.0  # no attempt before this (the clock's time)
    touched: float = 0.0


@dataclass
class Ticket:
    """An admitted attempt: what it counts against, until its outcome is known."""

    address: str
    user: str | None  # the user name key, None when the address is trusted for it
    username: str
    done: bool = field(default=False)


def address_key(address: str | None) -> str:
    """The throttle's key for a client address: IPv6 addresses by their /64 (one host usually holds a
    whole /64, and would otherwise get a fresh counter per address)."""
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginThrottle:
    """The counters and the rules (pure but for the clock; thread-safe)."""

    def __init__(self, rules: ThrottleRules | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules or ThrottleRules()
        self._clock = clock
        self._lock = threading.Lock()
        self._addresses: dict[str, _Entry] = {}
        self._users: dict[str, _Entry] = {}
        self._trusted: dict[tuple[str, str], float] = {}  # (user name, address key) -> trusted until

    # -- rules ----------------------------------------------------------------------------------

    def _address_wait(self, failures: int) -> float:
        r = self.rules
        if failures >= r.lockout_after:
            return r.lockout_seconds
        return 0.0 if failures < r.free else min(2.0 ** (failures - r.free), r.max_delay)

    def _user_wait(self, failures: int) -> float:
        r = self.rules
        return 0.0 if failures < r.user_free else min(2.0 ** (failures - r.user_free), r.user_max_delay)

    # -- the table ------------------------------------------------------------------------------

    def _entry(self, table: dict[str, _Entry], key: str, now: float) -> _Entry:
        entry = table.get(key)
        if entry is not None and entry.in_flight == 0 and now > entry.until + self.rules.lockout_seconds:
            entry = None  # quiet long enough: forgotten
        if entry is None:
            if len(table) >= self.rules.max_entries:
                self._sweep(table, now)
            entry = table[key] = _Entry()
        entry.touched = now
        return entry

    def _sweep(self, table: dict[str, _Entry], now: float) -> None:
        quiet = self.rules.lockout_seconds
        for key in [k for k, e in table.items() if e.in_flight == 0 and now > e.until + quiet]:
            del table[key]
        if len(table) >= self.rules.max_entries:  # still full: the ones idle longest go
            for key, _ in sorted(table.items(), key=lambda kv: kv[1].touched)[: len(table) // 10 + 1]:
                del table[key]

    # -- an attempt -----------------------------------------------------------------------------

    def admit(self, username: str, address: str | None) -> Ticket:
        """A ticket for one attempt, or TooManyRequests saying when to try again."""
        addr = address_key(address)
        r = self.rules
        with self._lock:
            now = self._clock()
            a = self._entry(self._addresses, addr, now)
            if now < a.until:
                locked = a.failures >= r.lockout_after
                raise TooManyRequests(
                    f"too many failed logins from this address: {'locked out' if locked else 'wait'} "
                    f"{math.ceil(a.until - now)} s", retry_after=math.ceil(a.until - now))
            if a.in_flight and a.failures + a.in_flight >= r.free:
                raise TooManyRequests("a login from this address is being checked: one at a time after "
                                      "failed logins", retry_after=1)
            trusted = self._trusted.get((username, addr), 0.0) > now
            u = None if trusted else self._entry(self._users, username, now)
            if u is not None:
                if now < u.until:
                    raise TooManyRequests(f"too many failed logins for this user name: wait "
                                          f"{math.ceil(u.until - now)} s", retry_after=math.ceil(u.until - now))
                if u.in_flight and u.failures + u.in_flight >= r.user_free:
                    raise TooManyRequests("a login for this user name is being checked: one at a time after "
                                          "failed logins", retry_after=1)
                u.in_flight += 1
            a.in_flight += 1
            return Ticket(addr, None if trusted else username, username)

    def failed(self, ticket: Ticket) -> tuple[int, float]:
        """Count a wrong password; returns the address's failures and its wait before the next attempt."""
        with self._lock:
            now = self._clock()
            a = self._close(ticket, now)
            if a is None:
                return 0, 0.0
            a.failures += 1
            wait = self._address_wait(a.failures)
            a.until = now + wait
            if ticket.user is not None:
                u = self._users.get(ticket.user)
                if u is not None:
                    u.failures += 1
                    u.until = max(u.until, now + self._user_wait(u.failures))
            return a.failures, wait

    def succeeded(self, ticket: Ticket) -> None:
        """The right password: the address is trusted for this user from now on (``trusted_days``)."""
        with self._lock:
            now = self._clock()
            if self._close(ticket, now) is None:
                return
            if len(self._trusted) >= self.rules.max_entries:
                self._trusted = {k: t for k, t in self._trusted.items() if t > now}
                while len(self._trusted) >= self.rules.max_entries:
                    del self._trusted[next(iter(self._trusted))]
            self._trusted.pop((ticket.username, ticket.address), None)
            self._trusted[(ticket.username, ticket.address)] = now + self.rules.trusted_days * 86400

    def release(self, ticket: Ticket) -> None:
        """The attempt ended without an answer on the password (an error of the service): nothing counted."""
        with self._lock:
            self._close(ticket, self._clock())

    def _close(self, ticket: Ticket, now: float) -> _Entry | None:
        if ticket.done:
            return None
        ticket.done = True
        a = self._addresses.get(ticket.address)
        if a is None:  # (forgotten while in flight: only when the table overflowed)
            a = self._addresses[ticket.address] = _Entry(touched=now)
        a.in_flight = max(0, a.in_flight - 1)
        if ticket.user is not None:
            u = self._users.get(ticket.user)
            if u is not None:
                u.in_flight = max(0, u.in_flight - 1)
        return a


@dataclass(frozen=True)
class LoginResult:
    token: str
    user: AuthUser


class PasswordChecks:
    """``KDF_AT_ONCE`` threads of their own that run password checks, those of known (user, address) pairs
    first: a flood of strangers' attempts queued before the owner's login does not make it wait."""

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [threading.Thread(target=self._run, name=f"password-check-{n}", daemon=True)
                         for n in range(auth.KDF_AT_ONCE)]
        for t in self._threads:
            t.start()

    def submit(self, first: bool, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((0 if first else 1, next(self._seq), (fn, args, fut)))
        return fut

    def _run(self) -> None:
        while True:
            _, _, item = self._queue.get()
            if item is None:
                return
            fn, args, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put((2, next(self._seq), None))  # after whatever is queued


class Logins:
    """The login service of a running process: its throttle and the threads that check passwords."""

    def __init__(self, rules: ThrottleRules | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.throttle = LoginThrottle(rules, clock)
        self._kdf = PasswordChecks()
        self._waiting = 0  # logins between admission and their password check's end (event loop only)

    async def login(self, catalog: Catalog, reads: Executor, username: str, password: str, address: str | None,
                    ttl_seconds: int) -> LoginResult:
        """A token for ``username`` if ``password`` is theirs; NotAuthenticated if not; TooManyRequests when
        the throttle refuses the attempt (then nothing else happens)."""
        ticket = self.throttle.admit(username, address)
        rules = self.throttle.rules
        try:
            known = ticket.user is None  # the address logged in as this user lately
            if self._waiting >= rules.max_waiting and not known:
                raise TooManyRequests("too many logins are being checked at once", retry_after=1)
            self._waiting += 1
            try:
                row = await _read(catalog, reads, username)
                user = await asyncio.wrap_future(self._kdf.submit(known, auth.check_password, row, password))
            finally:
                self._waiting -= 1
        except NotAuthenticated:
            failures, wait = self.throttle.failed(ticket)
            if failures >= rules.lockout_after and wait:
                log.warning("login failed: user %s from %s; %d failed logins from this address, locked out for "
                            "%.0f s", shown(username), address or "-", failures, wait)
            else:
                log.warning("login failed: user %s from %s (%d failed from this address lately)", shown(username),
                            address or "-", failures)
            raise
        except BaseException:
            self.throttle.release(ticket)
            raise
        self.throttle.succeeded(ticket)
        token = await anyio.to_thread.run_sync(_issue, catalog, user, ttl_seconds)
        return LoginResult(token, user)

    def close(self) -> None:
        self._kdf.close()


async def _read(catalog: Catalog, reads: Executor, username: str) -> auth.PasswordRow | None:
    """The user's password row: on a local catalog (SQLite) right here, a fraction of a millisecond; across
    the network on the API's read threads (``api.deps.run_read`` does the same for the hot GETs)."""
    if catalog.local:
        return _password_row(catalog, username)
    return await asyncio.get_running_loop().run_in_executor(reads, _password_row, catalog, username)


def _password_row(catalog: Catalog, username: str) -> auth.PasswordRow | None:
    with catalog.transaction(write=False) as s:
        return auth.password_row(s, username)


def _issue(catalog: Catalog, user: AuthUser, ttl_seconds: int) -> str:
    with catalog.transaction(write=True) as s:
        return auth.issue_token(s, user, ttl_seconds)
