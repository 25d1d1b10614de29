"""Intel-syntax assembly with keystone 0.9.2, minus its known traps (DESIGN D7).

Keystone mis-assembles a few system instructions in 32-bit mode (research/unicorn.md §1):
`ljmp sel:off` comes out as the 16-bit form (66 EA), `lgdt`/`lidt [m]` gain a 66 prefix
(24-bit base), `iret`/`pushf`/`popf` are the 16-bit forms, and `;` separates statements instead
of starting a comment.  `assemble()` rewrites the source before keystone sees it:

    FARJMP sel, target        ->  jmp ptr16:32          (EA, 4-byte offset, 2-byte selector)
    FARCALL sel, target       ->  call ptr16:32         (9A ...)
    LGDT [m] / LIDT [m]       ->  0F 01 /2 or /3 with a 32-bit absolute address
    iret / pushf / popf       ->  iretd / pushfd / popfd
    ; and # start comments

and then checks the result with capstone: every `lgdt`/`lidt`/`ljmp`/`lcall`/`iret`/`pushf`/
`popf` must be the 32-bit form, or `AsmError` names the line.

Keystone also evaluates some operand expressions wrongly without a word (found while
writing the kernel; each case checked by disassembly), so `assemble()` refuses them in the
source, naming the line:

- in a memory operand, more than one symbol (`[label + NAME]` becomes `[NAME]`,
  `[reg + A - B]` and `[reg + A + B]` become `[reg + B]`), a symbol after `-`
  (`[reg + 0x400 - B]` becomes `[reg + 0x400 + B]`) or next to `*` (`[reg + A*4]` is
  `[reg + A]`);
- in an instruction's immediate, a symbol after a unary minus or `~`, or after `number -`
  (`mov eax, 0x400 - A` and `and eax, ~A` become memory loads from `[A]`).

`.equ` expressions and `label - NAME`/`A - B` immediates are evaluated correctly, so the fix
is always a named constant: `.equ TOP, A - B` then `[reg + TOP]`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import capstone
from keystone import KS_ARCH_X86, KS_ERR_ASM_SYMBOL_MISSING, KS_MODE_32, Ks, KsError


class AsmError(Exception):
    """The source did not assemble, or assembled into a form we refuse."""


@dataclass
class Assembled:
    code: bytes
    base: int
    symbols: dict[str, int]


_FAR = re.compile(r"^(FARJMP|FARCALL)\s+([^,]+),\s*(.+)$", re.IGNORECASE)
_DT = re.compile(r"^(LGDT|LIDT)\s+\[?\s*([^\]]+?)\s*\]?$", re.IGNORECASE)
_LABEL = re.compile(r"^([A-Za-z_.$][\w.$]*):")
_WIDEN = {"iret": "iretd", "pushf": "pushfd", "popf": "popfd"}


def strip_comment(line: str) -> str:
    """Drop a `;` or `#` comment, leaving string literals intact."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == "\\":
                continue
            if ch == quote and line[i - 1] != "\\":
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in ";#":
            return line[:i].rstrip()
    return line.rstrip()


def preprocess(src: str) -> str:
    out = []
    for raw in src.splitlines():
        line = strip_comment(raw)
        s = line.strip()
        m = _LABEL.match(s)
        if m and s[m.end():].strip():
            # "label: insn": emit the label on its own line so the rewrites below see the insn.
            out.append(m.group(0))
            s = line = s[m.end():].strip()
        m = _FAR.match(s)
        if m:
            op = 0xEA if m.group(1).upper() == "FARJMP" else 0x9A
            out.append(f".byte {op:#x}\n.long {m.group(3)}\n.short {m.group(2)}")
            continue
        m = _DT.match(s)
        if m:
            modrm = 0x15 if m.group(1).upper() == "LGDT" else 0x1D
            out.append(f".byte 0x0f, 0x01, {modrm:#x}\n.long {m.group(2)}")
            continue
        word = s.split()[0].lower() if s else ""
        if word in _WIDEN and s.lower() == word:
            line = line.replace(s, _WIDEN[word])
        out.append(line)
    return "\n".join(out)


_ks = Ks(KS_ARCH_X86, KS_MODE_32)
_cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)


def _labels(src: str) -> list[str]:
    names = []
    for line in src.splitlines():
        m = _LABEL.match(line.strip())
        if m:
            names.append(m.group(1))
    return names


_MEM = re.compile(r"\[([^\]]*)\]")
_TOKEN = re.compile(r"[A-Za-z_.$][\w.$]*|0x[0-9a-fA-F]+|\d+|\S")
_REGISTERS = frozenset([
    "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "ax", "bx", "cx", "dx", "si", "di",
    "bp", "sp", "al", "ah", "bl", "bh", "cl", "ch", "dl", "dh", "cs", "ds", "es", "fs", "gs",
    "ss", "cr0", "cr2", "cr3", "cr4", "dr0", "dr1", "dr2", "dr3", "dr6", "dr7",
    "byte", "word", "dword", "qword", "ptr", "offset"])


def _bad_operand(expr: str, memory: bool) -> str | None:
    """Why keystone would get this operand expression wrong, or None."""
    toks = [t for t in _TOKEN.findall(expr) if t not in ("(", ")")]
    syms = [i for i, t in enumerate(toks)
            if (t[0].isalpha() or t[0] in "_.$") and t.lower() not in _REGISTERS]
    if memory and len(syms) > 1:
        return "more than one symbol in a memory operand"
    for i in syms:
        before = toks[i - 1] if i else ""
        if before == "~" or (before == "-" and (i < 2 or i - 2 not in syms)):
            return "a symbol after '-' or '~'"
        if memory and (before == "*" or (i + 1 < len(toks) and toks[i + 1] == "*")):
            return "a symbol multiplied in a memory operand"
        if not memory and before == "+" and i >= 2 and toks[i - 2][0].isdigit():
            return "a number plus a symbol (an immediate taken for a memory address)"
    return None


def _check_source(text: str) -> None:
    """Refuse operand expressions keystone miscompiles silently (see above)."""
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith(".") or s.endswith(":"):
            continue
        parts = s.split(None, 1)
        if len(parts) < 2:
            continue
        operands = parts[1]
        why = None
        for mem in _MEM.findall(operands):
            why = why or _bad_operand(mem, True)
        why = why or _bad_operand(_MEM.sub(" 0 ", operands), False)
        if why:
            raise AsmError(f"line {lineno}: '{s}': keystone miscompiles {why}; use an .equ "
                           "for the whole constant")


def _locate_error(text: str, base: int, err: KsError) -> str:
    """Keystone names no line: find the first line at which the same error appears by
    assembling growing prefixes (bisection; a prefix may only add 'symbol missing')."""
    lines = text.splitlines()
    code = err.errno

    def fails(n: int) -> bool:
        try:
            _ks.asm("\n".join(lines[:n]), base)
        except KsError as e:
            return e.errno == code
        return False

    if not fails(len(lines)):
        return ""
    lo, hi = 0, len(lines)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid
    return f" at line {hi}: '{lines[hi - 1].strip()}'"


def assemble(src: str, base: int = 0) -> Assembled:
    """Assemble `src` for address `base`; returns the bytes and the address of every label."""
    text = preprocess(src)
    _check_source(text)
    try:
        enc, _ = _ks.asm(text, base)
    except KsError as e:
        where = _locate_error(text, base, e) if e.errno != KS_ERR_ASM_SYMBOL_MISSING else ""
        raise AsmError(f"keystone: {e}{where}") from None
    code = bytes(enc or b"")
    names = _labels(text)
    symbols: dict[str, int] = {}
    if names:
        # One more pass with a table of every label appended gives all their addresses.
        table = "\n".join(f".long {n}" for n in names)
        try:
            probe, _ = _ks.asm(text + "\n" + table + "\n", base)
        except KsError as e:
            raise AsmError(f"keystone: {e}") from None
        tail = bytes(probe)[-4 * len(names):]
        for i, n in enumerate(names):
            symbols[n] = int.from_bytes(tail[4 * i:4 * i + 4], "little")
    _check(code, base)
    return Assembled(code, base, symbols)


def _check(code: bytes, base: int) -> None:
    for insn in _cs.disasm(code, base):
        b = insn.bytes
        if b[:1] == b"\x66" and insn.mnemonic in ("ljmp", "lcall", "lgdt", "lidt", "iret",
                                                  "pushf", "popf"):
            raise AsmError(f"{insn.address:#x}: keystone emitted the 16-bit form of "
                           f"'{insn.mnemonic}'")
