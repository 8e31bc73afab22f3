"""The volunteer's own page, /me: an optional account, what they have done, their data, erasing it.

The forms post here with the session's CSRF token; the identity stays the volunteer
cookie, whose token the API also accepts. The download is the API's
``GET /api/v1/volunteers/me/data``, which the cookie authenticates.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy.exc import IntegrityError

from microtasks.accounts import MIN_PASSWORD
from microtasks.errors import MicrotasksError
from microtasks.models import Volunteer
from microtasks.volunteers import Moved, authenticate, create_account, create_volunteer, erase, merge
from web.api.volunteers.routes import refresh_serving, summary
from web.auth import clear_volunteer_cookie, current_volunteer_id, set_volunteer_cookie
from web.extensions import db

bp = Blueprint("volunteer_account", __name__, url_prefix="/me")


def _current() -> Volunteer | None:
    """The volunteer named by this browser's cookie, if it still exists."""
    volunteer_id = current_volunteer_id(required=False)
    return db().get(Volunteer, volunteer_id) if volunteer_id is not None else None


def _page(status: int = 200, **context: Any) -> Any:
    volunteer = _current()
    response = make_response(render_template(
        "volunteer/account.html", volunteer=volunteer, summary=summary(volunteer) if volunteer else None,
        form=request.form, **context), status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _back(volunteer: Volunteer | None = None) -> Any:
    response = redirect(url_for("volunteer_account.me"))
    return set_volunteer_cookie(response, volunteer) if volunteer is not None else response


@bp.get("")
def me():  # type: ignore[no-untyped-def]
    return _page()


@bp.post("/signup")
def signup():  # type: ignore[no-untyped-def]
    """Make an account of this browser's volunteer (a new one if it has none yet): the history stays."""
    form = request.form
    if form.get("password", "") != form.get("confirm", ""):
        flash(_("The two passwords differ."))
        return _page(422)
    volunteer = _current() or create_volunteer(db())
    try:
        create_account(db(), volunteer.id, form.get("username", "").strip(), form.get("password", ""))
        db().commit()
    except MicrotasksError as error:
        db().rollback()
        flash(_explain(error))
        return _page(error.status)
    except IntegrityError:  # a concurrent sign-up took the name first
        db().rollback()
        flash(_("That username is taken."))
        return _page(409)
    flash(_("Your account is made. Everything you did so far is kept in it."))
    return _back(volunteer)


def _explain(error: MicrotasksError) -> str:
    """The sign-up's refusal in the page's language."""
    if error.field == "password":
        return ngettext("A password needs at least %(num)d character.", "A password needs at least %(num)d characters.",
                        MIN_PASSWORD)
    if error.field == "username":
        return _("That username is taken.") if error.status == 409 else _(
            "A username has 3 to 80 letters, digits, dots, dashes or underscores, starting with a letter or digit.")
    return _("You already have an account: sign in instead.") if error.status == 409 else error.message


@bp.post("/login")
def login():  # type: ignore[no-untyped-def]
    """Sign in; what this browser did anonymously joins the account."""
    account = authenticate(db(), request.form.get("username", "").strip(), request.form.get("password", ""))
    if account is None:
        flash(_("That username and password are not known."))
        return _page(401)
    device = current_volunteer_id(required=False)
    moved = merge(db(), device, account.id) if device is not None else Moved()
    db().commit()
    refresh_serving(moved)
    flash(_("Signed in as %(name)s.", name=account.username))
    if moved.answers:
        flash(ngettext("%(num)d answer from this device joined your account.",
                       "%(num)d answers from this device joined your account.", moved.answers))
    return _back(account)


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    volunteer = _current()
    if volunteer is not None and volunteer.username is None:
        flash(_("You have no account, so signing out would lose your history: make an account first."))
        return _page(409)
    flash(_("Signed out. The next project you open starts a new anonymous volunteer."))
    return clear_volunteer_cookie(redirect(url_for("volunteer_account.me")))


@bp.route("/erase", methods=["GET", "POST"])
def erase_me():  # type: ignore[no-untyped-def]
    """Erase this browser's volunteer, after a confirmation step; the answers stay, detached."""
    volunteer = _current()
    if volunteer is None:
        return redirect(url_for("volunteer_account.me"))
    if request.method == "GET" or request.form.get("confirm") != "1":
        return _page(confirm_erase=True)
    moved = erase(db(), volunteer.id)[1]  # (not `_, moved`: `_` is gettext here)
    db().commit()
    refresh_serving(moved)
    flash(_("Your data is erased. Your answers stay for science, under an id that nothing links to you."))
    return clear_volunteer_cookie(redirect(url_for("volunteer_account.me")))
