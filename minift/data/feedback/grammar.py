"""Review structure, the label rule, and rendering a structure to text.

A review is a list of sentences (Judgement, Contrast or Fact). Its label is computed
from that structure by the rule below, never by reading the rendered text back, so no
label can be wrong.
"""
from dataclasses import dataclass

from .lexicon import BOOSTER_WORDS, LABELS, Entry


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
    boost = 1 if opinion.modifier in BOOSTER_WORDS else 0
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
