"""The console in a real browser (Debian's Chromium through Playwright) against a real `pgvault serve`:
logging in with the keyboard, the fleet overview at desktop and phone width, times in the browser's own
time zone, logging out. Screenshots go to PGVAULT_SCREENSHOTS when it is set (docs/console.md's come
from there), else to the test's temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.flows import register

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PGVAULT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(page, service) -> None:  # type: ignore[no-untyped-def]
    page.goto(service.url + "/")
    assert page.url.startswith(service.url + "/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(service.admin_password)
    page.get_by_label("Password").press("Enter")  # the keyboard alone logs in
    page.wait_for_url(service.url + "/")


def test_log_in_see_the_fleet_and_log_out(chromium, service, api, pg, shots):
    _, job_id = register(api, pg, "browser-fleet")
    assert api.wait_job(job_id)["status"] == "Completed"
    context = chromium.new_context(viewport=DESKTOP, timezone_id="Asia/Shanghai", locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(service.url + "/login")
    page.screenshot(path=shots / "login.png")
    log_in(page, service)
    assert page.get_by_role("heading", name="Fleet").is_visible()
    row = page.locator("tr", has=page.get_by_role("link", name="browser-fleet"))
    assert "within RPO" in row.inner_text()
    # times in the browser's zone (Asia/Shanghai, UTC+8), UTC on hover
    stamp = row.locator("time").first
    assert stamp.get_attribute("title").endswith("UTC")
    assert stamp.inner_text() != stamp.get_attribute("title") and "UTC" not in stamp.inner_text()
    page.screenshot(path=shots / "fleet.png", full_page=True)

    page.get_by_label("Name").fill("no-such-instance")
    page.get_by_role("button", name="Filter").click()
    assert page.get_by_text("No instance matches these filters.").is_visible()

    # phone width: nothing but the table's own scroller is wider than the screen
    page.set_viewport_size(PHONE)
    page.goto(service.url + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    page.screenshot(path=shots / "fleet-phone.png")
    page.set_viewport_size(DESKTOP)

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(service.url + "/login")
    page.goto(service.url + "/")
    assert page.url.startswith(service.url + "/login")  # the session is over
    assert errors == [], errors  # no script errors, no resource refused by the Content-Security-Policy
    context.close()


def test_the_api_reference_renders_without_internet(chromium, service, shots):
    context = chromium.new_context(viewport=DESKTOP)
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(service.url) else None)
    page.goto(service.url + "/docs")
    page.get_by_text("/commandcenter/api/Login").first.wait_for()  # Swagger UI drew the operations
    page.screenshot(path=shots / "api.png")
    assert outside == []
    context.close()
