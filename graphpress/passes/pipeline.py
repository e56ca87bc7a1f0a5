"""Textual pipelines: ``"dce,fold-bn,prune-channels{ratio=0.3,importance=l2},quantize{bits=4,group=64}"``.

Grammar (whitespace between tokens is ignored)::

    pipeline := pass ("," pass)*
    pass     := NAME ("{" option ("," option)* "}")?
    option   := KEY "=" VALUE
    VALUE    := bare | '"' chars '"'         bare = [A-Za-z0-9_.+\\-*:/|]+ ; lists are a|b|c

Nothing in a pipeline string is ever evaluated as code: values are plain text, coerced by each pass's
declared options. ``format_pipeline(parse_pipeline(s)) == s`` for any canonical ``s`` (no spaces).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from ..errors import PipelineError
from .base import Pass
from .registry import create_pass

__all__ = ["parse_pipeline", "format_pipeline", "format_value", "resolve_passes"]

MAX_PIPELINE_CHARS = 8192

_NAME = re.compile(r"[a-z0-9][a-z0-9_\-]*")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE = re.compile(r"[A-Za-z0-9_.+\-*:/|\[\]?]+")


class _Cursor:
    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_spaces()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            self.fail(f"expected '{char}'")
        self.pos += 1

    def match(self, pattern: re.Pattern, what: str) -> str:
        self.skip_spaces()
        m = pattern.match(self.text, self.pos)
        if not m:
            self.fail(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def fail(self, message: str) -> None:
        found = self.text[self.pos] if self.pos < len(self.text) else "end of text"
        raise PipelineError(
            f"bad pipeline string: {message} at column {self.pos + 1} (found {found!r})\n"
            f"  {self.text}\n  {' ' * self.pos}^"
        )


def _parse_value(cur: _Cursor) -> str:
    if cur.peek() == '"':
        cur.pos += 1
        out = []
        while cur.pos < len(cur.text) and cur.text[cur.pos] != '"':
            if cur.text[cur.pos] == "\\" and cur.pos + 1 < len(cur.text):
                cur.pos += 1
            out.append(cur.text[cur.pos])
            cur.pos += 1
        if cur.pos >= len(cur.text):
            cur.fail("unterminated quoted value")
        cur.pos += 1
        return "".join(out)
    return cur.match(_BARE, "an option value")


def parse_pipeline(text: str) -> list[tuple[str, dict[str, str]]]:
    """Parse a pipeline string into ``[(pass_name, {option: raw_text})]`` without creating passes."""
    if not isinstance(text, str) or not text.strip():
        raise PipelineError("empty pipeline string: give at least one pass, e.g. 'dce'")
    if len(text) > MAX_PIPELINE_CHARS:
        # Refused up front: error messages quote the text, and no real pipeline is this long.
        raise PipelineError(f"pipeline string of {len(text)} characters is longer than the limit of "
                            f"{MAX_PIPELINE_CHARS}; it starts {text[:60]!r}")
    cur = _Cursor(text)
    steps: list[tuple[str, dict[str, str]]] = []
    while True:
        name = cur.match(_NAME, "a pass name (lowercase letters, digits and '-')")
        options: dict[str, str] = {}
        if cur.peek() == "{":
            cur.pos += 1
            while True:
                key = cur.match(_KEY, "an option name")
                if key in options:
                    cur.fail(f"option '{key}' given twice")
                cur.expect("=")
                options[key] = _parse_value(cur)
                if cur.peek() == ",":
                    cur.pos += 1
                    continue
                cur.expect("}")
                break
        steps.append((name, options))
        if cur.peek() == "":
            return steps
        cur.expect(",")


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "|".join(map(str, value))
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_pipeline(passes: Sequence[Pass]) -> str:
    return ",".join(p.pipeline_text() for p in passes)


def resolve_passes(passes: "str | Pass | Sequence[str | Pass]") -> list[Pass]:
    """Turn a pipeline string, a pass object, or a list mixing both into pass objects (validated)."""
    if isinstance(passes, Pass):
        return [passes]
    if isinstance(passes, str):
        return [create_pass(name, **opts) for name, opts in parse_pipeline(passes)]
    out: list[Pass] = []
    for item in passes:
        if isinstance(item, Pass):
            out.append(item)
        elif isinstance(item, str):
            out.extend(resolve_passes(item))
        else:
            raise PipelineError(f"a pass must be a Pass object or a pipeline string, got {type(item).__name__}")
    if not out:
        raise PipelineError("empty pass list: give at least one pass")
    return out
