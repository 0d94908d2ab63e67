"""Planning a review for a requested label: choose a product, then sentences that add up.

`plan_review` draws one product and a few body sentences whose scores lean the
requested way, adds an opener and a closer, and keeps the plan only if the label rule
(grammar.review_label) agrees. `generate_review` renders the plan to text.
"""
import re
from dataclasses import dataclass

from .grammar import Contrast, Fact, Judgement, Opinion, render_review, review_label
from .lexicon import (
    BOOSTERS, DOWNTONERS, ENTRY_INDEX, HEDGES, LABELS, NEGATORS, PARTS, VERB_BOOSTERS,
)
from .world import (
    ASPECT_FRAMES, ATTRIBUTIVE_FRAMES, CLAUSE_FRAMES, CLOSER_FRAME, DOMAINS, MINOR_FRAMES,
    NAMED_SLOTS, NEUTRAL_CLOSERS, PRODUCT_FRAMES, PRODUCTS, VERB_FRAMES, Domain,
)


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


def _pick_product(rng, noun=None):
    if noun is None:
        domain = rng.choice(DOMAINS)
        noun, plural, own_facts = rng.choice(domain.products)
    else:                               # a requested product (feedback.instructions)
        domain, plural, own_facts = PRODUCTS[noun]
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
    entries = ENTRY_INDEX[(part, kind, polarity)]
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


def plan_review(rng, part, label, noun=None):
    """The sentence structures of one review of `part` ("A", "B" or "AB") with `label`,
    about a product drawn at random or, with `noun`, about that product (a PRODUCTS key)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    if noun is not None and noun not in PRODUCTS:
        raise ValueError(f"noun must be one of {sorted(PRODUCTS)}, got {noun!r}")
    polarity = LABELS.index(label) - 1
    while True:
        product = _pick_product(rng, noun)
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


def generate_review(rng, part, label=None, noun=None):
    """(text, label) of one review. `rng` is a random.Random; `label` None picks one;
    `noun` None lets the planner pick the product."""
    if label is None:
        label = rng.choice(LABELS)
    sentences = plan_review(rng, part, label, noun)
    return render_review(sentences), review_label(sentences)
