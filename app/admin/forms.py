from wtforms import SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from app.config import TIERS
from app.forms import Form


class TierForm(Form):
    tier = SelectField("Tier", choices=[SelectChoice(t) for t in TIERS])
    submit = SubmitField("Change tier")


class VerifyForm(Form):
    submit = SubmitField("Verify now")


class AdminRevokeForm(Form):
    reason = StringField(
        "Reason (shown to the owner)",
        validators=[
            DataRequired(message="Give the reason the owner will be shown."),
            Length(max=500, message="Use at most 500 characters."),
        ],
    )
    submit = SubmitField("Revoke")
