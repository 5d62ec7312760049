"""The base every portal form derives from."""

from __future__ import annotations

from typing import Any, ClassVar

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from wtforms import Field, IntegerField, PasswordField, TextAreaField
from wtforms.validators import StopValidation

from app import text

SUBMIT_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class Integer(IntegerField):
    """An IntegerField that refuses more than 18 digits as "not a number".

    WTForms turns any digit string into an int and NumberRange then compares it through
    math.isnan, which raises OverflowError past a float's range: a 310-digit value was
    a 500. Every integer a form asks for is far below 10^18. An empty box is no value."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if valuelist and not str(valuelist[0]).strip():
            self.data = None  # an empty box: nothing typed, not a bad number
            return
        if valuelist and len(str(valuelist[0]).strip().lstrip("+-")) > 18:
            self.data = None
            raise ValueError(self.gettext("Not a valid integer value."))
        super().process_formdata(valuelist)


class SafeText:
    """WTForms validator: refuse control, bidi and zero-width characters (app/text.py).

    Every field of a `Form` gets it (passwords excepted: they are only ever hashed, and
    NIST 800-63B asks that any character be accepted); add it by hand to forms that do
    not derive from `Form`.
    """

    field_flags: ClassVar[dict[str, bool]] = {"safe_text": True}

    def __init__(self, multiline: bool = False) -> None:
        self.multiline = multiline

    def __call__(self, form: Any, field: Field) -> None:
        for value in _texts(field):
            why = text.problem(value, multiline=self.multiline)
            if why is not None:
                field.errors[:] = []  # one clear message, not a regex complaint beside it
                raise StopValidation(f"This {why}.")


def _texts(field: Field) -> list[str]:
    values = field.raw_data or []
    return [v for v in values if isinstance(v, str)]


class Form(FlaskForm):
    """A FlaskForm that reads only url-encoded or multipart text fields, and refuses
    unsafe characters in every one of them.

    FlaskForm would also feed uploaded files and JSON bodies into the fields; no form here
    takes either, and a file object in a text field, or a JSON list as the body, crashes
    WTForms' validators. Ignoring both makes such a request an ordinary missing-field error.
    """

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            if formdata is not _Auto:
                return formdata
            if request.method in SUBMIT_METHODS and request.form:
                return request.form
            return None

    def validate(self, extra_validators: Any = None) -> bool:
        # The text check runs first for every field and stops that field's chain, so a
        # NUL never reaches a regex, a lookup or the database.
        extra: dict[str, list[Any]] = {k: list(v) for k, v in (extra_validators or {}).items()}
        for name, field in self._fields.items():
            if isinstance(field, PasswordField) or field.flags.safe_text:
                continue
            check = SafeText(multiline=isinstance(field, TextAreaField))
            extra.setdefault(name, []).insert(0, check)
        return super().validate(extra_validators=extra)
