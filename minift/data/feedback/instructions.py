"""Requests, the responses that follow them, and preference pairs, for alignment.

A request asks for a review of one product with one sentiment:

    "Write a negative review of the blender."      label negative, noun "blender"

A response follows it when the judge reads the requested sentiment in it and the text
stays on the requested product (judge.Verdict.on_product). The planner writes such
responses on demand (`respond`). Requests ask for positive or negative reviews only: a
neutral review is the judge's verdict on any text without opinions, gibberish included,
so asking for one would measure little.

Six phrasings x 26 products x 2 sentiments make 312 requests. For every (product,
sentiment) one phrasing is held out (`request_split`): the 52 held-out requests are never
trained on, word for word, though their product and sentiment are.

Preference pairs hold a request, a chosen response that follows it and a rejected one
that does not, made one of three ways (`REJECTION_KINDS`):

    sentiment   the same product, the opposite sentiment
    product     the requested sentiment, about another product (of another domain)
    mixed       sentences of both sentiments about the product, adding up to another label
"""
import random
from dataclasses import dataclass

from .grammar import Contrast, Judgement, opinion_score, render_review, review_label
from .judge import judge
from .planner import plan_review
from .world import PRODUCTS

REQUEST_TEMPLATES = (
    "Write a {label} review of the {noun}.",
    "Please write a {label} review of the {noun}.",
    "I need a {label} review for the {noun}.",
    "Give me a {label} opinion of the {noun}.",
    "Describe the {noun} in a {label} review.",
    "Review the {noun}, and make it {label}.",
)
REQUEST_LABELS = ("negative", "positive")
REJECTION_KINDS = ("sentiment", "product", "mixed")
OPPOSITE = {"negative": "positive", "positive": "negative"}


@dataclass(frozen=True)
class Request:
    text: str        # "Write a negative review of the blender."
    label: str       # the sentiment asked for
    noun: str        # the product asked for (a world.PRODUCTS key)


def all_requests():
    """Every request: each phrasing of each product and sentiment (312)."""
    return [Request(t.format(label=label, noun=noun), label, noun)
            for noun in sorted(PRODUCTS) for label in REQUEST_LABELS for t in REQUEST_TEMPLATES]


def request_split(seed=0):
    """{"train": [...], "test": [...]}: per (product, sentiment), one phrasing drawn at
    random (seeded) is held out for testing; the other five are for training."""
    rng = random.Random(f"minift-feedback-requests-{seed}")
    split = {"train": [], "test": []}
    requests = all_requests()
    n = len(REQUEST_TEMPLATES)
    for i in range(0, len(requests), n):
        held_out = rng.randrange(n)
        for j, request in enumerate(requests[i:i + n]):
            split["test" if j == held_out else "train"].append(request)
    return split


def _opinions(sentences):
    """Every opinion in a review's structure, the overruled first clause of a contrast too."""
    for s in sentences:
        if isinstance(s, Contrast):
            yield s.first.opinion
            yield s.second.opinion
        elif isinstance(s, Judgement):
            yield s.opinion


def respond(rng, request, part="AB"):
    """A review that follows `request` plainly: every opinion in it leans the requested
    way (or is lukewarm), and it names the product and nothing else (drawn again until
    the judge agrees)."""
    sign = 1 if request.label == "positive" else -1
    while True:
        sentences = plan_review(rng, part, request.label, request.noun)
        text = render_review(sentences)
        if all(opinion_score(o) * sign >= 0 for o in _opinions(sentences)) and judge(text).on_product(request.noun):
            return text


def _off_product(rng, request, part):
    """A review with the requested sentiment about a product of another domain."""
    domain = PRODUCTS[request.noun][0]
    others = sorted(n for n, (d, _, _) in PRODUCTS.items() if d is not domain)
    return respond(rng, Request(request.text, request.label, rng.choice(others)), part)


def _mixed(rng, request, part):
    """Sentences for and against the product whose sum is not the requested label."""
    while True:
        lean = plan_review(rng, part, request.label, request.noun)
        against = plan_review(rng, part, OPPOSITE[request.label], request.noun)
        sentences = lean[:2] + against[-2:]
        if review_label(lean[:2]) == request.label and review_label(sentences) != request.label:
            return render_review(sentences)


def rejected_response(rng, request, kind, part="AB"):
    """A response that does not follow `request`, made the `kind` way (REJECTION_KINDS)."""
    if kind == "sentiment":
        return respond(rng, Request(request.text, OPPOSITE[request.label], request.noun), part)
    if kind == "product":
        return _off_product(rng, request, part)
    if kind == "mixed":
        return _mixed(rng, request, part)
    raise ValueError(f"kind must be one of {REJECTION_KINDS}, got {kind!r}")


def _cycle(rng, requests, n):
    """`n` requests: the list in a fresh shuffled order each round."""
    out = []
    while len(out) < n:
        order = list(requests)
        rng.shuffle(order)
        out += order[:n - len(out)]
    return out


def sft_examples(n, seed=0):
    """`n` (request text, response) pairs over the training requests, each request in turn."""
    rng = random.Random(f"minift-feedback-sft-{seed}")
    return [(r.text, respond(rng, r)) for r in _cycle(rng, request_split()["train"], n)]


def preference_pairs(n, seed=0):
    """`n` preference pairs over the training requests, as the JSONL pairs format holds
    them: {"prompt", "chosen", "rejected", "kind"}; the kinds come in turn."""
    rng = random.Random(f"minift-feedback-pairs-{seed}")
    pairs = []
    for i, r in enumerate(_cycle(rng, request_split()["train"], n)):
        kind = REJECTION_KINDS[i % len(REJECTION_KINDS)]
        pairs.append({"prompt": r.text, "chosen": respond(rng, r), "rejected": rejected_response(rng, r, kind),
                      "kind": kind})
    return pairs
