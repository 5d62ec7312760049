from wtforms import SelectField, SubmitField
from wtforms.fields.choices import SelectChoice

from app.config import TIERS
from app.forms import Form


class TierForm(Form):
    tier = SelectField("Tier", choices=[SelectChoice(t) for t in TIERS])
    submit = SubmitField("Change tier")


class VerifyForm(Form):
    submit = SubmitField("Verify now")
