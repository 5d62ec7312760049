from flask_wtf import FlaskForm
from wtforms import SelectField, SubmitField
from wtforms.fields.choices import SelectChoice

from app.config import TIERS


class TierForm(FlaskForm):
    tier = SelectField("Tier", choices=[SelectChoice(t) for t in TIERS])
    submit = SubmitField("Change tier")


class VerifyForm(FlaskForm):
    submit = SubmitField("Verify now")
