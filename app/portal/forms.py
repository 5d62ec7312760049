import secrets
from typing import Any

from wtforms import (
    BooleanField,
    HiddenField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    StopValidation,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from app.config import KNOWN_SCOPES
from app.forms import Form, Integer


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _within_float(message: str) -> Any:
    """Stop at a number of hundreds of digits: WTForms' NumberRange converts the value to
    a float (its NaN check), which raises OverflowError past 1e308, a 500 (fuzzing)."""

    def check(form: Any, field: Any) -> None:
        if isinstance(field.data, int) and abs(field.data) > 10**9:
            raise StopValidation(message)

    return check


class NewKeyForm(Form):
    # A fresh token per rendered form: a resubmitted POST (reload) must not mint a
    # second key or show a secret again.
    form_token = HiddenField(default=lambda: secrets.token_urlsafe(16))
    name = StringField(
        "Name",
        validators=[
            DataRequired(message="Give the key a name."),
            Length(max=100, message="Use at most 100 characters."),
        ],
        description="Where the key is used, e.g. “billing worker (prod)”.",
    )
    scopes = MultiCheckboxField("Scopes", choices=[SelectChoice(s) for s in KNOWN_SCOPES])
    custom_scopes = StringField(
        "Custom scopes",
        validators=[Length(max=2000)],
        description="Optional, separated by spaces or commas, e.g. orders:read reports.export",
    )
    lifetime_days = Integer(
        "Lifetime (days)", validators=[InputRequired(message="Enter a number of days.")]
    )
    # Asked only when no scope is chosen: such a key can validate but do nothing, which
    # is more often a slip than the intent.
    no_scope_ok = BooleanField("Yes, create a key with no scope")
    test = BooleanField(
        "Test key",
        description="Validates like any key, with its own prefix and marked as a test "
        "key in every answer; its requests are never billed.",
    )
    submit = SubmitField("Create key")

    def set_cap(self, cap: int) -> None:
        message = f"Choose between 1 and {cap} days."
        self.lifetime_days.validators = [
            InputRequired(message="Enter a number of days."),
            _within_float(message),
            NumberRange(min=1, max=cap, message=message),
        ]
        self.lifetime_days.description = f"Your tier allows up to {cap} days."
        if self.lifetime_days.data is None and not self.is_submitted():
            self.lifetime_days.data = min(90, cap)


class RotateForm(Form):
    form_token = HiddenField(default=lambda: secrets.token_urlsafe(16))
    grace = SelectField(
        "Old key stops working",
        choices=[
            SelectChoice("now", "now"),
            SelectChoice("1h", "in 1 hour"),
            SelectChoice("24h", "in 24 hours"),
            SelectChoice("7d", "in 7 days"),
        ],
        default="24h",
        validators=[InputRequired(message="Choose when the old key stops working.")],
    )
    submit = SubmitField("Rotate key")


def ticked(form: Form, field: BooleanField) -> None:
    """Exactly what the checkbox sends: any other value is not a confirmation."""
    if field.raw_data != ["y"]:
        raise ValidationError("Tick the box to confirm.")


class RevokeForm(Form):
    confirm = BooleanField(
        "I understand that every service using this key stops working at once.",
        validators=[ticked],
    )
    submit = SubmitField("Revoke key")


class EditKeyForm(Form):
    name = StringField(
        "Name",
        validators=[
            DataRequired(message="Give the key a name."),
            Length(max=100, message="Use at most 100 characters."),
        ],
    )
    note = TextAreaField(
        "Note",
        validators=[Length(max=1000, message="Use at most 1000 characters.")],
        description="Only you see it: what uses the key, who to ask before revoking it.",
    )
    submit = SubmitField("Save")
