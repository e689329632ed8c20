"""Every command and every flag of the CLI is documented in docs/guide.md, and
``dbvers help COMMAND`` works for each (sqlite-utils' test_docs, for dbvers).

A command's documentation is its ``dbvers COMMAND`` section (with its
subsections) plus every section with a usage line for it (an indented line
``dbvers COMMAND ...``: ``restore --from`` lives under Backups). Each of the
command's options must appear in that text under one of its spellings, and every
spelling (``-o`` and ``--output``) somewhere in the guide.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from conftest import run_cli

from dbvers.cli import build_parser, commands

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"
HEADING = re.compile(r"^(#+) (.*)$", re.M)


def _sections(text: str) -> list[tuple[int, str, str, str]]:
    """(level, title, own text up to the next heading, text with its subsections)."""
    marks = [(m.start(), len(m.group(1)), m.group(2).strip()) for m in HEADING.finditer(text)]
    out = []
    for i, (start, level, title) in enumerate(marks):
        own_end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        deep_end = next((s for s, lv, _ in marks[i + 1:] if lv <= level), len(text))
        out.append((level, title, text[start:own_end], text[start:deep_end]))
    return out


def _docs_for(command: str) -> str:
    text = GUIDE.read_text(encoding="utf-8")
    usage = re.compile(rf"^ {{4}}(\$ )?dbvers {re.escape(command)}\b", re.M)
    parts = []
    for _level, title, own, deep in _sections(text):
        if re.fullmatch(rf"`?dbvers {re.escape(command)}`?", title):
            parts.append(deep)
        elif usage.search(own):
            parts.append(own)
    return "\n".join(parts)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[list[str]]:
    """Each option's spellings; not -h/--help, not the hidden --db/--store copies."""
    return [list(a.option_strings) for a in parser._actions if a.option_strings
            and a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def _mentioned(flag: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


COMMANDS = commands()


def test_the_command_list_is_the_parsers() -> None:
    assert list(_subparsers(build_parser())) == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_and_flag_is_in_the_guide(command: str) -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    docs = _docs_for(command)
    assert docs, f"docs/guide.md has no '### dbvers {command}' section nor a usage line for it"
    sub = _subparsers(build_parser())[command]
    options = [("", o) for o in _options(sub)]
    for action, p in _subparsers(sub).items():  # reflog show / expire
        assert re.search(rf"dbvers {command} (\[)?{action}\b", docs), f"{command} {action} undocumented"
        options += [(f"{action} ", o) for o in _options(p)]
    missing = [prefix + "/".join(o) for prefix, o in options if not any(_mentioned(f, docs) for f in o)]
    assert not missing, f"dbvers {command}: options missing from its part of docs/guide.md: {missing}"
    unnamed = [f for _, o in options for f in o if not _mentioned(f, guide)]
    assert not unnamed, f"dbvers {command}: spellings docs/guide.md never names: {unnamed}"


def test_global_options_are_in_the_guide() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    missing = [f for o in _options(build_parser()) for f in o if not _mentioned(f, text)]
    assert not missing, missing


@pytest.mark.parametrize("command", COMMANDS)
def test_help_command_works_for_each(command: str) -> None:
    r = run_cli("help", command)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.startswith(f"usage: dbvers {command} "), r.stdout[:200]
    same = run_cli(command, "--help")
    assert same.returncode == 0 and same.stdout == r.stdout


def test_help_for_an_unknown_command_is_one_line() -> None:
    r = run_cli("help", "nope")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "dbvers: error: no command 'nope'; 'dbvers help' lists them\n"


#: Commands documented in a chapter of their own rather than under a "dbvers NAME" heading.
CHAPTERS = {"backup": "## Backups"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_heading(command: str) -> None:
    """A usage line alone is not a section: text under another command's heading (a lost
    heading) would read as that command's."""
    guide = GUIDE.read_text(encoding="utf-8")
    heading = CHAPTERS.get(command)
    found = (heading is not None and re.search(rf"^{re.escape(heading)}$", guide, re.M)) or \
        re.search(rf"^#{{2,3}} dbvers {re.escape(command)}$", guide, re.M)
    assert found, f"docs/guide.md has no '### dbvers {command}' heading"
