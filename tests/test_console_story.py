"""The console's whole story in a real browser, against a real `pgvault serve` and PostgreSQL, as an operator
lives it: log in, register an instance through the form, watch its first backup complete on its page, see
the fleet overview show it protected, restore one database under a new name through the restore form and
follow the job to its end, find the data in PostgreSQL itself, log out, and find every page closed.
(Each page's own browser test goes deeper: tests/test_console_*.py.)"""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect
from psycopg import sql
from tests.support.data import fill, fingerprint, recreate_database

DB = "story_app"
RESTORED = "story_app_restored"


def test_the_operators_whole_story(chromium, service, pg, tmp_path):
    recreate_database(pg, DB)
    fill(pg, DB, rows=300)
    with pg.connect() as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(RESTORED)))
    original = fingerprint(pg, DB)
    name = f"story-{uuid.uuid4().hex[:6]}"
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # log in; the first page is the fleet
    page.goto(service.url + "/")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(service.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()

    # register through the form: a wrong password first, said in PostgreSQL's words next to the field
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Register").click()
    page.get_by_label("Instance name").fill(name)
    page.get_by_label("Host", exact=True).fill("127.0.0.1")
    page.get_by_label("Port", exact=True).fill(str(pg.port))
    page.get_by_label("PostgreSQL version").fill("18")
    page.get_by_label("Login user").fill("postgres")
    page.get_by_label("Password", exact=True).fill("not-" + pg.password)
    page.get_by_role("button", name="Register and back up").click()
    expect(page.locator("#err-password")).to_contain_text("password authentication failed")
    page.get_by_label("Password", exact=True).fill(pg.password)
    page.get_by_role("button", name="Register and back up").click()
    page.wait_for_url(re.compile(r".*/instances/\d+\?done=registered$"))

    # its first backup completes on its page (the page follows it by itself)
    expect(page.locator("#jobs")).to_contain_text("Completed", timeout=180_000)
    expect(page.locator("#restore-points tr[id^=point-]").first).to_be_visible()

    # the fleet overview shows it protected, in words
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Fleet").click()
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Filter").click()
    row = page.locator("tr", has=page.get_by_role("link", name=name))
    expect(row).to_contain_text("within RPO")
    expect(row).to_contain_text("Completed")

    # restore one database under a new name, from the instance's page through the restore form
    row.get_by_role("link", name=name).click()
    page.get_by_role("link", name="Restore…").click()
    page.get_by_role("radio").first.check()  # the newest restore point
    page.get_by_role("button", name="Next: what to restore").click()
    page.get_by_role("checkbox", name=DB, exact=True).check()
    page.get_by_role("button", name="Next: target").click()
    page.get_by_role("radio", name=re.compile("under new names")).check()
    page.get_by_label(f"{DB} becomes").fill(RESTORED)
    page.get_by_role("button", name="Next: options").click()
    page.get_by_role("button", name="Next: summary").click()
    expect(page.locator("#plan")).to_contain_text(f"database {RESTORED}")
    page.get_by_role("button", name="Start the restore").click()
    page.wait_for_url(re.compile(r".*/jobs/\d+$"))
    expect(page.locator("#job-state")).to_contain_text("Completed", timeout=180_000)
    page.screenshot(path=tmp_path / "story-restore-job.png", full_page=True)
    assert fingerprint(pg, RESTORED) == original  # the data, read from PostgreSQL itself

    # log out: every page and form is closed to this browser now
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/login$"))
    for path in ("/", "/jobs", "/plans", "/restore", "/instances/new"):
        page.goto(service.url + path)
        assert "/login" in page.url, path
    assert errors == [], errors
    context.close()
