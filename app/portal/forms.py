import secrets

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange
from wtforms.widgets import CheckboxInput, ListWidget

from app.config import KNOWN_SCOPES


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class NewKeyForm(FlaskForm):
    # A fresh token per rendered form: a resubmitted POST (reload) must not mint a
    # second key or show a secret again.
    form_token = HiddenField(default=lambda: secrets.token_urlsafe(16))
    name = StringField(
        "Name",
        validators=[DataRequired(message="Give the key a name."), Length(max=100)],
        description="Where the key is used, e.g. “billing worker (prod)”.",
    )
    scopes = MultiCheckboxField("Scopes", choices=[SelectChoice(s) for s in KNOWN_SCOPES])
    custom_scopes = StringField(
        "Custom scopes",
        validators=[Length(max=2000)],
        description="Optional, separated by spaces or commas, e.g. orders:read reports.export",
    )
    lifetime_days = IntegerField(
        "Lifetime (days)", validators=[InputRequired(message="Enter a number of days.")]
    )
    submit = SubmitField("Create key")

    def set_cap(self, cap: int) -> None:
        self.lifetime_days.validators = [
            InputRequired(message="Enter a number of days."),
            NumberRange(min=1, max=cap, message=f"Choose between 1 and {cap} days."),
        ]
        self.lifetime_days.description = f"Your tier allows up to {cap} days."
        if self.lifetime_days.data is None and not self.is_submitted():
            self.lifetime_days.data = min(90, cap)


class RotateForm(FlaskForm):
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
    )
    submit = SubmitField("Rotate key")


class RevokeForm(FlaskForm):
    confirm = BooleanField(
        "I understand that every service using this key stops working at once.",
        validators=[DataRequired(message="Tick the box to confirm.")],
    )
    submit = SubmitField("Revoke key")
