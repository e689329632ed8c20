"""The one rule for putting a user's text on a screen: control characters escaped.

Table names, column names, values, commit messages, author names and branch names
come from users and their data. Printed raw, an ESC recolours the terminal, a CR
overwrites the line, a bidi override reorders it, and text that isn't UTF-8
(``dbvers.values``: surrogate escapes) can't be written at all. Like git's
``core.quotePath``, every such character is shown as an escape and everything else
as is; when anything is escaped, backslashes are doubled too, so the shown form
reads back unambiguously:

* ``\\n``, ``\\r``, ``\\t`` for newline, carriage return, tab;
* ``\\xNN`` for other characters below U+0080 (``\\x1b`` for ESC) and for a byte
  that isn't UTF-8 (always ``\\x80``..``\\xff``);
* ``\\uNNNN`` for C1 controls, line and paragraph separators and bidi controls.

Every human view (console, diff text, HTML, widgets) goes through ``safe_text``.
"""

from __future__ import annotations

import re

# What is escaped: C0 and C1 controls, DEL, lone surrogates (bytes that aren't
# UTF-8), line/paragraph separators, and the bidi embedding/override/isolate marks.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ESCAPED = re.compile(_UNSAFE.pattern[:-1] + "\\\\]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    cp = ord(ch)
    if cp < 0x80:
        return f"\\x{cp:02x}"
    if 0xDC80 <= cp <= 0xDCFF:  # surrogateescape's form of the byte cp - 0xDC00
        return f"\\x{cp - 0xDC00:02x}"
    return f"\\u{cp:04x}"


def safe_text(text: str) -> str:
    """*text* with every control character escaped (see the module docstring)."""
    if _UNSAFE.search(text) is None:
        return text
    return _ESCAPED.sub(_escape, text)


def needs_escape(text: str) -> bool:
    return _UNSAFE.search(text) is not None


__all__ = ["needs_escape", "safe_text"]
