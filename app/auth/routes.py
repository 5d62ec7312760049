import time
from urllib.parse import urlsplit

from flask import (
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask.wrappers import Response
from flask_limiter import RateLimitExceeded, RequestLimit
from flask_login import current_user, login_required, login_user, logout_user

from app import (
    accounts,
    devices,
    errors,
    limiter,
    notices,
    ratelimit,
    sessions,
    text,
    times,
    twofactor,
)
from app.audit import trail
from app.auth import bp
from app.auth.forms import CodeForm, LoginForm, LogoutForm, RegisterForm
from app.extensions import db
from app.models import User
from app.web import client_ip, key_policy, passwords


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect would make our login page a phishing aid.
    No control characters either: CR LF in a Location header is refused by Werkzeug
    with an exception, which answered 500 after the login was recorded."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and text.problem(target) is None
    ):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and "\\" not in target:
            return target
    return url_for("portal.dashboard")


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def register() -> ResponseReturnValue:
    if not current_app.config["REGISTRATION_OPEN"]:
        return render_template("auth/closed.html"), 403
    if current_user.is_authenticated:
        return redirect(url_for("portal.keys"))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_user(
                db.session,
                passwords(),
                email=form.email.data or "",
                password=form.password.data or "",
                actor_ip=client_ip(),
            )
        except accounts.AccountError as exc:
            db.session.rollback()
            form.email.errors.append(str(exc))
        else:
            session.clear()
            login_user(user)
            flash("Welcome to Keyledger. Create your first API key below.", "success")
            return redirect(url_for("portal.keys"))
    return render_template("auth/register.html", form=form), 400 if form.errors else 200


def _throttled(email: str, retry_after: int, limit: str) -> ResponseReturnValue:
    """The one answer to a throttled log-in, whichever budget ran out and whether the
    password was right or not (it is not checked); audited."""
    accounts.record_throttled(
        db.session, email=email, actor_ip=client_ip(), limit=limit, retry_after=retry_after
    )
    minutes = max(1, -(-retry_after // 60))
    response = make_response(render_template("auth/throttled.html", minutes=minutes), 429)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _ip_breach(limit: RequestLimit) -> ResponseReturnValue:
    """The per-IP login limit (LOGIN_RATE_LIMIT) ran out: the same page, audited."""
    email = request.form.get("email", "") if request.form else ""
    retry = max(1, int(limit.reset_at - time.time()) + 1)
    return _throttled(email if isinstance(email, str) else "", retry, "ip")


@bp.errorhandler(RateLimitExceeded)
def _limit_page(exc: RateLimitExceeded) -> ResponseReturnValue:
    """Flask-Limiter raises with the page `_ip_breach` made; register keeps the
    generic 429 page."""
    if exc.response is not None:
        return exc.response
    return errors.http_error_page(exc)


def _account_limit() -> str:
    return current_app.config["LOGIN_ACCOUNT_LIMIT"]


def _tell_failures(user: User) -> None:
    spell = accounts.disabled_since_last_login(db.session, user)
    if spell is not None:
        again = (
            f" and enabled it again on {times.display(spell.enabled_at)} UTC"
            if spell.enabled_at
            else ""
        )
        flash(
            f"An administrator disabled your account on {times.display(spell.disabled_at)} UTC"
            f"{again}. Your API keys were revoked then and stay revoked: create new "
            "ones on the API keys page.",
            "warning",
        )
    failed = accounts.failed_since_last_login(db.session, user)
    if failed.count:
        where = ", ".join(failed.ips[:5]) + (" and others" if len(failed.ips) > 5 else "")
        plural = "attempt" if failed.count == 1 else "attempts"
        flash(
            f"{failed.count} failed log-in {plural} on your account since your last "
            f"log-in, from {where}. If that was not you, change your password on your "
            "account page.",
            "warning",
        )


DEVICE_SCOPE = "login-device"


def _login_budget(email: str) -> tuple[str, str]:
    """Which log-in budget this attempt spends (OWASP's device cookies).

    A browser that has logged in to this account before (its signed device cookie is
    one the account knows) has a budget of its own, so failures from anywhere else
    cannot lock its owner out. Every other attempt spends the account's budget, known
    and unknown addresses alike (and the per-IP limit on the route)."""
    device_id = devices.read(current_app.config["SECRET_KEY"], request.cookies.get(devices.COOKIE))
    if device_id is not None:
        user = accounts.find_user(db.session, email) if len(email) <= 254 else None
        if user is not None and devices.is_known(db.session, user.id, device_id):
            return DEVICE_SCOPE, devices.budget_id(device_id)
    return "login-account", accounts.throttle_id(email)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], on_breach=_ip_breach)
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("portal.dashboard"))
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data or ""
        scope, budget = _login_budget(email)
        # Spent before the password is checked, in one atomic step in the storage: a
        # test-then-spend let concurrent guesses through past the limit.
        if not ratelimit.spend_budget(_account_limit(), scope, budget):
            retry = ratelimit.budget_spent(_account_limit(), scope, budget) or 60
            return _throttled(email, retry, "device" if scope == DEVICE_SCOPE else "account")
        try:
            user = accounts.check_credentials(
                db.session,
                passwords(),
                email=email,
                password=form.password.data or "",
                actor_ip=client_ip(),
            )
        except accounts.AccountInactive as exc:
            form.password.errors.append(str(exc))
        else:
            if user is not None:
                if twofactor.has_second_factor(db.session, user):
                    return _start_code_step(user, request.args.get("next"))
                return finish_login(user, request.args.get("next"))
            form.password.errors.append("Email or password is wrong.")
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


def finish_login(
    user: User, next_url: str | None, details: dict[str, str] | None = None
) -> ResponseReturnValue:
    """Every factor has passed: record the log-in and start the session."""
    session.clear()  # nothing of the anonymous session carries over
    accounts.record_login(db.session, user, actor_ip=client_ip(), details=details)
    login_user(user)
    _tell_failures(user)
    need = twofactor.requirement(db.session, user, current_app.config)
    if need.required and need.deadline is not None:
        response = redirect(url_for("auth.two_factor"))
    else:
        response = redirect(_safe_next(next_url))
    _remember_device(user, response)
    return response


def _remember_device(user: User, response: Response) -> None:
    """Tell the owner about a log-in from a browser the account has not seen."""
    secret = current_app.config["SECRET_KEY"]
    device_id = devices.read(secret, request.cookies.get(devices.COOKIE))
    if device_id is None:
        device_id, cookie = devices.new_cookie(secret)
        response.set_cookie(
            devices.COOKIE,
            cookie,
            max_age=devices.COOKIE_DAYS * 86400,
            httponly=True,
            secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
            samesite="Lax",
        )
    label = sessions.device(request.headers.get("User-Agent"))
    if devices.seen(db.session, user.id, device_id, label) is devices.Seen.NEW:
        notices.send(
            user,
            "new_device",
            device=label,
            ip_address=client_ip() or "unknown",
            time=f"{times.display(times.now())} UTC",
        )


# The password was right and a second factor is due: who, since when, and where to go
# next live in the (signed) anonymous session until the code step ends it.
PENDING_USER, PENDING_AT, PENDING_NEXT = "2fa_user", "2fa_at", "2fa_next"
PENDING_SECONDS = 300


def _start_code_step(user: User, next_url: str | None) -> ResponseReturnValue:
    session.clear()
    session[PENDING_USER] = user.id
    session[PENDING_AT] = int(time.time())
    session[PENDING_NEXT] = next_url or ""
    return redirect(url_for("auth.login_code"))


def pending_user() -> User | None:
    """The user whose password was right, while the code step is open."""
    uid, at = session.get(PENDING_USER), session.get(PENDING_AT)
    if not isinstance(uid, int) or not isinstance(at, int):
        return None
    if not 0 <= time.time() - at <= PENDING_SECONDS:
        return None
    user = db.session.get(User, uid)
    return user if user is not None and user.is_active else None


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], on_breach=_ip_breach)
def login_code() -> ResponseReturnValue:
    """The second step: a code from the app or a recovery code (or a passkey, whose
    answer goes to /login/passkey). Each code tried spends the account's log-in budget."""
    if current_user.is_authenticated:
        return redirect(url_for("portal.dashboard"))
    user = pending_user()
    if user is None:
        session.pop(PENDING_USER, None)
        flash("Log in again: the code step lasts five minutes.", "info")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    if form.validate_on_submit():
        budget = accounts.throttle_id(user.email)
        # Spent first, atomically, as the password step does: no burst of codes at once.
        if not ratelimit.spend_budget(_account_limit(), "login-account", budget):
            retry = ratelimit.budget_spent(_account_limit(), "login-account", budget) or 60
            return _throttled(user.email, retry, "account")
        try:
            method = twofactor.verify_code(
                db.session, key_policy().pepper, user, form.code.data or "", actor_ip=client_ip()
            )
        except twofactor.CodeRefused as exc:
            form.code.errors = [*form.code.errors, str(exc)]
        else:
            if method == "recovery_code":
                left = twofactor.recovery_codes_left(db.session, user)
                flash(
                    f"Recovery code used; {left} left. Make new ones on your account page.",
                    "warning",
                )
            return finish_login(user, session.get(PENDING_NEXT) or None, {"factor": method})
    passkeys = twofactor.passkey_count(db.session, user)
    return render_template(
        "auth/login_code.html", form=form, passkeys=passkeys
    ), 400 if form.errors else 200


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> ResponseReturnValue:
    form = LogoutForm()
    if form.validate_on_submit():
        trail.record(
            db.session,
            "user.logout",
            actor=f"user:{current_user.id}",
            actor_ip=client_ip(),
            target=f"user:{current_user.id}",
        )
        db.session.commit()
        logout_user()
        flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
