"""URL builders shared by the apps of one test process.

Every test makes its own app, and werkzeug compiles each of an app's ~90 URL rules into
two builder functions (an AST built, then compiled): most of `create_app`'s time. The
code of a builder depends only on the rule's text and parsed parts (and its defaults,
which this cache leaves alone), and it takes the rule as its first argument, so one
compiled function serves the same rule in every later app. Matching, converters and
building stay each app's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.routing import Rule


def share_compiled_url_builders() -> None:
    """Every Rule compiled in this process from now on reuses an earlier identical one's
    builder code."""
    compile_builder = Rule._compile_builder
    if getattr(compile_builder, "shared", False):
        return
    built: dict[tuple[Any, ...], Callable[..., tuple[str, str]]] = {}

    def shared(self: Rule, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        if self.defaults:  # resolved to constants through the app's converters
            return compile_builder(self, append_unknown)
        key = (self.rule, tuple(self._trace), append_unknown)
        builder = built.get(key)
        if builder is None:
            builder = built[key] = compile_builder(self, append_unknown)
        return builder

    shared.shared = True  # type: ignore[attr-defined]
    Rule._compile_builder = shared  # type: ignore[method-assign]
