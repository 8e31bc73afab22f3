"""Rate limits (Flask-Limiter on the app's Redis): per volunteer token and per hashed address.

Raw IP addresses are never stored: the limiter's key for an address is an HMAC of it
under a key derived from the app's secret and the current day, so it rotates daily and
cannot be reversed or linked across days.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

from flask import Blueprint, Flask, current_app, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded

from web.extensions import error_body, error_page

def address_key() -> str:
    day_key = hmac.new(current_app.secret_key.encode(), f"address:{date.today().isoformat()}".encode(),
                       hashlib.sha256).digest()
    return "a:" + hmac.new(day_key, (request.remote_addr or "").encode(), hashlib.sha256).hexdigest()[:32]


def volunteer_key() -> str:
    from web.auth import VOLUNTEER_COOKIE, VOLUNTEER_HEADER, volunteer_id_from_token

    token = request.headers.get(VOLUNTEER_HEADER) or request.cookies.get(VOLUNTEER_COOKIE)
    volunteer_id = volunteer_id_from_token(token) if token else None
    return f"v:{volunteer_id}" if volunteer_id is not None else address_key()


def init_app(app: Flask, limited: tuple[Blueprint, ...]) -> Limiter:
    """Limit the volunteer API per token (per address for calls without one); limits come from the config.

    One limit per request keeps the cost to one Redis round trip; new tokens are limited
    per address (``RATELIMIT_ADDRESS``), so minting tokens does not escape the limits.
    """
    app.config.setdefault("RATELIMIT_VOLUNTEER", "600/minute")
    app.config.setdefault("RATELIMIT_ADDRESS", "60/minute")
    redis = app.extensions["microtasks"].redis
    app.config.setdefault("RATELIMIT_STORAGE_URI", "redis://")
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"connection_pool": redis.connection_pool})
    limiter = Limiter(key_func=address_key, key_prefix="mt-limits")
    for blueprint in limited:
        limiter.limit(lambda: current_app.config["RATELIMIT_VOLUNTEER"], key_func=volunteer_key)(blueprint)
    # Where new tokens come from, and where passwords are hashed (sign-up) or guessed (sign-in).
    for endpoint in ("volunteers.Volunteers", "volunteer.task", "volunteers.Account", "volunteers.Login",
                     "volunteer_account.signup", "volunteer_account.login"):
        app.view_functions[endpoint] = limiter.limit(lambda: current_app.config["RATELIMIT_ADDRESS"],
                                                     key_func=address_key, methods=["POST", "GET"],
                                                     override_defaults=False)(app.view_functions[endpoint])
    limiter.exempt(app.view_functions["volunteers.Health"])
    limiter.init_app(app)

    @app.errorhandler(RateLimitExceeded)
    def too_many(error: RateLimitExceeded):  # type: ignore[no-untyped-def]
        wait = int(error.limit.limit.get_expiry())
        if request.path.startswith("/api/"):
            response = jsonify(error_body(429, f"Too many requests ({error.description}); try again in {wait} s."))
        else:
            response = error_page(error)
        response.headers["Retry-After"] = str(wait)
        return response, 429

    return limiter
