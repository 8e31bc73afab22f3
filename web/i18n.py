"""Languages: Flask-Babel for the pages, the same catalogue for the strings of the pages' scripts.

The language is the one the volunteer chose (``?lang=ar`` once; a cookie remembers
it), else the best match of the browser's ``Accept-Language``, else English. Arabic
pages are laid out right to left (``dir="rtl"``).

Catalogues are ``web/translations/<lang>/LC_MESSAGES/messages.po`` (made with
``pybabel extract -F babel.cfg`` and ``pybabel update``); they are compiled to ``.mo``
in the instance folder when the app starts, so no build step is needed. Strings in
``web/static/js`` are written ``_('…')`` and extracted into the same catalogue; each
page carries the translations of those strings as JSON for ``static/js/i18n.js``.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, current_app, request
from flask_babel import Babel, get_locale
from werkzeug.exceptions import HTTPException

#: Languages with a complete catalogue: code, name in itself, direction.
LANGUAGES: dict[str, tuple[str, str]] = {"en": ("English", "ltr"), "ar": ("العربية", "rtl")}
DEFAULT = "en"
COOKIE = "mt_lang"
SOURCE = Path(__file__).parent / "translations"
#: The scripts of the owner's pages: their strings go to those pages, not to the volunteers' (less to download).
OWNER_SCRIPTS = frozenset({"dashboard.js", "upload.js", "exports.js"})


def select_locale() -> str:
    chosen = request.args.get("lang") or request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT


def language() -> str:
    return str(get_locale() or DEFAULT)


def direction() -> str:
    return LANGUAGES.get(language(), LANGUAGES[DEFAULT])[1]


def switch_url(code: str) -> str:
    """This page in the language ``code``: its address with ``lang=code``, its other arguments kept.

    A page answering a posted form (its address may take no GET) switches on the page the
    form was on.
    """
    path = request.script_root + request.path
    args = [(name, value) for name, value in request.args.items(multi=True) if name != "lang"]
    if request.url_rule is None or "GET" not in (request.url_rule.methods or ()):
        came_from = urlsplit(request.referrer or "")
        inside = came_from.netloc == request.host and came_from.path.startswith(request.script_root + "/")
        page = came_from.path[len(request.script_root):] if inside else ""
        path = came_from.path if page and _takes_get(page) else request.script_root + "/"
        args = []
    return f"{path}?{urlencode([*args, ('lang', code)])}"


def _takes_get(path: str) -> bool:
    """Whether the app has a page at ``path`` (below the script root) that a link can open."""
    try:
        current_app.url_map.bind(request.host).match(path, method="GET")
    except HTTPException:
        return False
    return True


def compile_catalogues(target: Path) -> dict[str, dict[str, Any]]:
    """Compile each ``.po`` to ``.mo`` under ``target`` (atomically, when stale); return the scripts' strings.

    The scripts' strings of a language, for the owner's pages and for the others:
    ``{"owner" | "volunteer": {"messages": {msgid: msgstr or [plural forms]}, "plural": [CLDR plural
    categories in the order of the forms]}}``.
    """
    scripts: dict[str, dict[str, Any]] = {}
    for po_path in sorted(SOURCE.glob("*/LC_MESSAGES/messages.po")):
        code = po_path.parent.parent.name
        with po_path.open("rb") as handle:
            catalog = read_po(handle, locale=code)
        mo_path = target / code / "LC_MESSAGES" / "messages.mo"
        if not mo_path.exists() or mo_path.stat().st_mtime < po_path.stat().st_mtime:
            mo_path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            partial = mo_path.with_name(f".{uuid.uuid4().hex}.part")
            partial.write_bytes(buffer.getvalue())
            os.replace(partial, mo_path)
        pages: dict[str, dict[str, Any]] = {"owner": {}, "volunteer": {}}
        for message in catalog:
            used_in = {Path(path).name for path, _ in message.locations if path.endswith(".js")}
            if not message.id or message.fuzzy or not used_in:
                continue
            key = message.id[0] if isinstance(message.id, tuple) else message.id
            value = list(message.string) if isinstance(message.string, tuple) else message.string
            if value and (not isinstance(value, list) or all(value)):
                if used_in & OWNER_SCRIPTS:
                    pages["owner"][key] = value
                if used_in - OWNER_SCRIPTS:
                    pages["volunteer"][key] = value
        tags = Locale.parse(code).plural_form.tags
        order = [tag for tag in ("zero", "one", "two", "few", "many", "other") if tag in tags or tag == "other"]
        scripts[code] = {page: {"messages": messages, "plural": order} for page, messages in pages.items()}
    return scripts


def script_strings() -> dict[str, Any]:
    """The translations the page's scripts need, in the current language."""
    found = current_app.extensions["i18n_scripts"].get(language())
    if found is None:
        return {"messages": {}, "plural": ["one", "other"]}
    return found["owner" if request.blueprint == "owner" else "volunteer"]


def init_app(app: Flask, instance_dir: Path) -> None:
    compiled = instance_dir / "translations"
    app.extensions["i18n_scripts"] = compile_catalogues(compiled)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(compiled))
    Babel(app, locale_selector=select_locale)
    app.jinja_env.globals.update(language=language, direction=direction, languages=LANGUAGES,
                                 script_strings=script_strings, switch_url=switch_url)

    @app.after_request
    def remember_language(response):  # type: ignore[no-untyped-def]
        chosen = request.args.get("lang")
        if chosen in LANGUAGES and request.cookies.get(COOKIE) != chosen:
            response.set_cookie(COOKIE, chosen, max_age=365 * 86400, samesite="Lax", secure=request.is_secure)
        if not request.path.startswith(("/api/", "/static/", "/media/")):
            response.vary.add("Cookie")
            response.vary.add("Accept-Language")
        return response
