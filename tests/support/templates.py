"""Compiled templates shared by the apps of one test process.

Every test makes its own app, and each app's Jinja environment would parse and compile
every template it renders again: a large part of a page test's time. Jinja's bytecode
cache (keyed by template name and source checksum) hands each later app the code the
first one compiled. Rendering, filters and globals stay each app's own.
"""

from __future__ import annotations

import jinja2
from flask import Flask


class MemoryBytecodeCache(jinja2.BytecodeCache):
    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self.code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


def share_compiled_templates() -> None:
    """Every Flask app made in this process from now on uses one bytecode cache."""
    Flask.jinja_options = {**Flask.jinja_options, "bytecode_cache": MemoryBytecodeCache()}
