"""The exact judge: the sentiment and the products of any text, computed by rule.

A language model's review cannot be labeled by the planner (it wrote no structure), but
the world knows which words carry which opinion and which phrases name which product,
so a text can be read back with the same rule that labels the planner's reviews:

    sentences   split after ".", "!" or "?" followed by a space
    clause      in a sentence with ", but ", only the part after the last one counts
    opinion     every lexicon item in the clause (longest match: "would not recommend"
                is one item, not "would recommend" after "not"), scored as in grammar:
                lukewarm 0; right after a negator ("not", "not very", ...): -polarity;
                otherwise polarity * strength, one more right after a booster
    label       the sign of the sum over the text: < 0 negative, 0 neutral, > 0 positive

On every review the planner writes, the judge gives exactly the score of
grammar.review_score (a test checks thousands). On other text it applies the same rule,
whatever the grammar: "The lid is superb superb." scores 4.

Products. The judge also lists what the text is about: product nouns ("this kettle",
"an excellent kettle"), product names ("the Brevik KT-450", a kitchen name) and aspects
("the lid", which only kitchen products have). A text stays on a requested product when
it names that noun, no other noun, and no name or aspect of another domain.
"""
import re
from dataclasses import dataclass

from .lexicon import BOOSTER_WORDS, ENTRIES, LABELS, NEGATORS
from .world import DOMAINS, PRODUCTS

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _alternation(phrases):
    """A regex matching any of `phrases` as whole words (a hyphen joins words), the
    longest first, so that the longer of two overlapping phrases wins."""
    ordered = sorted(set(phrases), key=lambda p: (-len(p), p))
    return r"(?<![\w-])(" + "|".join(ordered) + r")(?![\w-])"


_ITEM = re.compile(_alternation(re.escape(e.text) for e in ENTRIES), re.IGNORECASE)
_ENTRY = {e.text.lower(): e for e in ENTRIES}
_NEGATORS = sorted({n for words in NEGATORS.values() for n in words}, key=len, reverse=True)


def _name_pattern(template):
    """A product-name template ("the {Auralis|Zentro} {Q|X}{10-99}") as a regex."""
    def slot(match):
        key = match.group(1)
        return r"\d+" if re.fullmatch(r"\d+-\d+", key) else "(?:" + "|".join(map(re.escape, key.split("|"))) + ")"
    pieces = re.split(r"(\{[^{}]+\})", template)
    return "".join(re.sub(r"\{([^{}]+)\}", slot, p) if p.startswith("{") else re.escape(p) for p in pieces)


# The phrases that say what a text is about. Nouns are also listed with "the " in front,
# so that "the bed frame" is the product, not "the bed" (a hotel aspect) followed by
# "frame"; aspects only with "the ", as the planner writes them ("for the spare room" is
# no hotel room). An aspect of several domains ("build quality") tells nothing: None.
_NOUNS = {p: noun for noun in PRODUCTS for p in (noun, "the " + noun)}
_ASPECTS = {}
for _d in DOMAINS:
    for _aspect, _ in _d.aspects:
        _key = "the " + _aspect.lower()
        _ASPECTS[_key] = _d.name if _ASPECTS.get(_key, _d.name) == _d.name else None
_NAMES = [(re.compile(_name_pattern(t), re.IGNORECASE), d.name) for d in DOMAINS for t in d.names]
_MENTION = re.compile(_alternation([re.escape(p) for p in (*_NOUNS, *_ASPECTS)]
                                   + [_name_pattern(t) for d in DOMAINS for t in d.names]), re.IGNORECASE)
del _d, _aspect, _key


@dataclass(frozen=True)
class Verdict:
    """What the judge reads in a text."""
    score: int               # the summed opinion scores
    label: str               # "negative", "neutral" or "positive": the sign of `score`
    nouns: frozenset         # product nouns named ("kettle", ...)
    domains: frozenset       # domains whose product names or aspects appear (an aspect
                             # of several domains, such as "build quality", counts for none)

    def on_product(self, noun):
        """True when the text names `noun`, no other product, and nothing of another domain."""
        domain = PRODUCTS[noun][0].name
        return self.nouns == {noun} and self.domains <= {domain}


def _opinion_score(clause, match):
    """The score of the lexicon item `match` found in `clause` (lower case)."""
    entry = _ENTRY[match.group(1).lower()]
    if entry.polarity == 0:
        return 0
    before = clause[:match.start()]
    if any(re.search(r"(?<![\w-])" + re.escape(n) + r" $", before) for n in _NEGATORS):
        return -entry.polarity
    previous = before.rstrip().rsplit(" ", 1)[-1] if before.endswith(" ") else ""
    return entry.polarity * (entry.strength + (previous in BOOSTER_WORDS))


def sentiment_score(text):
    """The summed score of every opinion in `text` (see the module docstring)."""
    total = 0
    for sentence in _SENTENCE_END.split(text.strip()):
        clause = sentence.rsplit(", but ", 1)[-1].lower()
        total += sum(_opinion_score(clause, m) for m in _ITEM.finditer(clause))
    return total


def mentions(text):
    """(nouns, domains) the text names: see Verdict."""
    nouns, domains = set(), set()
    for match in _MENTION.finditer(text):
        phrase = match.group(1).lower()
        if phrase in _NOUNS:
            nouns.add(_NOUNS[phrase])
        elif phrase in _ASPECTS:
            domains.update([_ASPECTS[phrase]] if _ASPECTS[phrase] else [])
        else:
            domains.update(name for pattern, name in _NAMES if pattern.fullmatch(phrase))
    return frozenset(nouns), frozenset(domains)


def judge(text):
    """The Verdict on `text`: its sentiment by the label rule, and what it is about."""
    score = sentiment_score(text)
    nouns, domains = mentions(text)
    return Verdict(score, LABELS[(score > 0) - (score < 0) + 1], nouns, domains)
