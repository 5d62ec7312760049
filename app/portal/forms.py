import re
import secrets
from datetime import date, timedelta
from typing import Any

from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    RadioField,
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
    Optional,
    StopValidation,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from app.config import KNOWN_SCOPES
from app.forms import Form, Integer
from app.keys import lifecycle


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


_SPLIT = re.compile(r"[\s,]+")


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

    def custom_list(self) -> list[str]:
        """The custom scopes typed, one per word (spaces or commas between them)."""
        return [s for s in _SPLIT.split(self.custom_scopes.data or "") if s]

    def validate_custom_scopes(self, field: StringField) -> None:
        """Checked with the other fields, by the domain's rule, so a bad scope is told
        beside a bad lifetime rather than only once the lifetime is right."""
        try:
            lifecycle.clean_scopes([*(self.scopes.data or []), *self.custom_list()])
        except lifecycle.KeyRequestError as exc:
            raise ValidationError(f"{exc}.") from None

    # Presets as Stripe and GitHub offer them, or a number of days, or a date. A request
    # without `expires` (scripts, older pages) is read as a number of days.
    expires = RadioField("Expires", choices=[], validate_choice=False)
    lifetime_days = Integer("Lifetime (days)")
    expires_on = DateField("Expiry date", validators=[Optional()])
    # Asked only when no scope is chosen: such a key can validate but do nothing, which
    # is more often a slip than the intent.
    no_scope_ok = BooleanField("Yes, create a key with no scope")
    test = BooleanField(
        "Test key",
        description="Validates like any key, with its own prefix and marked as a test "
        "key in every answer; its requests are never billed.",
    )
    submit = SubmitField("Create key")

    def set_cap(self, cap: int, today: date) -> None:
        """The tier's longest lifetime, and today's date (UTC) for the labels and the
        date picker's bounds."""
        first, last = today + timedelta(days=1), today + timedelta(days=cap)
        self._cap, self._today = cap, today
        self._span = f"from {first:%Y-%m-%d} to {last:%Y-%m-%d}"
        presets = [d for d in (7, 30, 90) if d < cap]
        self.expires.choices = [
            *((str(d), f"{d} days, until {today + timedelta(days=d):%Y-%m-%d}") for d in presets),
            ("max", f"{cap} days, the longest your tier allows, until {last:%Y-%m-%d}"),
            ("days", "Another number of days"),
            ("date", "Until a date"),
        ]
        if not self.is_submitted():
            self.expires.data = "90" if cap > 90 else "max"
        self.lifetime_days.description = f"From 1 up to {cap} days."
        self.expires_on.description = f"{self._span.capitalize()} (UTC)."
        self.expires_on.render_kw = {"min": first.isoformat(), "max": last.isoformat()}

    def validate_expires(self, field: RadioField) -> None:
        """Turn the choice into `lifetime_days`, the one number the key is made with."""
        cap, choice = self._cap, field.data or "days"
        typed_days, typed_date = self.lifetime_days.data, self.expires_on.data
        if choice not in {value for value, _ in field.choices}:
            raise ValidationError("Choose when the key expires.")
        if choice not in ("days", "date") and (typed_days is not None or typed_date):
            raise ValidationError(
                "You filled in a number of days or a date but chose a preset: choose "
                "“Another number of days” or “Until a date”, or empty the box."
            )
        if choice == "max":
            days = cap
        elif choice == "date":
            if typed_date is None:
                raise ValidationError("Pick the date the key expires.")
            days = (typed_date - self._today).days
            if not 1 <= days <= cap:
                raise ValidationError(f"Pick a date {self._span}.")
        elif choice == "days":
            typed = (self.lifetime_days.raw_data or [""])[0]
            if typed_days is None or not 1 <= typed_days <= cap:
                raise ValidationError(
                    f"Choose between 1 and {cap} days." if typed else "Enter a number of days."
                )
            days = typed_days
        else:
            days = int(choice)
        self.lifetime_days.data = days


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
