"""Gmail's search language (``messages.list?q=``), parsed and evaluated against the mailbox.

The grammar and operators follow Google's help page "Search operators you can use with Gmail"
(support.google.com/mail/answer/7190) and the Gmail API guide "Searching for messages"
(developers.google.com/gmail/api/guides/filtering); docs/emulator.md lists each rule with its
source. In short:

* terms side by side are ANDed (``AND`` may be written); ``OR`` and ``{a b}`` are alternatives
  and bind tighter than the implicit AND, so ``a b OR c`` is ``a AND (b OR c)``;
* ``( ... )`` groups; ``-term`` excludes; ``"quoted phrase"`` is an exact phrase; ``+word``
  an exact word; ``a AROUND 5 b`` two words at most 5 words apart;
* an operator applies to a group: ``subject:(quarterly report)`` (both words in the subject),
  ``from:(alice OR bob)``, ``from:{alice bob}``;
* ``after:``/``before:`` (and ``newer:``/``older:``) take ``YYYY/MM/DD`` or ``MM/DD/YYYY``
  read as midnight Pacific time, or epoch seconds (the API guide: "Gmail search dates are
  interpreted as midnight PST... To specify accurate dates for other timezones pass the value
  in seconds instead").

What it cannot parse, and operators Gmail does not document, answer 400 (see docs/emulator.md:
real Gmail's answer to malformed queries is not documented; refusing keeps a query the
emulator does not understand from silently matching the wrong messages).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from trayapp.emulator import errors

if TYPE_CHECKING:
    from trayapp.emulator.gmail_store import Mailbox, StoredMessage

Pred = Callable[["StoredMessage"], bool]

#: Gmail reads calendar dates in queries as midnight Pacific time (API guide, "Searching").
PACIFIC = ZoneInfo("America/Los_Angeles")

_HEADER_OPERATORS: dict[str, tuple[str, ...]] = {
    "from": ("from",),
    # Gmail's to: finds mail sent to a person, which includes copies (Cc) and blind copies.
    "to": ("to", "cc", "bcc"),
    "cc": ("cc",),
    "bcc": ("bcc",),
    "subject": ("subject",),
    "deliveredto": ("delivered-to", "x-original-to"),
    "rfc822msgid": ("message-id",),
}
_VALUE_OPERATORS = (
    *_HEADER_OPERATORS,
    "label",
    "in",
    "is",
    "has",
    "category",
    "list",
    "filename",
    "larger",
    "smaller",
    "size",
    "after",
    "before",
    "newer",
    "older",
    "newer_than",
    "older_than",
)
_IN_ALIASES = {"drafts": "DRAFT", "draft": "DRAFT", "chats": "CHAT", "chat": "CHAT"}
_CATEGORIES = {
    "primary": "CATEGORY_PERSONAL",
    "personal": "CATEGORY_PERSONAL",
    "social": "CATEGORY_SOCIAL",
    "promotions": "CATEGORY_PROMOTIONS",
    "updates": "CATEGORY_UPDATES",
    "forums": "CATEGORY_FORUMS",
    # Documented, but no label of the API carries them: they match nothing here.
    "reservations": "",
    "purchases": "",
}
_IS_FLAGS: dict[str, tuple[str, bool] | None] = {
    "unread": ("UNREAD", True),
    "read": ("UNREAD", False),
    "starred": ("STARRED", True),
    "unstarred": ("STARRED", False),
    "important": ("IMPORTANT", True),
    "unimportant": ("IMPORTANT", False),
    "chat": ("CHAT", True),
    # Documented flags the emulator has no state for: nothing is snoozed or muted.
    "snoozed": None,
    "muted": None,
}
_HAS_LINKS = {
    "drive": ("drive.google.com",),
    "document": ("docs.google.com/document",),
    "spreadsheet": ("docs.google.com/spreadsheets",),
    "presentation": ("docs.google.com/presentation",),
    "youtube": ("youtube.com/", "youtu.be/"),
}
_STARS = (
    "yellow-star",
    "orange-star",
    "red-star",
    "purple-star",
    "blue-star",
    "green-star",
    "red-bang",
    "orange-guillemet",
    "yellow-bang",
    "green-check",
    "blue-info",
    "purple-question",
)

_TOKEN = re.compile(r'\s+|(?P<p>[(){}])|(?P<q>"[^"]*"?)|(?P<w>[^\s(){}"]+)')
_OPERATOR = re.compile(r"^([A-Za-z_]+):(.*)$", re.S)


def bad_query(problem: str) -> errors.ApiError:
    return errors.invalid_argument(f"Invalid query: {problem}")


@dataclass(frozen=True)
class Token:
    kind: str  # "p" (a bracket), "q" (a quoted phrase) or "w" (a word)
    text: str


def tokenize(q: str) -> list[Token]:
    out: list[Token] = []
    for m in _TOKEN.finditer(q):
        kind = m.lastgroup
        if kind is None:
            continue
        text = m.group(kind)
        if kind == "q":
            if len(text) < 2 or not text.endswith('"'):
                raise bad_query("a quoted phrase is not closed with '\"'")
            text = text[1:-1]
        out.append(Token(kind, text))
    return out


class Matcher:
    """A compiled query: call it with a message; ``mentions_spam_trash`` as Gmail reads it."""

    def __init__(self, pred: Pred, mentions_spam_trash: bool) -> None:
        self.pred = pred
        self.mentions_spam_trash = mentions_spam_trash

    def __call__(self, msg: StoredMessage) -> bool:
        return self.pred(msg)


def compile_query(q: str, box: Mailbox, now: float) -> Matcher:
    """Compile ``q`` for ``box`` at emulator time ``now``; raises a 400 ApiError if invalid."""
    parser = _Parser(tokenize(q), box, now)
    if not parser.tokens:
        return Matcher(lambda m: True, False)
    pred = parser.conjunction(None, closing=None)
    if parser.pos != len(parser.tokens):
        raise bad_query(f"unexpected {parser.tokens[parser.pos].text!r}")
    return Matcher(pred, parser.mentions_spam_trash)


def _all(preds: list[Pred]) -> Pred:
    return preds[0] if len(preds) == 1 else (lambda m: all(p(m) for p in preds))


def _any(preds: list[Pred]) -> Pred:
    return preds[0] if len(preds) == 1 else (lambda m: any(p(m) for p in preds))


def _not(pred: Pred) -> Pred:
    return lambda m: not pred(m)


class _Parser:
    def __init__(self, tokens: list[Token], box: Mailbox, now: float) -> None:
        self.tokens = tokens
        self.pos = 0
        self.box = box
        self.now = now
        self.mentions_spam_trash = False

    # ---- token helpers ----

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise bad_query("the query ends where a term was expected")
        self.pos += 1
        return tok

    @staticmethod
    def is_word(tok: Token | None, word: str) -> bool:
        return tok is not None and tok.kind == "w" and tok.text == word

    # ---- grammar ----

    def conjunction(self, op: str | None, closing: str | None) -> Pred:
        """Terms ANDed until ``closing`` (or the end of the query)."""
        preds: list[Pred] = []
        while True:
            tok = self.peek()
            if tok is None or (tok.kind == "p" and tok.text == closing):
                break
            if tok.kind == "p" and tok.text in ")}":
                raise bad_query(f"unbalanced {tok.text!r}")
            if self.is_word(tok, "AND"):
                if not preds:
                    raise bad_query("AND needs a term on each side")
                self.pos += 1
                nxt = self.peek()
                if nxt is None or (nxt.kind == "p" and nxt.text in ")}"):
                    raise bad_query("AND needs a term on each side")
                continue
            preds.append(self.alternatives(op))
        if not preds:
            raise bad_query("empty group")
        return _all(preds)

    def alternatives(self, op: str | None) -> Pred:
        preds = [self.unary(op)]
        while self.is_word(self.peek(), "OR"):
            self.pos += 1
            nxt = self.peek()
            if nxt is None or (nxt.kind == "p" and nxt.text in ")}") or self.is_word(nxt, "OR"):
                raise bad_query("OR needs a term on each side")
            preds.append(self.unary(op))
        return _any(preds)

    def unary(self, op: str | None) -> Pred:
        tok = self.peek()
        if tok is not None and tok.kind == "w" and tok.text.startswith("-"):
            rest = tok.text[1:]
            if rest:
                self.tokens[self.pos] = Token("w", rest)
            else:
                self.pos += 1
            if self.peek() is None:
                raise bad_query("'-' must be followed by the term to exclude")
            return _not(self.unary(op))
        return self.primary(op)

    def primary(self, op: str | None) -> Pred:
        tok = self.take()
        if tok.kind == "p":
            if tok.text == "(":
                pred = self.conjunction(op, closing=")")
                self.take()
                return pred
            if tok.text == "{":
                preds: list[Pred] = []
                while True:
                    nxt = self.peek()
                    if nxt is None:
                        raise bad_query("unbalanced '{'")
                    if nxt.kind == "p" and nxt.text == "}":
                        self.pos += 1
                        break
                    if self.is_word(nxt, "OR"):  # {a OR b} reads as {a b}
                        self.pos += 1
                        continue
                    preds.append(self.unary(op))
                if not preds:
                    raise bad_query("empty group")
                return _any(preds)
            raise bad_query(f"unbalanced {tok.text!r}")
        if tok.kind == "q":
            return self.around(op, self.text_term(op, tok.text, phrase=True), tok.text)
        if tok.text in ("OR", "AND", "AROUND"):
            raise bad_query(f"{tok.text} needs a term on each side")
        m = _OPERATOR.match(tok.text)
        if m and not m.group(2).startswith("//"):
            name, value = m.group(1).lower(), m.group(2)
            if name not in _VALUE_OPERATORS:
                raise bad_query(f"unknown operator {m.group(1)}:")
            if value:
                return self.operator(name, value)
            nxt = self.peek()
            if nxt is not None and nxt.kind == "p" and nxt.text in "({":
                return self.primary(name)  # subject:(a b), from:{a b}
            if nxt is not None and nxt.kind == "q":
                self.pos += 1
                return self.operator(name, nxt.text, phrase=True)
            raise bad_query(f"{m.group(1)}: has no value")
        if tok.text.startswith("+") and len(tok.text) > 1:
            return self.text_term(op, tok.text[1:], exact=True)
        return self.around(op, self.text_term(op, tok.text), tok.text)

    def around(self, op: str | None, pred: Pred, first: str) -> Pred:
        """``a AROUND n b``: both words, at most n words apart, in the text (help page)."""
        if not self.is_word(self.peek(), "AROUND"):
            return pred
        self.pos += 1
        count = self.take()
        if count.kind != "w" or not count.text.isdigit():
            raise bad_query("AROUND takes a number of words: a AROUND 5 b")
        other = self.take()
        if other.kind == "p":
            raise bad_query("AROUND takes a word after its number")
        distance = int(count.text)
        left, right = _words(first), _words(other.text)

        def near(msg: StoredMessage) -> bool:
            words = _words(msg.parsed.text)
            return _within(words, left, right, distance)

        return near

    # ---- terms ----

    def text_term(
        self, op: str | None, value: str, *, phrase: bool = False, exact: bool = False
    ) -> Pred:
        if op is not None:
            return self.operator(op, value, phrase=phrase)
        match = _word_matcher(value, exact=exact or phrase)
        return lambda m: match(m.parsed.words)

    def operator(self, name: str, value: str, *, phrase: bool = False) -> Pred:
        v = value.lower()
        if name in _HEADER_OPERATORS:
            headers = _HEADER_OPERATORS[name]
            if name == "rfc822msgid":
                msgid = v.strip().strip("<>")
                return lambda m: any(
                    msgid in h.lower() for h in m.parsed.header_index.get("message-id", [])
                )
            match = _word_matcher(value, exact=phrase)
            return lambda m: any(
                match(_words(h)) for n in headers for h in m.parsed.header_index.get(n, [])
            )
        if name in ("label", "in"):
            return self.label(name, value)
        if name == "is":
            if v not in _IS_FLAGS:
                raise bad_query(f"is:{value} is not a Gmail search flag")
            flag = _IS_FLAGS[v]
            if flag is None:
                return lambda m: False
            lid, present = flag
            return lambda m: (lid in m.label_ids) == present
        if name == "has":
            return self.has(v, value)
        if name == "category":
            if v not in _CATEGORIES:
                raise bad_query(f"category:{value} is not a Gmail category")
            cat = _CATEGORIES[v]
            return lambda m: bool(cat) and cat in m.label_ids
        if name == "list":
            # Mailing-list mail carries List-Id: <info.example.com>; Gmail matches
            # list:info@example.com (help page) and the List-Id itself.
            ids = {v.strip("<>"), v.strip("<>").replace("@", ".")}
            return lambda m: any(
                i in h.lower() for h in m.parsed.header_index.get("list-id", []) for i in ids
            )
        if name == "filename":
            return lambda m: any(
                v in f.lower() or f.lower().endswith("." + v) for f in m.parsed.filenames
            )
        if name in ("larger", "smaller", "size"):
            size = _size(value)
            if name == "smaller":
                return lambda m: len(m.raw) < size
            return lambda m: len(m.raw) > size
        if name in ("after", "before", "newer", "older"):
            bound = int(_date(value) * 1000)
            if name in ("after", "newer"):
                return lambda m: m.internal_date >= bound
            return lambda m: m.internal_date < bound
        if name in ("newer_than", "older_than"):
            bound = int((self.now - _relative(value)) * 1000)
            if name == "newer_than":
                return lambda m: m.internal_date >= bound
            return lambda m: m.internal_date < bound
        raise bad_query(f"unknown operator {name}:")  # pragma: no cover - _VALUE_OPERATORS

    def label(self, name: str, value: str) -> Pred:
        v = value.lower()
        if name == "in" and v == "anywhere":
            self.mentions_spam_trash = True
            return lambda m: True
        lbl = self.box.label_by_name(_IN_ALIASES.get(v, value))
        if lbl is None:
            return lambda m: False  # an unknown label matches nothing, as in Gmail
        lid = lbl.id
        if lid in ("SPAM", "TRASH"):
            self.mentions_spam_trash = True
        return lambda m: lid in m.label_ids

    def has(self, v: str, value: str) -> Pred:
        if v == "attachment":
            return lambda m: m.parsed.has_attachment
        if v in ("userlabels", "nouserlabels"):
            user = {lid for lid, lbl in self.box.labels.items() if lbl.type == "user"}
            want = v == "userlabels"
            return lambda m: bool(user.intersection(m.label_ids)) == want
        if v in _HAS_LINKS:
            links = _HAS_LINKS[v]
            return lambda m: any(link in m.parsed.text.lower() for link in links)
        if v in _STARS:
            # Only the default yellow star exists in the API's labels (STARRED).
            return (lambda m: "STARRED" in m.label_ids) if v == "yellow-star" else (lambda m: False)
        raise bad_query(f"has:{value} is not a Gmail search operator")


# ---- values ----


def _date(value: str) -> float:
    """Epoch seconds: digits as they are, a calendar date at midnight Pacific time."""
    if value.isdigit():
        return float(value)
    for fmt in ("%Y/%m/%d", "%Y-%m-%d", "%m/%d/%Y"):
        try:
            day = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return day.replace(tzinfo=PACIFIC).timestamp()
    raise bad_query(f"{value!r} is not a date; use YYYY/MM/DD or seconds since 1970")


def _relative(value: str) -> float:
    m = re.fullmatch(r"(\d+)([dmyh])", value.lower())
    if not m:
        raise bad_query(f"{value!r} is not a period; use a number and d, m or y (e.g. 7d)")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"h": 3600, "d": 86400, "m": 30 * 86400, "y": 365 * 86400}[unit]


def _size(value: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmM]?)[bB]?", value)
    if not m:
        raise bad_query(f"{value!r} is not a size; use bytes or K/M, e.g. 10M")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


def _word_matcher(value: str, *, exact: bool) -> Callable[[list[str]], bool]:
    """Whether a text's words have ``value``'s words in a row, as Gmail's search matches words.

    Gmail matches whole words, and plain words also match their variants ("+word" is the help
    page's operator for "an exact word"), so a plain needle's last word may be the start of a
    longer word (``invoice`` finds "invoices", ``port`` does not find "report"); a phrase or
    ``+word`` needs the exact words. Text in scripts written without spaces (CJK) is matched
    as a substring, since Gmail segments it into words we cannot reproduce.
    """
    needle = _words(value)
    if not needle:
        return lambda words: True
    if any(ord(ch) >= 0x2E80 for ch in value):
        joined = " ".join(needle)
        return lambda words: joined in " ".join(words)
    head, last = needle[:-1], needle[-1]

    def match(words: list[str]) -> bool:
        for i in range(len(words) - len(needle) + 1):
            if words[i : i + len(head)] == head:
                word = words[i + len(head)]
                if word == last or (not exact and word.startswith(last)):
                    return True
        return False

    return match


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _within(words: list[str], left: Iterable[str], right: Iterable[str], distance: int) -> bool:
    a, b = list(left), list(right)
    if not a or not b:
        return False
    first = [i for i in range(len(words)) if words[i : i + len(a)] == a]
    second = [i for i in range(len(words)) if words[i : i + len(b)] == b]
    return any(abs(i - j) <= distance + 1 for i in first for j in second)
