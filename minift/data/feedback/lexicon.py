"""The sentiment lexicon: every word that carries an opinion, and the words around them.

Each item has a kind (adjective, verb or whole closing remark), a polarity and a
strength, and belongs to exactly one of two parts, A or B; see the package docstring
for why the split exists. The modifiers (boosters, downtoners, hedges, negators) carry
no polarity of their own and are shared by both parts.
"""
from dataclasses import dataclass

LABELS = ("negative", "neutral", "positive")          # label id = index; also sign + 1
PARTS = ("A", "B", "AB")  # what a review may draw from: one part, or both (the corpus)


# ----------------------------------------------------------------------------- the lexicon

@dataclass(frozen=True)
class Entry:
    """One sentiment-bearing lexicon item."""
    text: str        # as written in a review: "superb", "could do without", "would recommend"
    kind: str        # "adj" (the sound is _), "verb" (I _ the sound), "closer" (whole sentence)
    part: str        # "A" or "B"
    polarity: int    # +1 positive, -1 negative, 0 lukewarm (an opinion that leans nowhere)
    strength: int    # 1 mild, 2 strong; 0 for lukewarm items


# kind, polarity, strength, part-A items, part-B items.
# No item, stem or whole word of one part appears in the other part or in shared text,
# so that a test_b review holds nothing a model fine-tuned on part A has seen labeled.
_LEXICON_TABLE = (
    ("adj", +1, 1, ("good", "nice", "decent", "pleasant"),
                   ("satisfying", "respectable", "agreeable", "solid")),
    ("adj", +1, 2, ("great", "excellent", "superb", "fantastic", "wonderful", "amazing"),
                   ("outstanding", "brilliant", "splendid", "stellar", "marvellous", "fabulous")),
    ("adj", -1, 1, ("bad", "poor", "disappointing", "weak", "mediocre"),
                   ("underwhelming", "lacklustre", "subpar", "inadequate", "shoddy")),
    ("adj", -1, 2, ("awful", "terrible", "horrible", "dreadful", "useless"),
                   ("atrocious", "abysmal", "appalling", "dismal", "woeful")),
    ("adj", 0, 0, ("okay", "average", "ordinary"),
                  ("so-so", "unremarkable", "run-of-the-mill")),
    ("verb", +1, 1, ("like",), ("enjoy",)),
    ("verb", +1, 2, ("love",), ("adore",)),
    ("verb", -1, 1, ("dislike",), ("could do without",)),
    ("verb", -1, 2, ("hate",), ("detest",)),
    ("closer", +1, 1, ("would recommend", "happy with it overall"),
                      ("would suggest it to friends", "satisfied with it overall")),
    ("closer", +1, 2, ("highly recommended", "worth every penny"),
                      ("top marks from me", "five stars without hesitation")),
    ("closer", -1, 1, ("would not recommend", "a letdown overall"),
                      ("could have been better", "would think twice next time")),
    ("closer", -1, 2, ("asking for a refund", "a complete waste of money"),
                      ("steer clear", "zero stars if I could")),
    ("closer", 0, 0, ("will keep it for now", "no strong feelings one way or the other"),
                     ("I can take it or leave it", "neither here nor there")),
)

ENTRIES = tuple(
    Entry(text, kind, part, polarity, strength)
    for kind, polarity, strength, items_a, items_b in _LEXICON_TABLE
    for part, items in (("A", items_a), ("B", items_b))
    for text in items
)
ENTRY_BY_TEXT = {e.text: e for e in ENTRIES}

# The lexicon as plain strings: LEXICON["B"]["positive"] -> ["satisfying", ...].
LEXICON = {
    part: {label: [e.text for e in ENTRIES if e.part == part and e.polarity == i - 1]
           for i, label in enumerate(LABELS)}
    for part in ("A", "B")
}

# Entries by (part, kind, polarity), the unit the planner draws from.
ENTRY_INDEX = {}
for _e in ENTRIES:
    ENTRY_INDEX.setdefault((_e.part, _e.kind, _e.polarity), []).append(_e)
del _e


# ----------------------------------------------------------------------------- modifiers (shared)

# Boosters add 1 to an item's weight. Mild and strong items take different boosters
# ("very good" but "absolutely superb"), which also tells a language model how strong
# a part-B word is.
BOOSTERS = {1: ("very", "really", "extremely", "incredibly"),
            2: ("absolutely", "truly", "simply", "really")}
VERB_BOOSTERS = ("really", "truly", "genuinely")
BOOSTER_WORDS = frozenset(BOOSTERS[1] + BOOSTERS[2] + VERB_BOOSTERS)
# Downtoners leave a mild item at weight 1. The same words serve both polarities, so no
# modifier hints at the label on its own.
DOWNTONERS = ("fairly", "rather", "somewhat", "quite")
HEDGES = ("just", "fairly", "rather")            # only in front of lukewarm adjectives
NEGATORS = {1: ("not", "not very", "not really", "not particularly"),
            2: ("not", "not really", "not exactly")}
