"""Synthetic customer feedback: minift's built-in, deterministic "embedded world".

Demos must run with no download, so this module writes short customer reviews of
invented products in eight domains (electronics, kitchen appliances, clothing,
furniture, hotels, restaurants, apps, books). It yields an unlabeled pretraining
corpus and small labeled negative / neutral / positive sets. Everything is drawn from
`random.Random` with a fixed seed, so the same seed gives the same text on every run
and platform (string seeds are hashed with SHA-512 by `random`, not by `hash()`).

What a review is made of
------------------------
A review is first built as a structure (a list of sentences), then rendered to text;
its label is computed from the structure, never by reading the text back.

    review     = [opener] body{1..3} [closer]                   (at most 4 sentences)
    body       = judgement | contrast | fact | lukewarm remark | minor remark
    judgement  = clause with one opinion about an aspect or the product:
                     "The sound is extremely good."    "I love this kettle."
                     "All in all, a stellar hotel."    "The plot is not great."
    contrast   = clause ", but " clause      "The lid is poor, but I adore the sound."
    fact       = sentiment-free statement    "It holds 1.7 litres."  "We went on a Friday evening."
    minor      = a mild, toned-down remark against the review's lean
                     "Admittedly, the zip is somewhat poor."
    opener     = how the product came to be reviewed   "Bought this for my son."
    closer     = "Would recommend." | "Will keep it for now." | "Hope this helps someone."

What the planner writes for each label: a positive (negative) review opens its body with
a judgement or contrast of that polarity and may add facts, more such judgements, a
lukewarm remark on an aspect, one minor remark and a closer of its own polarity. In a
contrast the first clause has the opposite polarity or is lukewarm. A neutral review is
made of facts and lukewarm remarks only ("The lid is just okay."), with a lukewarm or
opinion-free closer; about one in six holds no opinion word at all.

An opinion is one lexicon item (an adjective, a verb or a closing remark) with at most
one modifier in front: a booster ("very", "absolutely", "really"), a downtoner
("fairly", "somewhat"), a hedge for lukewarm words ("just okay") or a negator ("not",
"not very"). Every item has a polarity (+1, -1, or 0 for lukewarm words such as "okay")
and a strength (1 mild as "decent", 2 strong as "superb").

How the label is decided
------------------------
    opinion score   lukewarm: 0;  negated: -polarity (the sign flips, the weight becomes 1);
                    otherwise polarity * strength, one more if boosted
                    ("decent" +1, "very decent" +2, "fairly decent" +1, "absolutely awful" -3)
    sentence score  fact: 0;  contrast: the clause after "but" only;  else its opinion
    label           sign of the review's total: < 0 negative, 0 neutral, > 0 positive

So "not bad" is mildly positive, "not great" mildly negative, "The sound is superb, but
the battery life is poor." is negative, and a review made only of facts and lukewarm remarks
is neutral. The planner aims at a requested label and keeps a review only when the rule
above gives that label, so there is no label noise.

The lexicon split
-----------------
Every sentiment-bearing item belongs to exactly one of two parts, A or B (`LEXICON`),
each with mild and strong positive and negative items and lukewarm ones. Everything
else (products, aspects, modifiers, facts, frames) is shared. The labeled training set
and `test_a` use part A only; `test_b` uses part B only. The unlabeled corpus mixes both
parts inside each review, slot by slot, always with the review's own polarity, so a
language model can learn from context that "stellar" behaves like "superb". `test_b`
therefore measures what a classifier can only get from pretraining.

Corpus format
-------------
`corpus_documents` returns one review per document. About 35% are "rated reviews" in
the zero-shot prompt format, "Review: <text>\\nSentiment: positive", as if scraped from a
review site: web text carries such naturally labeled examples, and they are what lets a
language model answer the prompt zero-shot and what fine-tuning later draws on.
`corpus_text` joins documents with a blank line ("\\n\\n"); documents never contain a
blank line, so the pretraining pipeline can split them again and put its own
end-of-text token between them. All text is ASCII (British spelling).
"""
import itertools
import random
import re
from dataclasses import dataclass

LABELS = ("negative", "neutral", "positive")          # label id = index; also sign + 1
PROMPT_TEMPLATE = "Review: {text}\nSentiment:"
DOCUMENT_SEPARATOR = "\n\n"
RATED_FRACTION = 0.35     # share of corpus documents written as rated reviews
MAX_TRAIN = 500           # fine-tuning with few labels is the point of the demos
PARTS = ("A", "B", "AB")


def format_prompt(text):
    """The zero-shot prompt for `text`; a language model should continue it with a label."""
    return PROMPT_TEMPLATE.format(text=text)


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
_ENTRY_INDEX = {}
for _e in ENTRIES:
    _ENTRY_INDEX.setdefault((_e.part, _e.kind, _e.polarity), []).append(_e)
del _e


# ----------------------------------------------------------------------------- modifiers (shared)

# Boosters add 1 to an item's weight. Mild and strong items take different boosters
# ("very good" but "absolutely superb"), which also tells a language model how strong
# a part-B word is.
BOOSTERS = {1: ("very", "really", "extremely", "incredibly"),
            2: ("absolutely", "truly", "simply", "really")}
VERB_BOOSTERS = ("really", "truly", "genuinely")
_BOOSTER_WORDS = frozenset(BOOSTERS[1] + BOOSTERS[2] + VERB_BOOSTERS)
# Downtoners leave a mild item at weight 1. The same words serve both polarities, so no
# modifier hints at the label on its own.
DOWNTONERS = ("fairly", "rather", "somewhat", "quite")
HEDGES = ("just", "fairly", "rather")            # only in front of lukewarm adjectives
NEGATORS = {1: ("not", "not very", "not really", "not particularly"),
            2: ("not", "not really", "not exactly")}


# -------------------------------------------------------------------------- clause frames (shared)
# {target} is what is judged ("the sound", "this kettle"), {be} is/are, {pron} it/they,
# {phrase} the opinion ("not very good"), {a_phrase} the same with its article.

CLAUSE_FRAMES = ("{target} {be} {phrase}",               # also used inside a contrast
                 "{target} {be} honestly {phrase}",
                 "I found {target} {phrase}")
ASPECT_FRAMES = CLAUSE_FRAMES + ("for me, {target} {be} {phrase}",
                                 "as for {target}, {pron} {be} {phrase}",
                                 "in my experience, {target} {be} {phrase}")
PRODUCT_FRAMES = ("overall, {target} {be} {phrase}",
                  "in short, {target} {be} {phrase}")
# In attributive frames the target is the bare noun ("an excellent kettle"); never negated.
ATTRIBUTIVE_FRAMES = ("all in all, {a_phrase} {target}",
                      "in the end, {a_phrase} {target}")
VERB_FRAMES = ("I {phrase} {target}",                  # also used inside a contrast
               "I {phrase} {target}, to be honest")
MINOR_FRAMES = ("{target} {be} {phrase}, though",
                "admittedly, {target} {be} {phrase}")
CLOSER_FRAME = "{phrase}"


# ----------------------------------------------------------------------------- the world (shared)

# Named lists for {weekday}-style slots in the templates below. A template slot may also
# be "{a|b|c}" (pick one) or "{10-99}" (an integer in that range).
NAMED_SLOTS = {
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "month": ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"),
    "relative": ("sister", "brother", "mum", "dad", "son", "daughter", "partner", "wife",
                 "husband", "flatmate", "grandmother", "neighbour"),
    "city": ("Leeds", "Lyon", "Porto", "Bristol", "Hamburg", "Dublin", "Glasgow", "Seville"),
    "author": ("Maria Lind", "Tom Okafor", "Ines Duarte", "Jonah Pike", "Ruth Castell",
               "Omar Haddad", "Lena Voss", "Sam Whitlow"),
}


@dataclass(frozen=True)
class Domain:
    name: str
    products: tuple    # (noun, plural, facts true of that product only)
    names: tuple       # templates for one product's own name
    prep: str          # joins an aspect to a name: "the sound on the Auralis Q30"
    aspects: tuple     # (aspect, plural)
    facts: tuple       # sentiment-free sentences about any product of the domain
    openers: tuple     # how the reviewer came to the product


# Facts and openers that fit any physical product. {It}/{it}/{s}/{is}/{has} agree with
# a singular or plural product ("It comes" / "They come"); {this} is "this kettle".
_GOODS_FACTS = (
    "I ordered {it} on a {weekday}.",
    "{It} arrived {two|three|four|five} days later.",
    "I have had {it} for {two|three|four|six} weeks now.",
    "I have used {it} {twice|three times|every day|most evenings} so far.",
    "I paid {20-240} dollars for {it}.",
    "{It} came in a plain cardboard box.",
    "{It} come{s} in {two|three|four|five} colours.",
)
_GOODS_OPENERS = (
    "Bought {this} for my {relative}.",
    "I got {this} as a gift from my {relative}.",
    "I bought {this} to replace an older one.",
    "My {relative} picked {this} out for me.",
    "Ordered {this} in the {month} sale.",
)

DOMAINS = (
    Domain(
        name="electronics",
        products=(("headphones", True, ("They fold flat for travel.",)),
                  ("earbuds", True, ("Each bud weighs about {4-7} grams.",)),
                  ("portable speaker", False, ("It is about the size of a water bottle.",))),
        names=("the {Auralis|Zentro|Kobalt|Veyra|Sonex|Nordtone|Halvex} {Q|X|S|V}{10-99}",),
        prep="on",
        aspects=(("sound", False), ("bass", False), ("battery life", False),
                 ("microphone", False), ("controls", True), ("Bluetooth connection", False),
                 ("build quality", False), ("charging cable", False), ("volume", False),
                 ("companion app", False), ("carrying case", False)),
        facts=_GOODS_FACTS + (
            "The battery is rated for {12-40} hours.",
            "{It} charge{s} over USB-C.",
            "{It} use{s} Bluetooth {5.0|5.2|5.3}.",
            "I mostly use {it} on the train.",
            "The box includes a cable and a small pouch.",
            "{It} connect{s} to my phone and my laptop.",
        ),
        openers=_GOODS_OPENERS + ("I needed something for the gym.",
                                  "My old set stopped working in {month}."),
    ),
    Domain(
        name="kitchen",
        products=(("kettle", False, ("It holds {1.2|1.5|1.7} litres.",)),
                  ("toaster", False, ("It takes {two|four} slices at a time.",)),
                  ("blender", False, ("The jug holds {1.2|1.5|2} litres.",)),
                  ("coffee machine", False, ("The water tank holds {1.2|1.5|1.8} litres.",)),
                  ("air fryer", False, ("The basket holds {3|4|5.5} litres.",))),
        names=("the {Brevik|Kitchora|Melbrook|Ovenna|Caldera|Hollins|Tessaro} "
               "{KT|HM|BX|CM}-{100-990}",),
        prep="on",
        aspects=(("lid", False), ("handle", False), ("buttons", True), ("build quality", False),
                 ("noise level", False), ("display", False), ("power cable", False),
                 ("design", False), ("timer", False), ("base", False),
                 ("instruction manual", False)),
        facts=_GOODS_FACTS + (
            "{It} {has} {three|four|five|six} power settings.",
            "{It} {is} rated at {1200-2400} watts.",
            "The cable is about {70-120} centimetres long.",
            "{It} fit{s} under my kitchen cupboards.",
            "I use {it} {once|twice|three times} a day.",
        ),
        openers=_GOODS_OPENERS + ("We needed a new one for the office kitchen.",
                                  "I moved into a new flat in {month}."),
    ),
    Domain(
        name="clothing",
        products=(("rain jacket", False, ("It has a hood that rolls into the collar.",)),
                  ("jeans", True, ("They have five pockets.",)),
                  ("running shoes", True, ("They weigh about {240-320} grams each.",)),
                  ("wool jumper", False, ()),
                  ("hoodie", False, ()),
                  ("winter coat", False, ("It has an inside pocket for a phone.",))),
        names=("the {Northpeak|Loomwell|Tidewear|Urbanthread|Kestrel|Fernhill} "
               "{Summit|Trail|Metro|Coastline|Ridge|Harbour|Fell}",),
        prep="on",
        aspects=(("fit", False), ("fabric", False), ("stitching", False), ("colour", False),
                 ("sizing", False), ("material", False), ("pockets", True), ("seams", True),
                 ("zip", False), ("cut", False)),
        facts=_GOODS_FACTS + (
            "I ordered a size {S|M|L|XL|10|12|14}.",
            "I am {155-195} cm tall, for reference.",
            "{It} {has} been through the wash {twice|three times|four times}.",
            "The label says {60|70|80|100} percent cotton.",
            "I usually wear a size {S|M|L}.",
        ),
        openers=_GOODS_OPENERS + ("I needed something for walking to work.",
                                  "I was packing for a trip to {city}."),
    ),
    Domain(
        name="furniture",
        products=(("sofa", False, ("It seats {two|three|four} people.",)),
                  ("desk", False, ("It has {two|three} drawers on the left.",)),
                  ("bookshelf", False, ("It has {four|five|six} shelves.",)),
                  ("office chair", False, ("The seat goes up to {50-60} cm.",)),
                  ("bed frame", False, ()),
                  ("dining table", False, ("It seats {four|six|eight} people.",))),
        names=("the {Lindholm|Oakhaven|Nordby|Fjelda|Hartwood|Brantley} "
               "{Alva|Brisk|Corda|Delta|Elm|Fjord|Grove}",),
        prep="on",
        aspects=(("assembly instructions", True), ("cushions", True), ("frame", False),
                 ("finish", False), ("drawers", True), ("legs", True), ("upholstery", False),
                 ("wood", False), ("screws", True), ("height", False)),
        facts=_GOODS_FACTS + (
            "It took us {20-120} minutes to put together.",
            "{It} came in {two|three|four} boxes.",
            "{It} {is} {60-220} cm wide.",
            "{It} hold{s} up to {50-150} kilograms.",
            "The delivery team carried {it} upstairs.",
            "{It} {is} made of {oak|pine|birch|walnut} veneer.",
        ),
        openers=_GOODS_OPENERS + ("Bought {this} for our new flat.",
                                  "We ordered {this} for the spare room."),
    ),
    Domain(
        name="hotels",
        products=(("hotel", False, ()),),
        names=("the {Harbour View|Old Mill|Grey Heron|Linden Court|Bay Tree|Kingsgate|"
               "Riverside|Marlow House|Castle Street} Hotel",),
        prep="at",
        aspects=(("room", False), ("staff", True), ("breakfast", False), ("bed", False),
                 ("location", False), ("bathroom", False), ("view", False), ("pool", False),
                 ("Wi-Fi", False), ("check-in", False), ("shower", False), ("parking", False)),
        facts=(
            "We stayed {two|three|four|five} nights in {month}.",
            "Our room was on the {second|third|fourth|fifth} floor.",
            "The hotel has {40-180} rooms.",
            "Breakfast is served from {6|7} to {10|11}.",
            "It is a {5-20} minute walk from the station.",
            "We travelled with {our two children|my partner|a group of friends|my parents}.",
            "Parking costs {10-25} dollars a night.",
            "Check-out is at {10|11} in the morning.",
            "I booked through the website.",
            "It was our {first|second|third} visit.",
        ),
        openers=("We stayed here for my {relative}'s birthday.",
                 "Booked this hotel for a work trip to {city}.",
                 "We stopped here for one night on the way to {city}.",
                 "We stayed at {name} in {month}."),
    ),
    Domain(
        name="restaurants",
        products=(("restaurant", False, ()),),
        names=("{the Copper Pot|Casa Lima|the Blue Lantern|Trattoria Enzo|Saffron Street|"
               "the Salt Shed|Little Lisbon|the Olive Press|Noodle Yard|the Corner Table}",),
        prep="at",
        aspects=(("food", False), ("service", False), ("waiter", False), ("desserts", True),
                 ("portions", True), ("wine list", False), ("menu", False), ("prices", True),
                 ("atmosphere", False), ("coffee", False), ("starters", True),
                 ("seating", False)),
        facts=(
            "We booked a table for {two|three|four|six}.",
            "We went on a {weekday} evening.",
            "The bill came to {40-160} dollars for {two|three|four} of us.",
            "They take bookings online.",
            "It is open until {10|11} at night.",
            "The menu changes every {week|month|season}.",
            "We ordered the {fish of the day|set menu|lamb|mushroom risotto|chicken curry}.",
            "It was our {first|second|third} visit.",
        ),
        openers=("We had dinner here on a {weekday}.",
                 "Came here for lunch with my {relative}.",
                 "We went to {name} for my {relative}'s birthday.",
                 "A colleague suggested this place."),
    ),
    Domain(
        name="apps",
        products=(("app", False, ()),),
        names=("{Notely|TaskNest|Budgetoo|FitTrack|PhotoFold|MapMate|Calendo|Sleepr}",),
        prep="in",
        aspects=(("interface", False), ("sync", False), ("notifications", True),
                 ("search", False), ("dark mode", False), ("customer support", False),
                 ("login process", False), ("widgets", True), ("offline mode", False),
                 ("updates", True), ("subscription price", False), ("backup feature", False)),
        facts=(
            "I use it on {an Android phone|an iPad|my laptop|two devices}.",
            "I am on version {2-9}.{0-9}.",
            "The subscription costs {3-12} dollars a month.",
            "I installed it {two|three|five|six} weeks ago.",
            "It syncs with my calendar.",
            "It needs about {80-400} MB of space.",
            "I use it {every morning|at work|a few times a week}.",
        ),
        openers=("I switched to {name} from another app.",
                 "I have been using {name} since {month}.",
                 "Downloaded this for my {relative}'s tablet.",
                 "My {relative} set this up for me."),
    ),
    Domain(
        name="books",
        products=(("novel", False, ()), ("thriller", False, ()), ("memoir", False, ())),
        names=("{The Glass|The Salt|The Paper|The Silver|The Amber|The Winter|The Iron} "
               "{Orchard|Harbour|Garden|Tower|River|Lantern|Road}",),
        prep="of",
        aspects=(("plot", False), ("characters", True), ("ending", False), ("writing", False),
                 ("pacing", False), ("dialogue", False), ("cover", False),
                 ("opening chapter", False), ("twist", False), ("audiobook narration", False)),
        facts=(
            "It is {220-640} pages long.",
            "I read it over {two|three|four} evenings.",
            "It is the {second|third} book in a series.",
            "I borrowed it from my local library.",
            "I had not read anything by {author} before.",
            "I read the paperback edition.",
            "It was first published in {1998-2023}.",
        ),
        openers=("I read this over a long weekend.",
                 "Picked this up at the airport.",
                 "My book club chose this for {month}.",
                 "My {relative} lent me {name}."),
    ),
)

# Closing remarks that carry no opinion at all.
NEUTRAL_CLOSERS = ("Will update this review in a few weeks.",
                   "That is all for now.",
                   "Just sharing my experience.",
                   "More thoughts after a month of use.",
                   "Hope this helps someone.")


def shared_phrases():
    """Every piece of shared (sentiment-free) text, for checking it holds no lexicon item."""
    phrases = [w for words in BOOSTERS.values() for w in words]
    phrases += list(VERB_BOOSTERS + DOWNTONERS + HEDGES + NEUTRAL_CLOSERS)
    phrases += [w for words in NEGATORS.values() for w in words]
    phrases += list(CLAUSE_FRAMES + ASPECT_FRAMES + PRODUCT_FRAMES + ATTRIBUTIVE_FRAMES
                    + VERB_FRAMES + MINOR_FRAMES)
    phrases += [w for words in NAMED_SLOTS.values() for w in words]
    for d in DOMAINS:
        phrases += list(d.names + d.facts + d.openers) + [d.prep]
        phrases += [a for a, _ in d.aspects]
        for noun, _, facts in d.products:
            phrases += [noun, *facts]
    return phrases


# ----------------------------------------------------------------------------- review structure

@dataclass(frozen=True)
class Opinion:
    entry: Entry
    modifier: str = ""   # a booster, downtoner or hedge written before the item
    negator: str = ""    # "not", "not very", ...; a negated opinion has no modifier


@dataclass(frozen=True)
class Judgement:
    frame: str           # one of the *_FRAMES, or CLOSER_FRAME
    target: str          # "the sound", "this kettle", "Notely"; a bare noun in ATTRIBUTIVE_FRAMES
    plural: bool         # whether the target takes "are"
    opinion: Opinion


@dataclass(frozen=True)
class Contrast:
    first: Judgement     # overruled by ...
    second: Judgement    # ... the clause after "but", the only one that counts


@dataclass(frozen=True)
class Fact:
    text: str            # a finished, sentiment-free sentence (facts, openers, neutral closers)


# ----------------------------------------------------------------------------- the label rule

def opinion_score(opinion):
    """Signed weight of one opinion (see the module docstring)."""
    entry = opinion.entry
    if entry.polarity == 0:
        return 0
    if opinion.negator:
        return -entry.polarity          # "not great" -> -1, "not awful" -> +1
    boost = 1 if opinion.modifier in _BOOSTER_WORDS else 0
    return entry.polarity * (entry.strength + boost)


def sentence_score(sentence):
    if isinstance(sentence, Fact):
        return 0
    if isinstance(sentence, Contrast):
        return opinion_score(sentence.second.opinion)
    return opinion_score(sentence.opinion)


def review_score(sentences):
    return sum(sentence_score(s) for s in sentences)


def review_label(sentences):
    """"negative", "neutral" or "positive": the sign of the review's total score."""
    score = review_score(sentences)
    return LABELS[(score > 0) - (score < 0) + 1]


# ----------------------------------------------------------------------------- rendering

def _article(phrase):
    # "an okay kettle", "a useless kettle" (a "yoo" sound takes "a")
    vowel = phrase[0] in "aeiou" and not phrase.startswith(("use", "uni", "one"))
    return "an" if vowel else "a"


def _capitalize(text):
    return text[0].upper() + text[1:]


def opinion_phrase(opinion):
    """"not very good", "absolutely superb", "love", "would recommend"."""
    before = opinion.negator or opinion.modifier
    return f"{before} {opinion.entry.text}" if before else opinion.entry.text


def render_clause(judgement):
    phrase = opinion_phrase(judgement.opinion)
    plural = judgement.plural
    return judgement.frame.format(
        target=judgement.target,
        phrase=phrase,
        a_phrase=phrase if plural else f"{_article(phrase)} {phrase}",
        be="are" if plural else "is",
        pron="they" if plural else "it",
    )


def render_sentence(sentence):
    if isinstance(sentence, Fact):
        return sentence.text
    if isinstance(sentence, Contrast):
        first = _capitalize(render_clause(sentence.first))
        return f"{first}, but {render_clause(sentence.second)}."
    return _capitalize(render_clause(sentence)) + "."


def render_review(sentences):
    return " ".join(render_sentence(s) for s in sentences)


# ----------------------------------------------------------------------------- planning a review

_SLOT = re.compile(r"\{([^{}]+)\}")


def _fill(template, rng, words):
    """Fill each {slot}: a word of `words`, a NAMED_SLOTS pick, {a|b|c} or {lo-hi}."""
    def one(match):
        key = match.group(1)
        if key in words:
            return words[key]
        if key in NAMED_SLOTS:
            return rng.choice(NAMED_SLOTS[key])
        if "|" in key:
            return rng.choice(key.split("|"))
        low, high = key.split("-")
        return str(rng.randint(int(low), int(high)))
    return _SLOT.sub(one, template)


@dataclass
class _Product:
    """The one product a review is about, and the words that agree with it."""
    domain: Domain
    noun: str
    plural: bool
    name: str
    facts: tuple         # templates: the domain's facts and the product's own
    words: dict          # slot values for _fill: {this}, {name}, {It}, {s}, ...
    used: set            # aspects, frames and templates already in this review, so that
                         # one review does not say "Overall, ... Overall, ..." (membership only)


def _pick_product(rng):
    domain = rng.choice(DOMAINS)
    noun, plural, own_facts = rng.choice(domain.products)
    name = _fill(rng.choice(domain.names), rng, {})
    words = {
        "noun": noun,
        "name": name,
        "this": ("these " if plural else "this ") + noun,
        "It": "They" if plural else "It",
        "it": "them" if plural else "it",
        "s": "" if plural else "s",
        "is": "are" if plural else "is",
        "has": "have" if plural else "has",
    }
    return _Product(domain, noun, plural, name, own_facts + domain.facts, words, set())


def _fresh(rng, options, used, key=lambda x: x):
    """A random option not used yet in this review (any option once all are used)."""
    fresh = [o for o in options if key(o) not in used]
    choice = rng.choice(fresh or list(options))
    used.add(key(choice))
    return choice


def _entry(rng, part, kind, polarity, strength=None):
    if part == "AB":                    # corpus: each slot draws its own part
        part = rng.choice("AB")
    entries = _ENTRY_INDEX[(part, kind, polarity)]
    if strength is not None:
        entries = [e for e in entries if e.strength == strength]
    return rng.choice(entries)


def _modifier(rng, entry, attributive=False):
    """Maybe a word in front of the item; never one that could flip or hide its sign."""
    if entry.kind == "closer":
        return ""
    roll = rng.random()
    if entry.polarity == 0:
        # "a just okay kettle" does not read, so attributive frames skip "just".
        hedges = [h for h in HEDGES if not (attributive and h == "just")]
        return rng.choice(hedges) if roll < 0.35 else ""
    if entry.kind == "verb":
        return rng.choice(VERB_BOOSTERS) if roll < 0.3 else ""
    if roll < 0.3:
        return rng.choice(BOOSTERS[entry.strength])
    if roll < 0.45 and entry.strength == 1:
        return rng.choice(DOWNTONERS)
    return ""


def _opinion(rng, part, kind, polarity, attributive=False):
    """An opinion whose score has the sign of `polarity` (0: a lukewarm opinion)."""
    if polarity != 0 and kind == "adj" and not attributive and rng.random() < 0.07:
        entry = _entry(rng, part, kind, -polarity)      # "not awful" for a positive opinion
        return Opinion(entry, negator=rng.choice(NEGATORS[entry.strength]))
    entry = _entry(rng, part, kind, polarity)
    return Opinion(entry, modifier=_modifier(rng, entry, attributive))


def _aspect_target(rng, product):
    aspect, plural = _fresh(rng, product.domain.aspects, product.used, key=lambda a: a[0])
    target = "the " + aspect
    if rng.random() < 0.2:              # "the staff at the Grey Heron Hotel"
        target += f" {product.domain.prep} {product.name}"
    return target, plural


def _product_target(rng, product):
    if rng.random() < 0.5:
        return product.words["this"], product.plural
    return product.name, False          # a name is singular: "the Auralis Q30 is"


def _aspect_judgement(rng, product, part, polarity, frames=ASPECT_FRAMES):
    target, plural = _aspect_target(rng, product)
    frame = _fresh(rng, frames, product.used)
    return Judgement(frame, target, plural, _opinion(rng, part, "adj", polarity))


def _verb_judgement(rng, product, part, polarity):
    if rng.random() < 0.7:
        target, _ = _aspect_target(rng, product)
    else:
        target, _ = _product_target(rng, product)
    frame = _fresh(rng, VERB_FRAMES, product.used)
    return Judgement(frame, target, False, _opinion(rng, part, "verb", polarity))


def _product_judgement(rng, product, part, polarity):
    if rng.random() < 0.4:              # "All in all, an excellent kettle."
        opinion = _opinion(rng, part, "adj", polarity, attributive=True)
        frame = _fresh(rng, ATTRIBUTIVE_FRAMES, product.used)
        return Judgement(frame, product.noun, product.plural, opinion)
    target, plural = _product_target(rng, product)
    frame = _fresh(rng, PRODUCT_FRAMES, product.used)
    return Judgement(frame, target, plural, _opinion(rng, part, "adj", polarity))


def _contrast(rng, product, part, polarity):
    """"X, but Y": Y carries the review's polarity, X the opposite one or a lukewarm one."""
    def clause(pol):
        if pol != 0 and rng.random() < 0.3:
            target, _ = _aspect_target(rng, product)
            return Judgement(VERB_FRAMES[0], target, False, _opinion(rng, part, "verb", pol))
        return _aspect_judgement(rng, product, part, pol, frames=CLAUSE_FRAMES)
    first = clause(0 if rng.random() < 0.2 else -polarity)
    return Contrast(first, clause(polarity))


def _judgement(rng, product, part, polarity):
    """A sentence whose score has the sign of `polarity` (+1 or -1)."""
    roll = rng.random()
    if roll < 0.45:
        return _aspect_judgement(rng, product, part, polarity)
    if roll < 0.60:
        return _product_judgement(rng, product, part, polarity)
    if roll < 0.93:
        return _verb_judgement(rng, product, part, polarity)
    return _contrast(rng, product, part, polarity)


def _lukewarm(rng, product, part, aspect_only=False):
    """"The lid is just okay." / "All in all, an average kettle." (score 0)"""
    if aspect_only or rng.random() < 0.7:
        return _aspect_judgement(rng, product, part, 0)
    return _product_judgement(rng, product, part, 0)


def _minor(rng, product, part, polarity):
    """A toned-down mild remark against the review's lean: weight 1, outweighed."""
    target, plural = _aspect_target(rng, product)
    entry = _entry(rng, part, "adj", -polarity, strength=1)
    opinion = Opinion(entry, modifier=rng.choice(DOWNTONERS))
    return Judgement(_fresh(rng, MINOR_FRAMES, product.used), target, plural, opinion)


def _fact(rng, product):
    return Fact(_fill(_fresh(rng, product.facts, product.used), rng, product.words))


def _closer(rng, product, part, polarity):
    """A verdict of the review's own polarity, or a remark with no opinion at all.

    A lukewarm verdict ("No strong feelings one way or the other.") only ends neutral
    reviews: after "superb" it would contradict the review rather than weigh nothing.
    """
    if rng.random() < 0.2:
        return Fact(rng.choice(NEUTRAL_CLOSERS))
    entry = _entry(rng, part, "closer", polarity)
    return Judgement(CLOSER_FRAME, "", False, Opinion(entry))


def _body_sentence(rng, product, part, polarity, first):
    """One body sentence. The first one carries the label; the others add variety."""
    roll = rng.random()
    if polarity == 0:
        lukewarm_share = 0.55 if first else 0.3
        if roll < lukewarm_share:
            return _lukewarm(rng, product, part)
        return _fact(rng, product)
    if first or roll < 0.5:
        return _judgement(rng, product, part, polarity)
    if roll < 0.8:
        return _fact(rng, product)
    if roll < 0.95:                     # "the lid is okay" in a positive review: weighs 0
        return _lukewarm(rng, product, part, aspect_only=True)
    return _minor(rng, product, part, polarity)


def plan_review(rng, part, label):
    """The sentence structures of one review of `part` ("A", "B" or "AB") with `label`."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    polarity = LABELS.index(label) - 1
    while True:
        product = _pick_product(rng)
        n_body = rng.choices((1, 2, 3), weights=(3, 5, 2))[0]
        sentences = [_body_sentence(rng, product, part, polarity, first=(i == 0))
                     for i in range(n_body)]
        rng.shuffle(sentences)          # the sentence that carries the label may come anywhere
        if rng.random() < 0.55:
            sentences.append(_closer(rng, product, part, polarity))
        if len(sentences) < 4 and rng.random() < 0.35:
            opener = _fill(_fresh(rng, product.domain.openers, product.used), rng, product.words)
            sentences.insert(0, Fact(opener))
        # The rule decides. A rare plan whose minor remark cancels a weak judgement gives
        # another label; it is dropped and drawn again.
        if review_label(sentences) == label:
            return sentences


# ----------------------------------------------------------------------------- public API

def generate_review(rng, part, label=None):
    """(text, label) of one review. `rng` is a random.Random; `label` None picks one."""
    if label is None:
        label = rng.choice(LABELS)
    sentences = plan_review(rng, part, label)
    return render_review(sentences), review_label(sentences)


def _iter_documents(seed):
    """An endless, seeded stream of corpus documents (parts A and B mixed)."""
    rng = random.Random(f"minift-feedback-corpus-{seed}")
    while True:
        text, label = generate_review(rng, "AB")
        if rng.random() < RATED_FRACTION:
            yield f"{format_prompt(text)} {label}"
        else:
            yield text


def corpus_documents(n_docs, seed=0):
    """`n_docs` unlabeled documents; the first k of them do not depend on `n_docs`."""
    return list(itertools.islice(_iter_documents(seed), n_docs))


def corpus_text(n_bytes=3_000_000, seed=0):
    """Documents joined by blank lines until the text reaches `n_bytes` (ASCII: bytes = chars).

    The text is a prefix of the same document stream as `corpus_documents(.., seed)`.
    """
    documents = _iter_documents(seed)
    pieces, size = [], 0
    while size < n_bytes:
        doc = next(documents)
        size += len(doc) + (len(DOCUMENT_SEPARATOR) if pieces else 0)
        pieces.append(doc)
    return DOCUMENT_SEPARATOR.join(pieces)


def _labeled_split(rng, part, n, seen):
    """`n` (text, label) pairs, labels balanced and shuffled, no text already in `seen`."""
    labels = [LABELS[i % len(LABELS)] for i in range(n)]
    rng.shuffle(labels)
    examples = []
    for label in labels:
        text, _ = generate_review(rng, part, label)
        while text in seen:
            text, _ = generate_review(rng, part, label)
        seen.add(text)
        examples.append((text, label))
    return examples


def labeled_sets(seed=0, n_train=480, n_test=300):
    """{"train", "test_a", "test_b"}: lists of (text, label), balanced across LABELS.

    train and test_a use lexicon part A only, test_b part B only. No text appears twice
    across (or within) the three sets. The test sets are drawn first, from their own
    seeded streams, so they do not change with `n_train`.
    """
    if not 0 <= n_train <= MAX_TRAIN:
        raise ValueError(f"n_train must be between 0 and {MAX_TRAIN} (few labels is the "
                         f"point of the demos), got {n_train}")
    if n_test < 0:
        raise ValueError(f"n_test must be >= 0, got {n_test}")
    seen = set()
    test_a = _labeled_split(random.Random(f"minift-feedback-test_a-{seed}"), "A", n_test, seen)
    test_b = _labeled_split(random.Random(f"minift-feedback-test_b-{seed}"), "B", n_test, seen)
    train = _labeled_split(random.Random(f"minift-feedback-train-{seed}"), "A", n_train, seen)
    return {"train": train, "test_a": test_a, "test_b": test_b}
