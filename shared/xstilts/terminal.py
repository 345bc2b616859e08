"""Text a user wrote, on its way to a terminal.

A terminal acts on some characters instead of showing them: C0 and C1 controls (``\\x1b`` and
``\\x9b`` start escape sequences that move the cursor, recolour or retitle the window), line and
paragraph separators (a new line inside one field), and the bidirectional embedding, override
and isolate characters (``\\u202e`` shows what follows right to left, so a name can read as
another). The spec refuses them (:func:`unsafe_character` names the class found), and the command
line shows each one as a visible escape (:func:`terminal_safe`), so a record stored before the spec
refused them, or a results file a user passes, cannot reach the terminal raw.
"""

from __future__ import annotations

import re

# (what the class is called in a refusal, its characters as a regex character set)
UNSAFE_CLASSES: tuple[tuple[str, str], ...] = (
    ("control characters (such as NUL or a line break)", "\\x00-\\x1f\\x7f"),
    ("C1 control characters (U+0080 to U+009F, such as U+0085 or U+009B)", "\\x80-\\x9f"),
    ("line and paragraph separators (U+2028, U+2029)", "\\u2028\\u2029"),
    (
        "bidirectional embedding, override and isolate characters (U+202A to U+202E, "
        "U+2066 to U+2069)",
        "\\u202a-\\u202e\\u2066-\\u2069",
    ),
)
_CLASSES = tuple((name, re.compile(f"[{chars}]")) for name, chars in UNSAFE_CLASSES)
_UNSAFE = re.compile("[" + "".join(chars for _, chars in UNSAFE_CLASSES) + "]")


def unsafe_character(text: str) -> str | None:
    """Why ``text`` may not be shown on a terminal (the class of its first such character, and
    where it is), or None when it may."""
    found = _UNSAFE.search(text)
    if found is None:
        return None
    char = found.group()
    name = next(name for name, pattern in _CLASSES if pattern.fullmatch(char))
    return (
        f"{name} are not allowed: a terminal acts on them instead of showing them "
        f"(found U+{ord(char):04X} at character {found.start() + 1})"
    )


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every character a terminal would act on shown as its escape (``\\x1b``,
    ``\\u202e``); everything else, other scripts included, as it is. ``keep_newlines`` keeps
    ``\\n`` (a message of several lines), never the other controls."""
    if keep_newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)
