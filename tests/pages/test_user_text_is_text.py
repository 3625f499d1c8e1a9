"""User text is rendered as text on every page (issue 22, hole 7): stored notes, sign-off reasons, text samples,
group values, job messages and usernames that hold Markdown reach the browser escaped, so no viewer's browser
fetches an attacker's image or shows their link. Each test stores the attack through a service, as an attacker
with an account would, and reads what the page hands to Streamlit's Markdown renderer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from audit.services.governance.principals import Principal
from pages.ui import literal

ROOT = Path(__file__).resolve().parents[2]
BEACON = "![b](http://x/beacon.png)"
FAKE_LINK = "[Session expired](http://x)"
ATTACKS = [BEACON, FAKE_LINK, "**bold**", "<img src=x>"]
# What Streamlit's renderer would still act on once backslash escapes are taken out: an image, a link, a bare
# URL (turned into a link after parsing) or HTML. (Strong emphasis is left out: pages bold their own words.)
_ESCAPED = re.compile(r"\\[!-/:-@\[-`{-~]")
_LIVE_MARKDOWN = ("![", "](", "http://", "<img")


def _live_markdown(value: str) -> list[str]:
    unescaped = _ESCAPED.sub("", value)
    return [mark for mark in _LIVE_MARKDOWN if mark in unescaped]


def assert_shown_as_text(values: list[str], attacks: list[str] = ATTACKS) -> None:
    """Every attack appears, escaped, in one of the rendered Markdown strings, and no string gives the renderer
    an image, a link or markup to act on."""
    for attack in attacks:
        assert any(literal(attack) in v for v in values), (attack, values)
        assert not any(attack in v for v in values), (attack, values)
    assert not [(v, _live_markdown(v)) for v in values if _live_markdown(v)]


def _markdown_values(at: AppTest) -> list[str]:
    """The Markdown bodies of every element kind that renders Markdown, main area and sidebar."""
    found: list[str] = []
    for kind in ("markdown", "caption", "subheader", "header", "title", "info", "warning", "error", "success"):
        found += [e.value for e in getattr(at, kind)]
    found += [e.label for e in at.expander] + [e.label for e in at.metric] + [str(e.value) for e in at.metric]
    return found


def _page(name: str, principal: Principal, timeout: int = 180) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / name), default_timeout=timeout)
    at.session_state["principal"] = principal
    return at


def test_the_helper_escapes_what_markdown_would_act_on():
    for attack in ATTACKS + ["see http://x.example and www.x.example", "a@b.example", ":material/lock: :red[x]",
                             "1. list\n- item\n===", "`code` $x$ ~~s~~ &amp; | t |"]:
        shown = literal(attack)
        assert not _live_markdown(shown), shown
        left = _ESCAPED.sub("", shown)
        assert not any(mark in left for mark in ("**", "~~", "`", "$", "<", "[", "www.", ":m", ":r")), shown
        assert not re.search(r"[\w.+-]@", left), shown  # an e-mail address would become a mailto: link
    assert literal("notes-b 1.0") == "notes-b 1.0"  # plain text stays as it is


def test_registry_notes_are_text(audit_home, tmp_path):
    from safetensors.torch import save_file

    from audit.models.zoo import SmallCNN
    from audit.services.core.registry import ModelSource, register_version

    weights = tmp_path / "w.safetensors"
    save_file(SmallCNN(width=8).state_dict(), str(weights))
    register_version(family="tiny", version="1", task="image-classification",
                     source=ModelSource("state_dict", weights, "small_cnn", {"width": 8}), labels=list("0123456789"),
                     input_spec={"channels": 1, "height": 32, "width": 32, "mean": [0.0], "std": [1.0]},
                     notes=" ".join(ATTACKS), description=BEACON)
    at = _page("registry.py", Principal("vic", "viewer")).run()
    assert not at.exception, at.exception
    values = _markdown_values(at)
    assert_shown_as_text(values)
    notes = next(v for v in values if v.startswith("**Notes:**"))
    assert notes == "**Notes:** " + literal(" ".join(ATTACKS))


def test_reports_sign_off_reason_is_text(register_small_cnn):
    from audit.services.analyses.reports.service import generate_report, sign_report

    register_small_cnn("tiny", "1")
    rid = generate_report("tiny", "1", compute_missing=False, actor=Principal("alice", "auditor"))["id"]
    sign_report(rid, decision="rejected", reason=" ".join(ATTACKS), actor=Principal("bob", "auditor"))
    at = _page("reports.py", Principal("vic", "viewer")).run()
    assert not at.exception, at.exception
    values = _markdown_values(at)
    assert_shown_as_text(values)
    assert any(v.startswith("**Decision:** rejected by bob") and v.endswith(literal(" ".join(ATTACKS)))
               for v in (m.value for m in at.markdown)), [m.value for m in at.markdown]
    assert any(literal(" ".join(ATTACKS)) in i.value for i in at.info)


@pytest.fixture()
def text_attacks(tiny_text):
    """The tiny text model with a reference set whose texts and group values are the attacks."""
    from audit.services.core.datasets import add_text_dataset

    texts = [f"{ATTACKS[i % 4]} she has a stable income ." for i in range(40)]
    add_text_dataset("attacks", texts, [i % 2 for i in range(40)], [{"team": ATTACKS[i % 4]} for i in range(40)],
                     label_names=["decline", "approve"])
    return tiny_text


def test_text_samples_are_text(text_attacks):
    at = _page("text.py", Principal("vic", "viewer")).run()
    at.radio[0].set_value("Reference sample").run()
    reference = next(s for s in at.selectbox if s.label == "Reference set")
    reference.set_value("attacks").run()
    assert not at.exception, at.exception
    values = _markdown_values(at)
    assert literal(f"{BEACON} she has a stable income .") in values  # the sample itself, escaped
    assert_shown_as_text(values, [BEACON])  # the sample and its group value
    next(s for s in at.slider if s.label == "Sample").set_value(1).run()
    assert_shown_as_text(_markdown_values(at), [FAKE_LINK])


def test_bias_group_values_are_text(text_attacks):
    at = _page("bias.py", Principal("ann", "auditor"), timeout=300).run()
    next(s for s in at.selectbox if s.label == "Reference set").set_value("attacks").run()
    at.number_input[0].set_value(0)
    next(b for b in at.button if b.label == "Run the audit").click().run()
    assert not at.exception, at.exception
    values = _markdown_values(at)
    heading = next(v for v in values if v.startswith("By group"))
    assert _live_markdown(heading) == [] and "worst accuracy: " in heading
    # Groups of ten are below the minimum size: each one is named in a warning.
    assert_shown_as_text([w.value for w in at.warning])
    assert_shown_as_text(values)
    charts = [json.dumps(json.loads(c.proto.spec), ensure_ascii=False) for c in at.get("plotly_chart")]
    assert charts and not any("<img src=x>" in spec for spec in charts)  # Plotly reads tags in its labels
    assert any("&lt;img src=x&gt;" in spec for spec in charts)


def test_job_messages_and_errors_are_text(tiny_image):
    from audit.services.jobs import queue as J

    auditor = Principal("ann", "auditor")
    params = {"family": "tiny", "version": "1", "dataset": "ref", "methods": ["saliency"]}
    running = J.submit_job("explain", params, actor=auditor)
    failed = J.submit_job("explain", params, actor=auditor)
    for job_id in (running.id, failed.id):
        assert J.claim_next(worker_id=f"w{job_id}", executor="local", lease_s=600).id == job_id
    J.heartbeat(running.id, worker_id=f"w{running.id}", lease_s=600, progress=0.5, message=BEACON)
    J.finish_job(failed.id, worker_id=f"w{failed.id}", status="failed", error=" ".join(ATTACKS))
    at = _page("jobs.py", auditor).run()
    assert not at.exception, at.exception
    assert any(e.value == literal(" ".join(ATTACKS)) for e in at.error), [e.value for e in at.error]
    assert_shown_as_text(_markdown_values(at))
    progress = [str(p.proto.text) for p in _elements(at.main, "progress")]
    assert any(literal(BEACON) in t for t in progress) and not any(BEACON in t for t in progress), progress


def _elements(node, kind: str) -> list:  # noqa: ANN001 - an AppTest element tree
    found = [node] if getattr(node, "type", None) == kind else []
    children = getattr(node, "children", None)
    for child in (children.values() if isinstance(children, dict) else []):
        found += _elements(child, kind)
    return found


def test_admin_page_usernames_are_text(audit_home):
    from audit.services.governance import auth

    auth.create_user("ada", "admin-pass-123", "admin")
    auth.create_user(BEACON, "viewer-pass-123", "viewer")
    at = _page("admin.py", Principal("ada", "admin"), timeout=60).run()
    next(s for s in at.selectbox if s.label == "User").set_value(BEACON)
    next(b for b in at.button if b.label == "Disable user").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == [f"{literal(BEACON)} disabled"]
    assert_shown_as_text(_markdown_values(at), [BEACON])


def test_the_signed_in_username_is_text(audit_home):
    from audit.services.governance import auth, sessions

    user = auth.create_user(FAKE_LINK, "viewer-pass-123", "viewer")
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.session_state["principal"] = user
    at.session_state["session_cookie"] = sessions.create_session(user)
    at.run()
    assert not at.exception, at.exception
    captions = [c.value for c in at.sidebar.caption]
    assert f"Signed in as **{literal(FAKE_LINK)}** (viewer)" in captions, captions
    assert_shown_as_text(captions, [FAKE_LINK])
