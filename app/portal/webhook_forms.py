from wtforms import BooleanField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from app.forms import Form
from app.portal.forms import MultiCheckboxField, ticked
from app.webhooks import EVENT_TYPES

EVENT_LABELS = {
    "key.expiring": "Key expiring (last quarter of its life, at most 7 days; 1 day before)",
    "key.expired": "Key expired",
    "key.revoked": "Key revoked",
    "key.rotated": "Key rotated",
    "key.leaked": "Key leaked (found in public and revoked)",
    "key.rate_limited": "Key rate-limited (at most once an hour per key)",
}


class EndpointForm(Form):
    url = StringField(
        "Endpoint URL",
        validators=[
            DataRequired(message="Enter the URL to post events to."),
            Length(max=2048, message="Use a URL of at most 2048 characters."),
        ],
        description=(
            "An https:// URL of your service. Redirects are not followed. Loopback and "
            "private addresses (127.0.0.1, localhost, 10.x, 192.168.x) are refused unless "
            "the server runs with WEBHOOK_ALLOW_PRIVATE=true."
        ),
    )
    description = StringField(
        "Description (optional)",
        validators=[
            Optional(),
            Length(max=200, message="Use a description of at most 200 characters."),
        ],
        description="What this endpoint is for, e.g. the service and its environment.",
    )
    events = MultiCheckboxField(
        "Events",
        choices=[SelectChoice(e, EVENT_LABELS[e]) for e in EVENT_TYPES],
        default=list(EVENT_TYPES),
    )


class EmptyForm(Form):
    """A POST with only its CSRF token (delete, send a test event)."""


class RemoveEndpointForm(Form):
    """Removing an endpoint cannot be undone (a new one gets a new secret), so it asks
    for the same ticked box as revoking a key."""

    confirm = BooleanField(
        "I understand that nothing more is sent to this URL; a new endpoint gets a new secret.",
        validators=[ticked],
    )
    submit = SubmitField("Remove endpoint")


class RollSecretForm(Form):
    """Rolling the secret breaks the receiver until it has the new one, so it asks for
    a ticked box too."""

    confirm = BooleanField(
        "I understand that deliveries signed with the old secret stop verifying at once.",
        validators=[ticked],
    )
    submit = SubmitField("Roll the secret")
