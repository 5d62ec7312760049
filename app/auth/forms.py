from wtforms import (
    BooleanField,
    EmailField,
    Field,
    PasswordField,
    StringField,
    SubmitField,
)
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Regexp, ValidationError
from wtforms.widgets import HiddenInput

from app import text
from app.accounts import MAX_PASSWORD, MIN_PASSWORD, is_valid_email
from app.forms import Form, Integer
from app.portal.forms import MultiCheckboxField


def _strip(value: object) -> object:
    """Pasted addresses often carry spaces around them; the address is checked in the
    one spelling uniqueness is decided on (NFKC, lower case)."""
    return text.normalize_email(value) if isinstance(value, str) else value


def _valid_email(form: Form, field: Field) -> None:
    if field.data and not is_valid_email(field.data):
        raise ValidationError("Enter a valid email address.")


_email = [
    DataRequired(message="Enter your email address."),
    Length(max=254, message="An email address has at most 254 characters."),
]


def _password(label: str = "Your password") -> PasswordField:
    """The account's password, asked again before a change that needs it."""
    return PasswordField(
        label,
        validators=[DataRequired(message="Enter your password."), Length(max=MAX_PASSWORD)],
    )


def _new_password(label: str, ask: str, then: str) -> PasswordField:
    """A password being chosen: the length rule, said in the description with `then`."""
    return PasswordField(
        label,
        validators=[
            DataRequired(message=ask),
            Length(
                min=MIN_PASSWORD,
                max=MAX_PASSWORD,
                message=f"Use {MIN_PASSWORD} to {MAX_PASSWORD} characters.",
            ),
        ],
        description=f"At least {MIN_PASSWORD} characters. {then}",
    )


def _repeated(label: str, ask: str) -> PasswordField:
    """The chosen password again (the field beside it is named `password`)."""
    return PasswordField(
        label,
        validators=[
            DataRequired(message=ask),
            EqualTo("password", message="The two passwords differ."),
        ],
    )


class RegisterForm(Form):
    email = EmailField(
        "Email",
        validators=[*_email, _valid_email],
        filters=[_strip],
    )
    password = _new_password("Password", "Choose a password.", "A passphrase works well.")
    confirm = _repeated("Repeat password", "Repeat the password.")
    submit = SubmitField("Create account")


class LoginForm(Form):
    email = EmailField("Email", validators=_email, filters=[_strip])
    password = _password("Password")
    submit = SubmitField("Log in")


class LogoutForm(Form):
    submit = SubmitField("Log out")


class PasswordChangeForm(Form):
    current = PasswordField(
        "Current password",
        validators=[DataRequired(message="Enter your current password."), Length(max=MAX_PASSWORD)],
    )
    password = _new_password(
        "New password", "Choose a new password.", "Your other sessions will end."
    )
    confirm = _repeated("Repeat new password", "Repeat the new password.")
    submit = SubmitField("Change password")


class EndSessionForm(Form):
    session_id = Integer(
        validators=[DataRequired(), NumberRange(min=1, max=2**31 - 1)], widget=HiddenInput()
    )
    submit = SubmitField("End")


class EndOthersForm(Form):
    submit = SubmitField("Log out everywhere else")


class CloseAccountForm(Form):
    password = _password("Password")
    confirm = BooleanField(
        "I understand: every key stops working and I cannot log in again",
        validators=[DataRequired(message="Tick the box to confirm.")],
    )
    submit = SubmitField("Close my account")


_code = [
    DataRequired(message="Enter the code from your app, or a recovery code."),
    Length(max=32, message="A code has 6 digits; a recovery code 10 letters and digits."),
]


class CodeForm(Form):
    """The log-in's second step: an authenticator code or a recovery code."""

    code = StringField(
        "Code", validators=_code, description="6 digits from your app, or a recovery code."
    )
    submit = SubmitField("Verify")


class TotpStartForm(Form):
    submit = SubmitField("Set up an authenticator app")


class TotpConfirmForm(Form):
    password = _password()
    code = StringField(
        "Code from the app",
        validators=[
            DataRequired(message="Enter the 6-digit code the app shows."),
            Regexp(r"^\s*[0-9]{6}\s*$", message="The code has 6 digits."),
        ],
    )
    submit = SubmitField("Turn on two-factor sign-in")


class TotpDisableForm(Form):
    password = _password()
    code = StringField("Code from the app, or a recovery code", validators=_code)
    submit = SubmitField("Turn off the authenticator app")


class RecoveryCodesForm(Form):
    password = _password()
    submit = SubmitField("Make new recovery codes")


class ForgotForm(Form):
    email = EmailField("Email", validators=_email, filters=[_strip])
    submit = SubmitField("Send me a reset link")


class ResetForm(Form):
    password = _new_password(
        "New password", "Choose a new password.", "Every session of yours will end."
    )
    confirm = _repeated("Repeat new password", "Repeat the new password.")
    submit = SubmitField("Set the new password")


class NoticesForm(Form):
    """The owner mails that can be turned off (security ones cannot): ticked = sent."""

    wanted = MultiCheckboxField("Mail me when", choices=[])
    submit = SubmitField("Save mail settings")


class PasskeyRemoveForm(Form):
    password = _password()
    submit = SubmitField("Remove")
