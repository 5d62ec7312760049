"""The owner's webhook endpoints: register (secret shown once), delivery log, test, remove."""

from flask import abort, flash, make_response, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from app.extensions import db
from app.models import WebhookEndpoint
from app.portal import bp
from app.portal.webhook_forms import EVENT_LABELS, EmptyForm, EndpointForm, RemoveEndpointForm
from app.ratelimit import budget_spent, spend_budget
from app.web import client_ip
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
            )
        except endpoints.WebhookRequestError as exc:
            db.session.rollback()
            form.url.errors = [*form.url.errors, f"{str(exc)[:1].upper()}{str(exc)[1:]}."]
        else:
            response = make_response(render_template("portal/webhook_created.html", new=new))
            response.headers["Cache-Control"] = "no-store"
            return response
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


@bp.route("/account/webhooks/<public_id>")
@login_required
def webhook_detail(public_id: str) -> ResponseReturnValue:
    endpoint = _own_endpoint_or_404(public_id)
    return render_template(
        "portal/webhook.html",
        endpoint=endpoint,
        deliveries=endpoints.deliveries(db.session, endpoint),
        labels=EVENT_LABELS,
        action_form=EmptyForm(),
        remove_form=RemoveEndpointForm(formdata=None),
    )


@bp.route("/account/webhooks/<public_id>/test", methods=["POST"])
@login_required
def webhook_test(public_id: str) -> ResponseReturnValue:
    endpoint = _own_endpoint_or_404(public_id)
    if EmptyForm().validate_on_submit():
        limit = service.settings().test_limit
        if not spend_budget(limit, "webhook-test", endpoint.public_id):
            wait = budget_spent(limit, "webhook-test", endpoint.public_id) or 60
            flash(f"Too many tests for this endpoint; try again in {wait} s.", "error")
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
