"""Accessibility (issue #7, WCAG 2.2 AA): axe-core on every page, plus what axe cannot check.

axe-core (from the npm registry, installed for the tests only by ``./dev test`` into
tests/axe/node_modules) runs in the real pages in headless Chromium: every page on a phone in the
light and the dark colour scheme, and the volunteer pages in Arabic and at desktop size too. Any violation of
impact "serious" or "critical" fails the test, which prints the rule, its help and the
elements at fault. Screenshots of each page go to test-artifacts/a11y-*.png, and axe's full
report (minor and moderate findings included) to test-artifacts/a11y-*.json.

What axe cannot check is tested on its own: a visible focus on every control when tabbing
through the task pages (each focused state is screenshot to test-artifacts/focus-*.png), tap
targets of at least 24 x 24 px, edges of form fields and numbers drawn on SVG bars that stand
out in both colour schemes, pages that fit 320 px without scrolling sideways, and feedback and
problems announced in live regions that are not inside a busy element. Circles can be sized
without dragging (WCAG 2.5.7): with the − and + buttons, or with the keyboard.

The API docs page (/api/docs) is left out: it is Swagger UI, third-party code we serve as it
is and cannot fix at its root; the same API is documented in the README.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import (
    ARTIFACTS,
    MARKING,
    PHONE,
    TAGGING,
    TIMEOUT_MS,
    Fingers,
    answer,
    gold_project,
    png_bytes,
    shoot,
    wait_for_unit,
)

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
RULESETS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
FAILING = {"serious", "critical"}
SIZES = {"phone": PHONE, "desktop": {"viewport": {"width": 1280, "height": 800}},
         "narrow": {**PHONE, "viewport": {"width": 320, "height": 640}}}
#: WCAG 2.2 success criterion 2.5.8 (target size, minimum), in CSS pixels.
MIN_TARGET = 24

TUTORIAL = [{"title": "Look closely", "text": "Each image shows one animal."},
            {"title": "Tap its name", "text": "Not sure? That is a useful answer too."}]


@dataclass
class Visit:
    """What opening one page needs: the browser page, the app's test client and the project helpers."""

    page: Any
    server: str
    lang: str
    client: Any
    owner: dict[str, Any]
    make_project: Callable[..., dict[str, Any]]
    new_volunteer: Callable[[], dict[str, str]]
    run_jobs: Callable[[], int]

    def go(self, path: str) -> None:
        """Open ``path``; the first page of an Arabic visit asks for Arabic (a cookie keeps it)."""
        self.page.goto(self.server + path + ("?lang=ar" if self.lang == "ar" else ""))

    def answered_project(self, labels: list[str], **settings: Any) -> dict[str, Any]:
        """A tagging project whose first units have one answer per label, consensus worked out."""
        project = self.make_project({**TAGGING, "redundancy": 2, **settings}, n=3)
        for label in labels:
            headers = self.new_volunteer()
            served = self.client.post(f"/api/v1/projects/{project['id']}/next", headers=headers).get_json()
            assert answer(self.client, headers, served["unit"]["id"], {"label": label}).status_code == 201
        self.run_jobs()
        return project

    def sign_in(self) -> None:
        """The owner signs in with their API key."""
        self.go("/owner/login")
        self.page.locator("details.alt-login summary").click()
        self.page.locator("#api_key").fill(self.owner["key"])
        self.page.locator("details.alt-login button[type=submit]").click()
        self.page.wait_for_url("**/owner/")


# -- the pages: each opens one page in one state -----------------------------------------------------


def project_list(v: Visit) -> None:
    v.make_project({**TAGGING, "name": "Space rocks", "slug": "space-rocks", "topics": ["space"]}, n=2)
    v.make_project({**TAGGING, "name": "Garden birds", "slug": "garden-birds", "topics": ["wildlife"]}, n=1)
    v.go("/")


def tagging_with_tutorial(v: Visit) -> None:
    project = v.make_project({**TAGGING, "tutorial": TUTORIAL}, n=2)
    v.go(f"/p/{project['slug']}")
    wait_for_unit(v.page)
    v.page.wait_for_selector("#howto[open]")


def tagging(v: Visit) -> None:
    tagging_with_tutorial(v)
    v.page.locator("#tutorial-skip").click()
    # the dialog's close event, a moment after it closes, hands focus to the first answer
    v.page.wait_for_function("() => document.activeElement === document.querySelector('.label-button')")


def marking(v: Visit) -> None:
    project = v.make_project(MARKING, n=2, size=(640, 480))
    v.go(f"/p/{project['slug']}")
    wait_for_unit(v.page)
    v.page.locator("#surface").focus()
    v.page.keyboard.press("Enter")  # a mark, placed with the keyboard: it is named too
    v.page.wait_for_selector("#surface .mark")


def field_guide(v: Visit) -> None:
    project = v.make_project(TAGGING, n=1)
    example = v.client.post(f"/api/v1/projects/{project['id']}/images", headers=v.owner["headers"],
                            data={"file": (io.BytesIO(png_bytes(300, 200, "orange")), "cat.png")},
                            content_type="multipart/form-data").get_json()
    v.client.patch(f"/api/v1/projects/{project['id']}", headers=v.owner["headers"], json={"field_guide": [
        {"label": "cat", "text": "Pointed ears and whiskers.", "image": example["media"]},
        {"label": "dog", "text": "A longer snout."}]})
    v.go(f"/p/{project['slug']}")
    wait_for_unit(v.page)
    v.page.locator("#guide-open").click()
    v.page.wait_for_selector("#guide[open] img")


def tagging_feedback(v: Visit) -> None:
    """A wrong answer to a practice image: the kind message over the next image; Low data on."""
    project = gold_project(v.client, v.owner, v.run_jobs, TAGGING, [("a.png", "dog"), ("b.png", "")],
                           size=(640, 480))
    v.go(f"/p/{project['slug']}")
    wait_for_unit(v.page)
    v.page.locator("#low-data").click()
    v.page.locator(".label-button[data-label=cat]").click()
    v.page.wait_for_function("() => document.getElementById('feedback').textContent !== ''")
    wait_for_unit(v.page)


def marking_feedback(v: Visit) -> None:
    """After a practice image with known marks: both kinds drawn, the legend, the note and Next image."""
    project = gold_project(v.client, v.owner, v.run_jobs, MARKING,
                           [("a.png", '[{"x": 420, "y": 200, "r": 60}]'), ("b.png", "")], size=(640, 480))
    v.go(f"/p/{project['slug']}")
    wait_for_unit(v.page)
    v.page.locator("#surface").focus()
    v.page.keyboard.press("Enter")
    v.page.locator("#submit").click()
    v.page.wait_for_selector("#next-row:not([hidden])")


def image_failed(v: Visit) -> None:
    """The image cannot be loaded: the alert, with Retry now and Skip this image."""
    project = v.make_project(TAGGING, n=2)
    v.page.route("**/media/**", lambda route: route.abort())
    v.go(f"/p/{project['slug']}")
    v.page.wait_for_selector("#problem-skip:not([hidden])")


def end_screen(v: Visit) -> None:
    project = v.make_project({**TAGGING, "redundancy": 1}, n=1)
    v.go(f"/p/{project['slug']}")
    wait_for_unit(v.page)
    v.page.locator(".label-button").first.click()
    v.page.wait_for_selector("#done:not([hidden])")
    v.page.wait_for_selector("#done-results:not([hidden])")


def volunteer_account(v: Visit) -> None:
    project = v.make_project(TAGGING, n=2)
    v.go(f"/p/{project['slug']}")
    first = wait_for_unit(v.page)
    v.page.locator(".label-button").first.click()
    v.page.wait_for_function("src => document.getElementById('unit-image').getAttribute('src') !== src"
                             " && document.getElementById('task').getAttribute('aria-busy') === 'false'", arg=first)
    v.page.goto(v.server + "/me")
    v.page.wait_for_selector("table.results")


def about(v: Visit) -> None:
    project = v.answered_project(["cat", "cat", "dog", "bird"], description="Tell cats from dogs.")
    v.go(f"/p/{project['slug']}/about")


def owner_sign_in(v: Visit) -> None:
    v.go("/owner/login")
    v.page.locator("details.alt-login summary").click()  # the API key form too


def owner_sign_up(v: Visit) -> None:
    v.go("/owner/signup")


def owner_projects(v: Visit) -> None:
    v.make_project(TAGGING, n=1)
    v.sign_in()


def owner_project(v: Visit) -> None:
    project = v.answered_project(["cat", "cat", "dog"])
    v.sign_in()
    v.page.goto(f"{v.server}/owner/projects/{project['id']}")
    v.page.wait_for_selector("#dashboard[aria-busy='false']")


def owner_settings(v: Visit) -> None:
    project = v.make_project({**TAGGING, "tutorial": TUTORIAL}, n=1)
    v.sign_in()
    v.page.goto(f"{v.server}/owner/projects/{project['id']}/settings")


def owner_account(v: Visit) -> None:
    v.sign_in()
    v.page.goto(f"{v.server}/owner/account")


VOLUNTEER_PAGES = {"projects": project_list, "tagging-tutorial": tagging_with_tutorial, "tagging": tagging,
                   "marking": marking, "field-guide": field_guide, "end-screen": end_screen,
                   "me": volunteer_account, "about": about}
#: Feedback and problems: states of the task page that the other pages do not show.
STATES = {"tagging-feedback": tagging_feedback, "marking-feedback": marking_feedback, "image-failed": image_failed}
OWNER_PAGES = {"owner-sign-in": owner_sign_in, "owner-sign-up": owner_sign_up, "owner-projects": owner_projects,
               "owner-project": owner_project, "owner-settings": owner_settings, "owner-account": owner_account}
PAGES = {**VOLUNTEER_PAGES, **STATES, **OWNER_PAGES}
#: (language, size, colour scheme): every page on a phone in English, light and dark; the volunteer
#: pages in Arabic and on a desktop screen too, and the task page's feedback in Arabic.
EVERY_PAGE = [("en", "phone", "light"), ("en", "phone", "dark")]
CASES = [pytest.param(name, *variant, id=f"{name}-{'-'.join(variant)}")
         for variants, pages in ((EVERY_PAGE, PAGES), ([("ar", "phone", "light")], {**VOLUNTEER_PAGES, **STATES}),
                                 ([("en", "desktop", "light")], VOLUNTEER_PAGES))
         for variant in variants for name in pages]


@pytest.fixture()
def visit(browser, server, client, owner, make_project, new_volunteer, run_jobs) -> Iterator[Callable[..., Visit]]:
    """A new browser context of the given size, language and colour scheme; fails the test on any page error."""
    contexts, problems = [], []

    def new(lang: str = "en", size: str = "phone", scheme: str = "light") -> Visit:
        # bypass_csp: our Content-Security-Policy forbids inline scripts, and Playwright injects axe as one.
        context = browser.new_context(**SIZES[size], color_scheme=scheme, bypass_csp=True)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
        return Visit(page, server, lang, client, owner, make_project, new_volunteer, run_jobs)

    yield new
    for context in contexts:
        context.close()
    assert not problems, problems


def run_axe(page) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """axe-core's violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    return page.evaluate("""async (tags) => {
        const results = await axe.run(document, {runOnly: tags, resultTypes: ['violations']});
        return results.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
          nodes: v.nodes.map((n) => ({target: n.target.join(' '), impact: n.impact, summary: n.failureSummary}))}));
    }""", RULESETS)


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        lines += [f"    {n['target']}: {n['summary']}".replace("\n", " ") for n in v["nodes"]]
    return "\n".join(lines)


@pytest.mark.parametrize(("name", "lang", "size", "scheme"), CASES)
def test_axe_finds_no_serious_violation(visit, name: str, lang: str, size: str, scheme: str):
    """axe-core (WCAG 2.0-2.2 A/AA and best practice) finds nothing serious or critical on the page."""
    if not AXE.exists():
        pytest.fail(f"axe-core is missing at {AXE}: run `npm ci --prefix tests/axe` (./dev test does).")
    v = visit(lang, size, scheme)
    PAGES[name](v)
    if lang == "ar":
        assert v.page.evaluate("document.documentElement.dir") == "rtl"
    label = f"a11y-{name}-{lang}-{size}-{scheme}"
    shoot(v.page, label)
    violations = run_axe(v.page)
    (ARTIFACTS / f"{label}.json").write_text(json.dumps(violations, indent=1, ensure_ascii=False))
    serious = [v for v in violations if v["impact"] in FAILING]
    assert not serious, "\n" + describe(serious)


# -- what axe cannot check -------------------------------------------------------------------------------

FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {name: el.id || el.dataset.label || el.textContent.trim().slice(0, 30) || el.tagName,
          outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
          shadow: style.boxShadow !== 'none', visible: box.width > 0 && box.height > 0};
}"""


def tab_through(page, label: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Press Tab until focus comes back round; screenshot each focused control; return what was focused."""
    for old in ARTIFACTS.glob(f"focus-{label}-*.png"):
        old.unlink()
    seen: list[dict[str, Any]] = []
    for i in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:
            continue
        if seen and focused["name"] == seen[0]["name"]:
            break
        page.screenshot(path=str(ARTIFACTS / f"focus-{label}-{i:02d}.png"))
        seen.append(focused)
    return seen


@pytest.mark.parametrize("name", ["tagging", "marking"])
def test_every_control_on_the_task_page_shows_where_focus_is(visit, name: str):
    """Tabbing through the task page reaches every control, and each shows a visible focus ring."""
    ARTIFACTS.mkdir(exist_ok=True)
    v = visit()
    VOLUNTEER_PAGES[name](v)
    seen = tab_through(v.page, name)
    names = [f["name"] for f in seen]
    expected = {"tagging": ["howto-open", "low-data", "cat", "dog", "bird", "unsure", "skip"],
                "marking": ["howto-open", "low-data", "surface", "undo", "submit", "skip"]}[name]  # a mark is drawn
    assert all(control in names for control in expected), ", ".join(names)
    invisible = [f["name"] for f in seen if not (f["outline"] or f["shadow"]) or not f["visible"]]
    assert not invisible, f"no visible focus on {invisible}"


TARGETS = """() => [...document.querySelectorAll('button, a[href], [role=button], summary, input, select')]
  .filter((el) => el.checkVisibility() && !el.closest('[inert]'))
  .map((el) => { const b = el.getBoundingClientRect();
    return {name: el.id || el.dataset.label || el.textContent.trim().slice(0, 30),
            width: b.width, height: b.height}; })"""


@pytest.mark.parametrize("name", ["tagging-tutorial", "tagging", "marking", "field-guide", "end-screen"])
def test_tap_targets_on_the_task_page_are_at_least_24_px(visit, name: str):
    """Every visible button and link is at least 24 x 24 CSS pixels (WCAG 2.2, 2.5.8)."""
    v = visit()
    VOLUNTEER_PAGES[name](v)
    targets = v.page.evaluate(TARGETS)
    assert targets
    small = [t for t in targets if t["width"] < MIN_TARGET or t["height"] < MIN_TARGET]
    assert not small, small


CONTRAST = """
const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
const luminance = (c) => {
  const [r, g, b] = rgb(c).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const ratio = (a, b) => {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
};
const background = (el) => {
  for (; el; el = el.parentElement) {
    const c = getComputedStyle(el).backgroundColor;
    if (!/^rgba\\(.*, 0\\)$/.test(c) && c !== 'transparent') return c;
  }
  return 'rgb(255, 255, 255)';
};
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_form_fields_have_edges_that_stand_out(visit, scheme: str):
    """The edge of every text field contrasts 3:1 with the field and with what is around it (WCAG 1.4.11)."""
    v = visit(scheme=scheme)
    volunteer_account(v)
    edges = v.page.evaluate(CONTRAST + """
      [...document.querySelectorAll('input:not([type=hidden]):not([type=checkbox]), textarea, select')]
        .map((el) => { const edge = getComputedStyle(el).borderTopColor;
          return {field: el.id, inside: ratio(edge, background(el)),
                  outside: ratio(edge, background(el.parentElement))}; })""")
    assert edges
    faint = [e for e in edges if min(e["inside"], e["outside"]) < 3]
    assert not faint, faint


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_numbers_on_the_dashboard_bars_are_legible(visit, scheme: str):
    """The counts written on the units bar contrast 4.5:1 with their segment (axe cannot measure SVG text)."""
    v = visit(scheme=scheme)
    owner_project(v)
    labels = v.page.evaluate(CONTRAST + """
      [...document.querySelectorAll('#plot-units .seg-label')].map((text) => {
        const part = [...text.classList].find((c) => c.startsWith('seg-label-')).slice('seg-label-'.length);
        const bar = document.querySelector(`#plot-units rect.seg-${part}`);
        return {part, ratio: ratio(getComputedStyle(text).fill, getComputedStyle(bar).fill)};
      })""")
    assert len(labels) == 3, labels
    low = [label for label in labels if label["ratio"] < 4.5]
    assert not low, low


@pytest.mark.parametrize("name", ["projects", "tagging", "marking", "end-screen", "me", "about"])
def test_volunteer_pages_fit_a_320_px_screen_without_sideways_scrolling(visit, name: str):
    """At 320 CSS pixels wide nothing sticks out sideways (WCAG 1.4.10, reflow)."""
    v = visit(size="narrow")
    VOLUNTEER_PAGES[name](v)
    # A phone widens its layout to fit what sticks out, so elements are measured against the screen's 320 px.
    wide = v.page.evaluate("""() => [...document.querySelectorAll('body *')]
      .filter((el) => el.checkVisibility() && el.getBoundingClientRect().right > 321
                      && !el.closest('.results'))
      .map((el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${[...el.classList].join('.')}`)""")
    assert not wide, wide


#: Every change of a live region's text: where, what, and whether an element around it was busy then.
LIVE = """(() => {
  window.__live = [];
  new MutationObserver((records) => {
    for (const record of records) {
      const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
      const region = node?.closest('[role=status], [role=alert], [aria-live]');
      if (region?.textContent.trim()) {
        window.__live.push({id: region.id, text: region.textContent.trim(),
                            busy: !!region.closest('[aria-busy=true]')});
      }
    }
  }).observe(document, {subtree: true, childList: true, characterData: true});
})();"""
ANNOUNCED = {"tagging-feedback": ("feedback", "practice"), "marking-feedback": ("review-note", "practice"),
             "image-failed": ("message", "could not be loaded")}


@pytest.mark.parametrize("name", list(ANNOUNCED))
def test_feedback_and_problems_are_announced_outside_busy_regions(visit, name: str):
    """Gold feedback and problems land in a live region (status or alert) while nothing around it is busy:
    screen readers ignore changes inside aria-busy="true" and do not announce them afterwards."""
    v = visit()
    v.page.add_init_script(LIVE)
    STATES[name](v)
    region, words = ANNOUNCED[name]
    messages = v.page.evaluate("window.__live.filter((m) => ['feedback', 'review-note', 'status', 'message',"
                               " 'queue-note'].includes(m.id))")
    assert any(m["id"] == region and words in m["text"] for m in messages), messages
    assert not [m for m in messages if m["busy"]], messages


def test_a_circle_can_be_sized_without_dragging(visit):
    """A tap places a circle, and the + and − buttons size it (WCAG 2.5.7: no drag needed); Undo undoes a size."""
    v = visit()
    project = v.make_project(MARKING, n=1, size=(640, 480))
    v.go(f"/p/{project['slug']}")
    wait_for_unit(v.page)
    box = v.page.locator("#unit-image").bounding_box()
    Fingers(v.page).tap((box["x"] + box["width"] / 2, box["y"] + box["height"] / 2))
    for name in ("Bigger circle", "Bigger circle", "Bigger circle", "Smaller circle"):
        v.page.get_by_role("button", name=name).tap()
    v.page.get_by_role("button", name="Undo").tap()  # takes back the last size only
    with v.page.expect_request(lambda r: r.url.endswith("/answers")) as sent:
        v.page.get_by_role("button", name="Submit").tap()
    [mark] = sent.value.post_data_json["payload"]["marks"]
    assert mark["r"] == pytest.approx(640 * 0.04 * 1.25 ** 3, abs=0.01)
