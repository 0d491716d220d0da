"""A small reader for nginx configuration files: directives and nested blocks.

Enough for tests to look settings up by block (nginx itself is not installed here, and the
Debian build predates the `resolve` upstream parameter the production config uses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"""'[^']*'|"[^"]*"|[{};]|[^\s{};]+""")


@dataclass
class Block:
    name: str
    args: list[str]
    directives: list[tuple[str, list[str]]] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    def get(self, name: str) -> list[str] | None:
        """Arguments of the last `name` directive in this block (not nested ones)."""
        found = [args for key, args in self.directives if key == name]
        return found[-1] if found else None

    def all(self, name: str) -> list[list[str]]:
        return [args for key, args in self.directives if key == name]

    def find(self, name: str) -> list[Block]:
        """Every block called `name`, at any depth."""
        out = [b for b in self.blocks if b.name == name]
        for b in self.blocks:
            out += b.find(name)
        return out


def parse(text: str) -> Block:
    text = "\n".join(_strip_comment(line) for line in text.splitlines())
    root = Block("main", [])
    stack, words = [root], []
    for token in _TOKEN.findall(text):
        if token == "{":
            block = Block(words[0], words[1:])
            stack[-1].blocks.append(block)
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        elif token == ";":
            stack[-1].directives.append((words[0], words[1:]))
            words = []
        else:
            words.append(token[1:-1] if token[0] in "'\"" else token)
    assert len(stack) == 1 and not words, "unbalanced braces"
    return root


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert match, f"not an nginx time: {value}"
    return int(match.group(1)) * units[match.group(2) or "s"]
