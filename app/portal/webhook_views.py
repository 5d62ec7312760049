"""The owner's webhook endpoints: register (secret shown once), edit, roll the secret,
delivery log (payloads, resend), test, remove."""

from flask import abort, flash, make_response, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from app.extensions import db
from app.models import WebhookEndpoint
from app.portal import bp
from app.portal.webhook_forms import (
    EVENT_LABELS,
    EmptyForm,
    EndpointForm,
    RemoveEndpointForm,
    RollSecretForm,
)
from app.ratelimit import budget_spent, spend_budget
from app.web import client_ip, refused
from app.webhooks import endpoints, service


@bp.before_request
def _start_webhook_dispatcher() -> None:
    # Portal requests only: the validation API gets no extra per-request hook.
    service.dispatcher().ensure_running()


def _own_endpoint_or_404(public_id: str) -> WebhookEndpoint:
    return endpoints.owned(db.session, current_user, public_id) or abort(404)


@bp.route("/account/webhooks", methods=["GET", "POST"])
@login_required
def webhooks() -> ResponseReturnValue:
    form = EndpointForm()
    if form.validate_on_submit():
        try:
            new = endpoints.create(
                db.session,
                service.settings(),
                current_user,
                url=form.url.data or "",
                events=form.events.data or [],
                actor_ip=client_ip(),
                description=form.description.data or "",
            )
        except endpoints.WebhookRequestError as exc:
            _refused(form, exc)
        else:
            return _secret_page(new)
    rows = endpoints.live(db.session, current_user)
    return render_template(
        "portal/webhooks.html",
        form=form,
        endpoints=rows,
        counts=endpoints.delivery_counts(db.session, current_user),
        labels=EVENT_LABELS,
        action_form=EmptyForm(),
        remove_form=RemoveEndpointForm(formdata=None),
    ), (400 if form.errors else 200)


def _over_budget(endpoint: WebhookEndpoint, budget: str, what: str) -> bool:
    """Spend one owner-triggered send (a test, a resend) from the endpoint's budget;
    when it is spent, say so and send nothing."""
    limit = service.settings().test_limit
    if spend_budget(limit, budget, endpoint.public_id):
        return False
    wait = budget_spent(limit, budget, endpoint.public_id) or 60
    flash(f"Too many {what} for this endpoint; try again in {wait} s.", "error")
    return True


def _refused(form: EndpointForm, exc: endpoints.WebhookRequestError) -> None:
    """The domain's refusal beside the field it is about, as a sentence."""
    field = form.events if "event" in str(exc) else form.url
    if "description" in str(exc):
        field = form.description
    refused(field, f"{str(exc)[:1].upper()}{str(exc)[1:]}.")


def _secret_page(new: endpoints.NewEndpoint, rolled: bool = False) -> ResponseReturnValue:
    response = make_response(render_template("portal/webhook_created.html", new=new, rolled=rolled))
    response.headers["Cache-Control"] = "no-store"
    return response


def _detail(endpoint: WebhookEndpoint, edit_form: EndpointForm | None = None, status: int = 200):
    return render_template(
        "portal/webhook.html",
        endpoint=endpoint,
        deliveries=endpoints.deliveries(db.session, endpoint),
        labels=EVENT_LABELS,
        action_form=EmptyForm(),
        edit_form=edit_form or EndpointForm(formdata=None, obj=endpoint),
        roll_form=RollSecretForm(formdata=None),
        remove_form=RemoveEndpointForm(formdata=None),
    ), status


@bp.route("/account/webhooks/<public_id>")
@login_required
def webhook_detail(public_id: str) -> ResponseReturnValue:
    return _detail(_own_endpoint_or_404(public_id))


@bp.route("/account/webhooks/<public_id>/log")
@login_required
def webhook_log(public_id: str) -> ResponseReturnValue:
    """The delivery log alone, which the page fetches again while a message is pending."""
    endpoint = _own_endpoint_or_404(public_id)
    return render_template(
        "portal/_webhook_log.html",
        endpoint=endpoint,
        deliveries=endpoints.deliveries(db.session, endpoint),
    )


@bp.route("/account/webhooks/<public_id>/edit", methods=["POST"])
@login_required
def webhook_edit(public_id: str) -> ResponseReturnValue:
    endpoint = _own_endpoint_or_404(public_id)
    form = EndpointForm()
    if form.validate_on_submit():
        try:
            changed = endpoints.update(
                db.session,
                service.settings(),
                current_user,
                endpoint,
                url=form.url.data or "",
                events=form.events.data or [],
                description=form.description.data or "",
                actor_ip=client_ip(),
            )
        except endpoints.WebhookRequestError as exc:
            _refused(form, exc)
        else:
            flash("The endpoint is saved." if changed else "Nothing changed.", "success")
            return redirect(url_for("portal.webhook_detail", public_id=public_id))
    return _detail(endpoint, edit_form=form, status=400)


@bp.route("/account/webhooks/<public_id>/roll", methods=["POST"])
@login_required
def webhook_roll(public_id: str) -> ResponseReturnValue:
    endpoint = _own_endpoint_or_404(public_id)
    if not RollSecretForm().validate_on_submit():
        flash("Tick the box to confirm. The secret was not changed.", "error")
        return redirect(url_for("portal.webhook_detail", public_id=public_id))
    new = endpoints.roll_secret(
        db.session, service.settings(), current_user, endpoint, actor_ip=client_ip()
    )
    return _secret_page(new, rolled=True)


@bp.route("/account/webhooks/<public_id>/deliveries/<int:delivery_id>")
@login_required
def webhook_delivery(public_id: str, delivery_id: int) -> ResponseReturnValue:
    endpoint = _own_endpoint_or_404(public_id)
    sent = endpoints.delivery(db.session, endpoint, delivery_id) or abort(404)
    return render_template(
        "portal/webhook_delivery.html",
        endpoint=endpoint,
        d=sent,
        payload=endpoints.pretty_payload(sent),
        action_form=EmptyForm(),
    )


@bp.route("/account/webhooks/<public_id>/deliveries/<int:delivery_id>/resend", methods=["POST"])
@login_required
def webhook_resend(public_id: str, delivery_id: int) -> ResponseReturnValue:
    endpoint = _own_endpoint_or_404(public_id)
    sent = endpoints.delivery(db.session, endpoint, delivery_id) or abort(404)
    back = redirect(url_for("portal.webhook_detail", public_id=public_id))
    if not EmptyForm().validate_on_submit():
        return back
    if _over_budget(endpoint, "webhook-resend", "resends"):
        return back
    try:
        endpoints.resend(db.session, current_user, endpoint, sent, actor_ip=client_ip())
    except endpoints.WebhookRequestError as exc:
        db.session.rollback()
        flash(f"{str(exc)[:1].upper()}{str(exc)[1:]}.", "error")
        return back
    flash("The message is queued again; the log below shows its result.", "success")
    return back


@bp.route("/account/webhooks/<public_id>/test", methods=["POST"])
@login_required
def webhook_test(public_id: str) -> ResponseReturnValue:
    endpoint = _own_endpoint_or_404(public_id)
    if EmptyForm().validate_on_submit():
        if _over_budget(endpoint, "webhook-test", "tests"):
            return redirect(url_for("portal.webhook_detail", public_id=public_id))
        endpoints.send_test(db.session, endpoint)
        flash("A test event is queued; it appears in the log below once sent.", "success")
    return redirect(url_for("portal.webhook_detail", public_id=public_id))


@bp.route("/account/webhooks/<public_id>/delete", methods=["POST"])
@login_required
def webhook_delete(public_id: str) -> ResponseReturnValue:
    endpoint = _own_endpoint_or_404(public_id)
    form = RemoveEndpointForm()
    if not form.validate_on_submit():  # CSRF is checked before the view (CSRFProtect)
        flash("Tick the box to confirm. The endpoint was not removed.", "error")
        return redirect(url_for("portal.webhook_detail", public_id=public_id))
    endpoints.remove(db.session, current_user, endpoint, actor_ip=client_ip())
    flash("The endpoint is removed; nothing more is sent to it.", "success")
    return redirect(url_for("portal.webhooks"))
