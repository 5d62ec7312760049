"""The base every portal form derives from."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto

SUBMIT_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class Form(FlaskForm):
    """A FlaskForm that reads only url-encoded or multipart text fields.

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
