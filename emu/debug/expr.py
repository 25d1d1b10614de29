"""The debugger's expression language: addresses and conditions typed by the user.

    expr     := or
    or       := and ('||' and)*           and := bitor ('&&' bitor)*
    bitor    := xor ('|' xor)*            xor := bitand ('^' bitand)*
    bitand   := cmp ('&' cmp)*            cmp := shift (('=='|'!='|'<'|'<='|'>'|'>=') shift)*
    shift    := sum (('<<'|'>>') sum)*    sum := product (('+'|'-') product)*
    product  := unary (('*'|'/'|'%') unary)*
    unary    := ('-'|'~'|'!'|'+') unary | primary
    primary  := NUMBER | '$'REG | NAME | '(' expr ')' | '[' expr ']'
              | ('byte'|'word'|'dword') '[' expr ']'

Numbers are decimal, or hexadecimal with 0x (binary 0b, octal 0o).  A bare NAME is a register
if it names one (eax, esp, al, cr3...) and a symbol otherwise; `$name` is always a register and
`object:name` picks a module's symbol.  `[e]` reads the dword at virtual address e (`byte[e]`,
`word[e]` narrower).  Values are 32-bit unsigned; comparisons give 0 or 1.

Errors are `ExprError` with a one-line message: the shell prints it and nothing changes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

MASK = 0xFFFFFFFF


class ExprError(Exception):
    """A bad expression or an address that cannot be read; the message is one line."""


@dataclass
class Context:
    """What an expression can see: registers, symbols and virtual memory."""

    reg: Callable[[str], Optional[int]]             # register value by lower-case name, or None
    symbol: Callable[[str], Optional[int]]          # symbol address, or None
    read: Callable[[int, int], bytes]               # virtual read; raises on a bad address


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|\d+)(?![\w.$])
    | (?P<reg>\$[A-Za-z][A-Za-z0-9]*)
    | (?P<name>[A-Za-z_.][\w.$@]*(?::[A-Za-z_.][\w.$@]*)?)
    | (?P<op>\|\||&&|==|!=|<=|>=|<<|>>|[-+*/%&|^~!<>()\[\]])
    )""", re.X)

_BINARY = [
    ("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!=", "<", "<=", ">", ">="),
    ("<<", ">>"), ("+", "-"), ("*", "/", "%"),
]
_SIZES = {"byte": 1, "word": 2, "dword": 4}


def tokenize(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            bad = text[pos:].strip()[:20]
            raise ExprError(f"cannot parse '{bad}' in expression '{text.strip()}'")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, ctx: Context) -> None:
        self.text = text.strip()
        self.toks = tokenize(text)
        self.i = 0
        self.ctx = ctx

    def peek(self) -> Optional[str]:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise ExprError(f"expression '{self.text}' ends too early")
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, op: str) -> None:
        kind, v = self.take()
        if v != op:
            raise ExprError(f"expected '{op}' but found '{v}' in '{self.text}'")

    def parse(self) -> int:
        if not self.toks:
            raise ExprError("empty expression")
        v = self.binary(0)
        if self.i != len(self.toks):
            raise ExprError(f"unexpected '{self.toks[self.i][1]}' in '{self.text}'")
        return v & MASK

    def binary(self, level: int) -> int:
        if level == len(_BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in _BINARY[level] and self.toks[self.i][0] == "op":
            op = self.take()[1]
            right = self.binary(level + 1)
            left = _apply(op, left, right)
        return left

    def unary(self) -> int:
        if self.peek() in ("-", "~", "!", "+") and self.toks[self.i][0] == "op":
            op = self.take()[1]
            v = self.unary()
            return {"-": -v & MASK, "~": ~v & MASK, "!": int(v == 0), "+": v}[op]
        return self.primary()

    def primary(self) -> int:
        kind, v = self.take()
        if kind == "num":
            return int(v, 0) & MASK
        if kind == "reg":
            r = self.ctx.reg(v[1:].lower())
            if r is None:
                raise ExprError(f"no register named '{v}'")
            return r
        if kind == "name":
            if v.lower() in _SIZES and self.peek() == "[":
                self.take()
                return self.deref(_SIZES[v.lower()])
            r = self.ctx.reg(v.lower())
            if r is not None:
                return r
            a = self.ctx.symbol(v)
            if a is None:
                raise ExprError(f"no symbol or register named '{v}'")
            return a
        if v == "(":
            x = self.binary(0)
            self.expect(")")
            return x
        if v == "[":
            return self.deref(4)
        raise ExprError(f"unexpected '{v}' in '{self.text}'")

    def deref(self, size: int) -> int:
        addr = self.binary(0) & MASK
        self.expect("]")
        try:
            data = self.ctx.read(addr, size)
        except Exception as e:  # the reader's own error names the cause
            raise ExprError(f"cannot read {size} bytes at {addr:#010x}: {_why(e)}") from None
        return int.from_bytes(data, "little")


def _why(e: Exception) -> str:
    from ..memory import BadPhysical, PageFault
    if isinstance(e, PageFault):
        return "not mapped (page fault)"
    if isinstance(e, BadPhysical):
        return "outside RAM"
    return str(e) or type(e).__name__


def _apply(op: str, a: int, b: int) -> int:
    if op in ("/", "%") and b == 0:
        raise ExprError("division by zero")
    return {
        "||": lambda: int(bool(a) or bool(b)), "&&": lambda: int(bool(a) and bool(b)),
        "|": lambda: a | b, "^": lambda: a ^ b, "&": lambda: a & b,
        "==": lambda: int(a == b), "!=": lambda: int(a != b), "<": lambda: int(a < b),
        "<=": lambda: int(a <= b), ">": lambda: int(a > b), ">=": lambda: int(a >= b),
        "<<": lambda: (a << (b & 31)), ">>": lambda: a >> (b & 31),
        "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
        "/": lambda: a // b, "%": lambda: a % b,
    }[op]() & MASK


def evaluate(text: str, ctx: Context) -> int:
    """The value of `text` (32-bit unsigned); raises ExprError."""
    return _Parser(text, ctx).parse()
