"""DSM parser: lark grammar (dsm.lark) over the hand-written tokenizer, transformed into the
frozen dataclasses of model.py.

`parse_file` / `parse_text` return a `Script` or raise one `DSMSyntaxError` (file:line:col, the
line, a caret and what was expected); a broken script is refused whole.
"""
from __future__ import annotations

import os
from importlib.resources import files
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import Lexer

from .errors import DSMSyntaxError
from .model import (Action, Condition, For, Function, If, Import, Pos, Script, State,
                    Statement, Transition)
from .source import Source, read_source, source_from_text, tokenize

__all__ = ["parse_file", "parse_text", "parse_source", "split_call", "DSMSyntaxError"]


class _TokenListLexer(Lexer):
    """Hands lark the tokens made by source.tokenize (DSM's tokenizer is not regular)."""

    def __init__(self, lexer_conf: Any) -> None:
        pass

    def lex(self, data: list[Token]):  # type: ignore[override]
        yield from data


_GRAMMAR = files("yaypm.dsm").joinpath("dsm.lark").read_text(encoding="utf-8")
_PARSER = Lark(_GRAMMAR, parser="lalr", lexer=_TokenListLexer, propagate_positions=False,
               maybe_placeholders=False)

_TOKEN_NAMES = {
    "SEMI": "';'", "LBRACE": "'{'", "RBRACE": "'}'", "LBRACK": "'['", "RBRACK": "']'",
    "IMPORT": "import(...)", "FUNCTION": "'function'", "INITIAL": "'initial'",
    "STATE": "'state'", "TRANSITION": "'transition'", "ENTER": "'enter'", "EXIT": "'exit'",
    "DASH": "'-'", "SLASH": "'/'", "DASHSLASH": "'-/'", "ARROW": "'->'", "NOT": "'not'",
    "EXCEPTION": "'exception'", "IF": "'if'", "ELSE": "'else'", "FOR": "'for'",
    "WORD": "a name or call", "$END": "end of file",
}


def split_call(token: str) -> tuple[str, str, bool]:
    """`name(arg)` -> (name, arg, True): name before the first '(', arg up to the last ')'."""
    b = token.find("(")
    if b < 0:
        return token, "", False
    e = token.rfind(")")
    if e < b:
        e = len(token)
    return token[:b], token[b + 1:e], True


def _strip_var(name: str) -> str:
    name = name.strip()
    return name[1:] if name.startswith("$") else name


class _Builder(Transformer):
    """Turns the lark tree into model objects; positions come from token offsets."""

    def __init__(self, src: Source) -> None:
        super().__init__()
        self.src = src

    def _pos(self, tok: Token) -> Pos:
        return self.src.pos(tok.start_pos or 0)

    @staticmethod
    def _stmts(children: list) -> tuple[Statement, ...]:
        return tuple(c for c in children if isinstance(c, (Action, If, For)))

    def start(self, children: list) -> list:
        return [c for c in children if not isinstance(c, Token)]

    def import_stmt(self, children: list) -> Import:
        tok = children[0]
        _, arg, _ = split_call(str(tok))
        module = arg.strip()
        if not module:
            raise self.src.error("import needs a module name: import(mod_x)", tok.start_pos)
        return Import(module, self._pos(tok))

    def state(self, children: list) -> State:
        initial_pos = None
        i = 0
        if children[0].type == "INITIAL":
            initial_pos = self._pos(children[0])
            i = 1
        kw = children[i]
        name_tok = children[i + 1]
        enter: tuple = ()
        exit_: tuple = ()
        for c in children[i + 2:]:
            if isinstance(c, tuple) and c[0] == "enter":
                enter = c[1]        # a second enter replaces the first (spec §1.3)
            elif isinstance(c, tuple) and c[0] == "exit":
                exit_ = c[1]
        return State(str(name_tok), initial_pos is not None, enter, exit_,
                     initial_pos or self._pos(kw), initial_pos)

    def enter_block(self, children: list) -> tuple:
        return ("enter", self._stmts(children))

    def exit_block(self, children: list) -> tuple:
        return ("exit", self._stmts(children))

    def transition(self, children: list) -> Transition:
        kw, name_tok, src_tok, tail = children
        conds, actions, target, target_pos, exception = tail
        raw = str(src_tok).strip()
        if raw.startswith("(") and raw.endswith(")"):
            sources = tuple(s.strip() for s in raw[1:-1].split(","))
        else:
            sources = (raw,)
        if any(not s for s in sources):
            raise self.src.error(f"empty source state name in '{raw}'", src_tok.start_pos)
        return Transition(str(name_tok), sources, conds, actions, target, exception,
                          self._pos(kw), target_pos)

    def _conds(self, children: list) -> tuple[tuple[Condition, ...], bool]:
        conds = []
        exception = False
        for c in children:
            if c == "exception":
                exception = True
            elif isinstance(c, Condition):
                conds.append(c)
        return tuple(conds), exception

    def target(self, children: list) -> tuple[str, Pos]:
        return str(children[0]), self._pos(children[0])

    def tail_conds(self, children: list) -> tuple:
        conds, exc = self._conds(children)
        tgt = next(c for c in children if isinstance(c, tuple) and len(c) == 2 and isinstance(c[1], Pos))
        return conds, (), tgt[0], tgt[1], exc

    def tail_conds_actions(self, children: list) -> tuple:
        conds, exc = self._conds(children)
        actions, tgt, tpos = children[-1]
        return conds, actions, tgt, tpos, exc

    def tail_actions(self, children: list) -> tuple:
        actions, tgt, tpos = children[-1]
        return (), actions, tgt, tpos, False

    def tail_plain(self, children: list) -> tuple:
        tgt = next(c for c in children if isinstance(c, tuple))
        return (), (), tgt[0], tgt[1], False

    def action_list(self, children: list) -> tuple:
        tgt = next(c for c in children if isinstance(c, tuple) and len(c) == 2 and isinstance(c[1], Pos))
        return self._stmts(children), tgt[0], tgt[1]

    def cond_call(self, children: list) -> Condition:
        word = children[-1]
        negated = (len(children) - 1) % 2 == 1
        name, arg, _ = split_call(str(word))
        return Condition(name, arg, negated, self._pos(children[0]))

    def cond_exception(self, children: list) -> str:
        return "exception"

    def cond_ignored(self, children: list) -> None:
        return None

    def function(self, children: list) -> Function:
        kw, name_tok = children[0], children[1]
        name, _, parens = split_call(str(name_tok))
        if not parens or not name:
            raise self.src.error("function declarations need a name followed by parentheses, "
                                 "e.g. 'function foo()'", name_tok.start_pos)
        return Function(name, self._stmts(children[2:]), self._pos(kw))

    def call(self, children: list) -> Action:
        tok = children[0]
        name, arg, parens = split_call(str(tok))
        if not name:
            raise self.src.error(f"'{tok}' is not an action call", tok.start_pos)
        return Action(name, arg, self._pos(tok), parens)

    def if_stmt(self, children: list) -> If:
        kw = children[0]
        conds, exc = self._conds(children)
        otherwise = None
        if children and isinstance(children[-1], tuple) and children[-1] and children[-1][0] == "else":
            otherwise = children[-1][1]
            children = children[:-1]
        # the statements are those after the "{" that ends the condition list
        brace = next(i for i, c in enumerate(children) if isinstance(c, Token) and c.type == "LBRACE")
        then = self._stmts(children[brace + 1:])
        return If(conds, then, otherwise, self._pos(kw), exc)

    def else_part(self, children: list) -> tuple:
        return ("else", self._stmts(children))

    def for_stmt(self, children: list) -> For:
        kw = children[0]
        head = str(kw)[3:].strip()
        rest = children[1:]
        if not head and rest and isinstance(rest[0], Token) and rest[0].type == "WORD":
            head = str(rest[0]).strip()
        return self._for(head, kw, self._stmts(rest))

    def _for(self, head: str, kw: Token, body: tuple) -> For:
        pos = self._pos(kw)
        bad = ("syntax error in 'for': expected 'for ($x in $array)', "
               "'for ($x in range(a, b))' or 'for ($k,$v in $struct)'")
        if len(head) < 2 or head[0] != "(" or head[-1] != ")":
            raise self.src.error(bad, kw.start_pos)
        parts = head[1:-1].split(" in ")
        if len(parts) != 2:
            raise self.src.error(bad, kw.start_pos)
        lhs, rhs = parts[0].strip(), parts[1].strip()
        kv = lhs.split(",")
        if len(kv) == 2:
            return For("struct", _strip_var(kv[1]), _strip_var(kv[0]), _strip_var(rhs), "", "",
                       body, pos)
        if rhs.startswith("range(") and rhs.endswith(")"):
            args = [a.strip() for a in rhs[6:-1].split(",")]
            if len(args) == 1 and args[0]:
                start, stop = "0", args[0]
            elif len(args) == 2 and all(args):
                start, stop = args
            else:
                raise self.src.error(bad, kw.start_pos)
            return For("range", _strip_var(lhs), "", "", start, stop, body, pos)
        return For("array", _strip_var(lhs), "", _strip_var(rhs), "", "", body, pos)


def _expected_text(expected: set[str]) -> str:
    names = sorted({_TOKEN_NAMES.get(e, e) for e in expected if not e.startswith("__")})
    return " or ".join(names)


def _convert_error(src: Source, e: UnexpectedInput) -> DSMSyntaxError:
    if isinstance(e, UnexpectedToken):
        tok = e.token
        expected = _expected_text(set(e.expected))
        if tok.type == "$END":
            offset = src.end_offset()
            return src.error("unexpected end of file: a block, state or transition is not "
                             "terminated", offset, expected)
        offset = tok.start_pos or 0
        what = _TOKEN_NAMES.get(tok.type, tok.type)
        if tok.type == "WORD":
            what = f"'{tok}'"
        msg = f"unexpected {what}"
        if tok.type == "IF" and "LBRACE" in e.expected and "ELSE" not in e.expected:
            msg = ("'else if' is not supported (SEMS silently mis-nests it): "
                   "write 'else { if … { … } }'")
        return src.error(msg, offset, expected)
    return src.error(str(e), getattr(e, "pos_in_stream", 0) or 0)


def parse_source(src: Source) -> Script:
    """Parse an already read Source into a Script (functions expanded inline)."""
    tokens = tokenize(src)
    try:
        tree = _PARSER.parse(tokens)  # type: ignore[arg-type]
        items = _Builder(src).transform(tree)
    except UnexpectedInput as e:
        raise _convert_error(src, e) from None
    except VisitError as e:
        if isinstance(e.orig_exc, DSMSyntaxError):
            raise e.orig_exc from None
        raise
    file = src._origins[0][0] if src._origins else src.name
    return Script(src.name, file, tuple(_expand_functions(items)))


def parse_file(path: str, load_path: str | None = None, name: str | None = None) -> Script:
    """Read and parse a diagram file; includes resolve against `load_path` (default: its dir)."""
    return parse_source(read_source(path, load_path, name))


def parse_text(text: str, file: str = "<string>", load_path: str = ".") -> Script:
    """Parse script text held in memory (`file` is used for positions and the diagram name)."""
    return parse_source(source_from_text(text, file, load_path))


def _expand_functions(items: list) -> list:
    """Inline calls of functions defined earlier (spec §1.3: parse-time expansion)."""
    known: dict[str, tuple[Statement, ...]] = {}

    def expand(stmts: tuple[Statement, ...]) -> tuple[Statement, ...]:
        out: list[Statement] = []
        for st in stmts:
            if isinstance(st, Action) and st.has_parens and st.name in known:
                out.extend(known[st.name])
            elif isinstance(st, If):
                out.append(If(st.conditions, expand(st.then),
                              None if st.otherwise is None else expand(st.otherwise),
                              st.pos, st.exception))
            elif isinstance(st, For):
                out.append(For(st.kind, st.var, st.key, st.array, st.start, st.stop,
                               expand(st.body), st.pos))
            else:
                out.append(st)
        return tuple(out)

    result = []
    for item in items:
        if isinstance(item, Function):
            item = Function(item.name, expand(item.body), item.pos)
            known[item.name] = item.body
        elif isinstance(item, State):
            item = State(item.name, item.initial, expand(item.enter), expand(item.exit),
                         item.pos, item.initial_pos)
        elif isinstance(item, Transition):
            item = Transition(item.name, item.sources, item.conditions, expand(item.actions),
                              item.target, item.exception, item.pos, item.target_pos)
        result.append(item)
    return result
