"""Languages (issue #7): the Arabic catalogue is complete and keeps every placeholder, the language is chosen
by ``?lang=``, then the ``mt_lang`` cookie, then ``Accept-Language``, Arabic pages run right to left, and a
project's own Arabic texts reach the volunteer.
"""

from __future__ import annotations

import json
import re
from gettext import c2py
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from tests.conftest import TAGGING, csrf_token, sign_in

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "web" / "translations"
SCRIPTS = ROOT / "web" / "static" / "js"
PLACEHOLDER = re.compile(r"%\((\w+)\)([sd])")
#: Plural categories that stand for one number each: their form may name it in words instead of ``%(num)d``.
SINGLE_NUMBER = {"zero", "one", "two"}

ARABIC_PROJECT = {**TAGGING, "name": "Cats and dogs", "description": "Tell cats from dogs.",
                  "instructions": "Which animal is it?", "languages": ["en", "ar"],
                  "translations": {"ar": {"name": "قطط وكلاب", "description": "ميّز القطط من الكلاب.",
                                          "instructions": "أي حيوان هذا؟",
                                          "labels": {"cat": "قطة", "dog": "كلب", "bird": "طائر"}}}}


def catalogue(code: str) -> Catalog:
    with (TRANSLATIONS / code / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=code)


def key(message_id: str | tuple[str, ...]) -> str:
    return message_id[0] if isinstance(message_id, tuple) else message_id


@pytest.fixture(scope="module")
def extracted() -> dict[str, list[str]]:
    """A fresh extraction with babel.cfg, as ``pybabel extract`` makes it: each msgid with its locations."""
    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(str(ROOT), method_map, options_map):
        found.setdefault(key(message), []).append(f"{filename}:{lineno}")
    return found


def test_every_message_of_the_pages_and_scripts_has_an_arabic_translation(extracted):
    """Every msgid a fresh extraction finds is in the Arabic catalogue, translated (every plural form) and not fuzzy."""
    arabic = {key(m.id): m for m in catalogue("ar") if m.id}
    problems = []
    for msgid, where in sorted(extracted.items()):
        message = arabic.get(msgid)
        forms = [] if message is None else list(message.string) if message.pluralizable else [message.string]
        if message is None or message.fuzzy or not forms or not all(forms):
            state = "missing" if message is None else "fuzzy" if message.fuzzy else "untranslated"
            problems.append(f"{state}: {msgid!r} at {', '.join(where)}")
    assert not problems, "run pybabel extract and update (web/translations/README.md), then translate:\n" + \
        "\n".join(problems)


def test_messages_of_the_scripts_keep_their_script_locations(extracted):
    """A message used in web/static/js keeps a .js location in the catalogue, so its page sends it to the scripts."""
    arabic = {key(m.id): m for m in catalogue("ar") if m.id}
    lost = [msgid for msgid, where in extracted.items() if any(w.split(":")[0].endswith(".js") for w in where)
            and msgid in arabic and not any(path.endswith(".js") for path, _line in arabic[msgid].locations)]
    assert lost == [], "run pybabel update (web/translations/README.md): " + repr(lost)


def test_every_string_the_scripts_translate_is_extracted(extracted):
    """Each literal ``_('…')``/``ngettext('…'`` in the scripts is found by the extractor (not hidden in a
    template literal's ``${}`` or inside another call's arguments, which Babel's extractor skips)."""
    missed = []
    for path in sorted(SCRIPTS.glob("*.js")):
        source = re.sub(r"^\s*//.*$", "", path.read_text(encoding="utf-8"), flags=re.M)
        for text in re.findall(r"\b(?:_|ngettext)\(\s*'((?:[^'\\]|\\.)*)'", source):
            if text not in extracted:
                missed.append(f"{path.name}: {text!r}")
    assert missed == []


@pytest.mark.parametrize("code", ["ar", "en"])
def test_translations_keep_the_placeholders_of_their_message(code):
    """Every translation has its msgid's ``%(name)s`` placeholders, of the same type; a plural form standing for
    one number (zero, one, two) may write that number in words instead of ``%(num)d``."""
    catalog = catalogue(code)
    order = [tag for tag in ("zero", "one", "two", "few", "many", "other")
             if tag in Locale.parse(code).plural_form.tags or tag == "other"]
    problems = []
    for message in catalog:
        if not message.id:
            continue
        ids = list(message.id) if message.pluralizable else [message.id]
        expected = {found for text in ids for found in PLACEHOLDER.findall(text)}
        forms = list(message.string) if message.pluralizable else [message.string]
        in_script = any(path.endswith(".js") for path, _line in message.locations)
        for index, form in enumerate(forms):
            if not form:
                continue
            got = set(PLACEHOLDER.findall(form))
            optional = {("num", "d")} if message.pluralizable and order[index] in SINGLE_NUMBER else set()
            if not (expected - optional <= got <= expected):
                problems.append(f"{message.id!r} form {index}: {sorted(got)} instead of {sorted(expected)}")
            stray = PLACEHOLDER.sub("", form).replace("%%", "")
            if "%" in stray or (in_script and "%%" in form):
                problems.append(f"{message.id!r} form {index}: a lone % (write %% in pages, % in scripts)")
    assert problems == []


def test_the_arabic_plural_forms_follow_the_order_the_scripts_use(tmp_path):
    """The catalogue's Plural-Forms rule picks, for every number, the form of its CLDR category in the order
    static/js/i18n.js uses (zero, one, two, few, many, other)."""
    from web.i18n import compile_catalogues

    order = compile_catalogues(tmp_path)["ar"]["volunteer"]["plural"]
    gettext_index = c2py(catalogue("ar").plural_expr)  # as Python's gettext (Flask-Babel) reads the rule
    categories = Locale.parse("ar").plural_form
    wrong = [n for n in range(0, 1200) if order[gettext_index(n)] != categories(n)]
    assert wrong == []


def test_lang_ar_renders_right_to_left_and_is_remembered_by_a_cookie(client):
    """?lang=ar gives an Arabic page laid out right to left and sets mt_lang; later pages follow the cookie."""
    page = client.get("/?lang=ar")
    html = page.get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in html
    assert "ساعد العلم في دقائق معدودة" in html
    assert re.search(r"mt_lang=ar;.*Max-Age=31536000", page.headers["Set-Cookie"])
    later = client.get("/").get_data(as_text=True)  # no ?lang=: the cookie decides
    assert '<html lang="ar" dir="rtl">' in later
    back = client.get("/?lang=en")
    assert '<html lang="en" dir="ltr">' in back.get_data(as_text=True) and "mt_lang=en" in back.headers["Set-Cookie"]
    assert '<html lang="en" dir="ltr">' in client.get("/").get_data(as_text=True)


def test_the_browsers_language_decides_without_a_choice(client):
    """Without ?lang= or a cookie, Accept-Language picks Arabic (or English, the default)."""
    arabic = client.get("/", headers={"Accept-Language": "ar-EG,ar;q=0.9,en;q=0.5"})
    assert '<html lang="ar" dir="rtl">' in arabic.get_data(as_text=True)
    assert "Set-Cookie" not in arabic.headers or "mt_lang" not in arabic.headers["Set-Cookie"]
    assert "Accept-Language" in arabic.headers["Vary"] and "Cookie" in arabic.headers["Vary"]
    other = client.get("/", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert '<html lang="en" dir="ltr">' in other.get_data(as_text=True)
    chosen = client.get("/?lang=en", headers={"Accept-Language": "ar"})
    assert '<html lang="en" dir="ltr">' in chosen.get_data(as_text=True)  # a choice beats the browser


def test_an_unknown_language_is_ignored(client):
    """?lang=xx is no language of ours: the page stays in English and no cookie is set."""
    page = client.get("/?lang=xx")
    assert '<html lang="en" dir="ltr">' in page.get_data(as_text=True)
    assert "mt_lang" not in page.headers.get("Set-Cookie", "")


def switch_links(html: str) -> dict[str, dict[str, str]]:
    """The language switch's links by hreflang: their attributes."""
    nav = re.search(r'<nav class="langs"[^>]*>(.*?)</nav>', html, re.S)
    assert nav, "no language switch"
    links = {}
    for tag, text in re.findall(r"<a ([^>]*)>([^<]*)</a>", nav.group(1)):
        attrs = {name: unescape(value) for name, value in re.findall(r'([\w-]+)="([^"]*)"', tag)}
        attrs["text"] = text
        links[attrs["hreflang"]] = attrs
    return links


def test_the_language_switch_names_each_language_and_keeps_the_page(client):
    """The top bar offers English and العربية, each marked with its language; the current one is aria-current;
    each link keeps the page's address and its other arguments."""
    links = switch_links(client.get("/?topic=space&lang=ar").get_data(as_text=True))
    assert links["en"]["text"] == "English" and links["ar"]["text"] == "العربية"
    assert links["ar"]["lang"] == "ar" and links["en"]["lang"] == "en"
    assert links["ar"].get("aria-current") == "true" and "aria-current" not in links["en"]
    assert links["en"]["href"] == "/?topic=space&lang=en" and links["ar"]["href"] == "/?topic=space&lang=ar"


def test_the_language_switch_after_a_posted_form_goes_back_to_the_forms_page(client):
    """A page that answers a posted form switches language on the page the form was on."""
    reply = client.post("/me/signup", data={"csrf_token": csrf_token(client, "/me"), "username": "ab",
                                            "password": "x", "confirm": "y"},
                        headers={"Referer": "http://localhost/me"})
    assert reply.status_code == 422
    assert switch_links(reply.get_data(as_text=True))["ar"]["href"] == "/me?lang=ar"
    again = client.post("/me/signup", data={"csrf_token": csrf_token(client, "/me"), "username": "ab"},
                        headers={"Referer": "http://localhost/me/signup"})  # posted from the answer page
    assert switch_links(again.get_data(as_text=True))["ar"]["href"] == "/?lang=ar"


def test_a_projects_arabic_texts_appear_on_the_arabic_list_task_and_about_pages(client, make_project):
    """The owner's Arabic name, description, instructions and label names reach Arabic pages; English stays."""
    project = make_project(ARABIC_PROJECT, n=1)
    listing = client.get("/?lang=ar").get_data(as_text=True)
    assert "قطط وكلاب" in listing and "ميّز القطط من الكلاب." in listing and "Cats and dogs" not in listing
    assert "ابدأ: قطط وكلاب" in listing  # the Start link's accessible name
    task = client.get(f"/p/{project['slug']}?lang=ar").get_data(as_text=True)
    assert '<h1 dir="auto">قطط وكلاب</h1>' in task and "أي حيوان هذا؟" in task
    for label, name in (("cat", "قطة"), ("dog", "كلب"), ("bird", "طائر")):
        assert f'data-label="{label}"' in task and f">{name}</button>" in task
    settings = json.loads(re.search(r'id="project-settings">(.*?)</script>', task, re.S).group(1))
    assert settings["labels"] == ["cat", "dog", "bird"] and settings["names"]["cat"] == "قطة"
    about = client.get(f"/p/{project['slug']}/about?lang=ar").get_data(as_text=True)
    assert '<h1 id="about-title" dir="auto">قطط وكلاب</h1>' in about and "كيف تُحدَّد النتائج" in about
    english = client.get(f"/p/{project['slug']}?lang=en").get_data(as_text=True)
    assert '<h1 dir="auto">Cats and dogs</h1>' in english and ">cat</button>" in english


def test_an_arabic_page_carries_the_scripts_translations_with_six_plural_forms(client, make_project):
    """The Arabic task page embeds the scripts' strings: plurals as six forms, in the scripts' order."""
    project = make_project(ARABIC_PROJECT, n=1)
    html = client.get(f"/p/{project['slug']}?lang=ar").get_data(as_text=True)
    strings: dict[str, Any] = json.loads(re.search(r'id="i18n">(.*?)</script>', html, re.S).group(1))
    assert strings["plural"] == ["zero", "one", "two", "few", "many", "other"]
    assert strings["messages"]["%(num)d mark"] == ["لا علامات", "علامة واحدة", "علامتان", "%(num)d علامات",
                                                   "%(num)d علامة", "%(num)d علامة"]
    assert strings["messages"]["You are offline."] == "أنت غير متصل بالإنترنت."
    assert "No answers in the last 48 hours." not in strings["messages"]  # the owner's dashboard's: not sent here
    english = client.get(f"/p/{project['slug']}?lang=en").get_data(as_text=True)
    assert 'id="i18n"' not in english  # English needs none: the scripts' msgids are English


def test_owner_pages_and_their_messages_are_in_arabic(client, owner, make_project):
    """The owner's sign-in page and its refusal are in Arabic when Arabic is chosen, and the project page
    carries its dashboard's strings."""
    client.get("/?lang=ar")
    page = client.get("/owner/login").get_data(as_text=True)
    assert "<h1>أصحاب المشاريع</h1>" in page and 'dir="rtl"' in page
    refused = client.post("/owner/login", data={"csrf_token": csrf_token(client), "username": "nobody",
                                                "password": "wrong-password"})
    assert refused.status_code == 401
    assert "لا نعرف اسم المستخدم وكلمة المرور هذين" in refused.get_data(as_text=True)
    project = make_project(TAGGING, n=1)
    sign_in(client, owner)
    html = client.get(f"/owner/projects/{project['id']}").get_data(as_text=True)
    assert "<h2 id=\"dashboard-title\">لوحة المتابعة</h2>" in html
    strings = json.loads(re.search(r'id="i18n">(.*?)</script>', html, re.S).group(1))
    assert strings["messages"]["No answers in the last 48 hours."] == "لا إجابات في آخر 48 ساعة."
    assert "Saving your answer…" not in strings["messages"]  # the task page's: not sent here


def test_a_missing_page_is_explained_in_arabic_with_a_way_back(client):
    """A page that does not exist answers 404 with a page in the visitor's language, not the server's English."""
    response = client.get("/p/no-such-project?lang=ar")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert 'dir="rtl"' in page
    assert "لا توجد صفحة هنا" in page
    assert 'href="/"' in page
    assert "Not Found" not in page


def test_an_api_error_stays_json(client):
    """The API's errors are JSON whatever the language: only pages get an error page."""
    response = client.get("/api/v1/projects/999999?lang=ar")
    assert response.status_code in (401, 404)
    assert response.is_json
