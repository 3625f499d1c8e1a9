"""Real browser, governance: a reload or a new tab stays signed in and a sign-out reaches every tab; the
four-eyes sign-off (the author cannot sign, another auditor signs, the status is final)."""

from __future__ import annotations

import secrets
import time

import pytest
import torch
from playwright.sync_api import expect

from .conftest import USERS, _login
from .serving import open_page


def _signed_out(page) -> None:
    page.get_by_role("button", name="Sign in").wait_for()
    # The sign-in form can be drawn while the previous run's sidebar ("Signed in as ...") is still on the page
    # as a stale element; Streamlit removes it when the rerun ends. Wait for that, then it must be gone.
    expect(page.get_by_text("Signed in as")).to_have_count(0, timeout=20_000)


def test_reload_and_new_tab_stay_signed_in_until_sign_out(page, login, app_url):
    login("viewer")
    page.wait_for_timeout(1500)  # the page posts the one-time code that sets the cookie
    cookie = next(c for c in page.context.cookies() if c["name"] == "audit_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.reload()
    page.get_by_text("Signed in as vic").wait_for()
    other = page.context.new_page()  # a new tab of the same browser
    other.goto(app_url)
    other.get_by_text("Signed in as").wait_for()
    page.get_by_role("button", name="Sign out").click()
    _signed_out(page)
    # The other tab is signed out at its next interaction, without a reload...
    other.get_by_role("link", name="Reports").first.click()
    _signed_out(other)
    other.get_by_text("Your session ended").wait_for()
    # ...and a tab opened now, or a reload, finds no session either.
    third = page.context.new_page()
    third.goto(app_url)
    _signed_out(third)
    page.reload()
    _signed_out(page)
    assert not [c for c in page.context.cookies() if c["name"] == "audit_session"]


@pytest.fixture()
def fresh_family(app_url):
    """A new family with one draft version, so the sign-off can run on a reused demo registry too."""
    from safetensors.torch import save_file

    from audit.models.zoo import SmallCNN
    from audit.services.core.registry import ModelSource, register_version
    from storage.db import audit_home

    family = f"e2e-signoff-{secrets.token_hex(3)}"
    path = audit_home() / f"{family}.safetensors"
    torch.manual_seed(0)
    save_file(SmallCNN(width=8).state_dict(), str(path))
    register_version(family=family, version="1", task="image-classification",
                     source=ModelSource("state_dict", path, "small_cnn", {"width": 8}),
                     labels=[str(i) for i in range(10)],
                     input_spec={"channels": 1, "height": 32, "width": 32, "mean": [0.0], "std": [1.0]})
    path.unlink()
    # Ann generates the report (through the service: the page's Generate button queues a job for the worker).
    from audit.services.governance.principals import Principal
    from audit.services.analyses.reports.service import generate_report

    generate_report(family, "1", compute_missing=False, actor=Principal(USERS["auditor"][0], "auditor"))
    return family


def _choose(page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).first.click()
    page.get_by_role("option", name=option).first.click()


def test_four_eyes_sign_off_in_the_browser(page, login, browser, app_url, fresh_family):
    login("auditor")  # ann, the report's author
    open_page(page, "Reports", "Compliance reports")
    _choose(page, "Model family", fresh_family)
    # Wait for the chosen family's reports: the first family's may show the same texts until the rerun lands.
    page.get_by_text(f"Reports for {fresh_family} 1").wait_for()
    page.get_by_text("You generated this report").wait_for()
    expect(page.get_by_role("button", name="Sign off")).to_have_count(0, timeout=20_000)

    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        bob = ctx.new_page()
        bob.set_default_timeout(120_000)
        _login(bob, app_url, "auditor2")
        open_page(bob, "Reports", "Compliance reports")
        _choose(bob, "Model family", fresh_family)
        bob.get_by_text(f"Reports for {fresh_family} 1").wait_for()
        bob.get_by_role("button", name="Sign off").wait_for()
        from audit.services.core.registry import get_version

        def signed() -> bool:
            return get_version(fresh_family, "1")["status"] == "approved"

        refused = bob.get_by_text("give the reason for the decision")
        for attempt in range(3):
            # Under load a rerun of the page can land between typing and the click and the form is sent
            # without the reason; the service then refuses ("give the reason ...") and signs nothing.
            bob.get_by_text("approved", exact=True).first.click()
            reason = bob.get_by_role("textbox", name="Reason")
            reason.fill("reviewed the stored evidence")
            reason.press("Tab")  # leave the field, as a person does
            bob.get_by_role("button", name="Sign off").click()
            if attempt:
                refused.wait_for(state="detached")  # the last refusal goes with this submit's rerun
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not signed() and not refused.count():
                time.sleep(0.5)
            if signed():
                break
        else:
            print("--- the signer's page at failure ---\n" + bob.inner_text("body", timeout=5000)[-3000:])
        assert signed()
        # Final: the Registry offers no status move for a decided version.
        open_page(bob, "Registry", "Model registry")
        heading = bob.get_by_role("heading", name=fresh_family, exact=True)
        heading.wait_for()
        # The first "Version 1 details" after the family's heading is its own (other families have one too).
        summary = heading.locator("xpath=following::summary[contains(., 'Version 1 details')][1]")
        summary.click()
        details = summary.locator("xpath=ancestor::details[1]")
        details.get_by_text("Approved by a signed report: final").wait_for()
        expect(details.get_by_role("button", name="Move to")).to_have_count(0, timeout=20_000)
        # Back on the Reports page, the version shows its decision and offers no sign form.
        open_page(bob, "Reports", "Compliance reports")
        _choose(bob, "Model family", fresh_family)
        bob.get_by_text(f"Reports for {fresh_family} 1").wait_for()
        bob.get_by_text(f"Decision: approved by {USERS['auditor2'][0]}", exact=False).wait_for()
        expect(bob.get_by_role("button", name="Sign off")).to_have_count(0, timeout=20_000)
    finally:
        ctx.close()
    from audit.services.governance.principals import Principal
    from audit.services.core.registry import set_status

    assert get_version(fresh_family, "1")["status"] == "approved"
    with pytest.raises(ValueError, match="never changes status"):
        set_status(fresh_family, "1", "draft", actor=Principal(USERS["auditor2"][0], "auditor"))
