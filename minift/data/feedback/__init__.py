"""Synthetic customer feedback: minift's built-in, deterministic "embedded world".

Demos must run with no download, so this package writes short customer reviews of
invented products in eight domains (electronics, kitchen appliances, clothing,
furniture, hotels, restaurants, apps, books). It yields an unlabeled pretraining
corpus and small labeled negative / neutral / positive sets. Everything is drawn from
`random.Random` with a fixed seed, so the same seed gives the same text on every run
and platform (string seeds are hashed with SHA-512 by `random`, not by `hash()`).

Reading order
-------------
    lexicon    the sentiment items (parts A and B) and the modifiers
    world      clause frames, domains, products, aspects, facts, openers, closers
    grammar    review structure, the label rule, rendering to text
    planner    plan_review: a review aimed at a requested label; generate_review
    datasets   the corpus stream (with rated reviews) and the labeled sets
    judge      the exact judge: a text's sentiment by the label rule, and its products
    instructions  requests ("Write a negative review of the blender."), responses that
               follow them, preference pairs (for alignment)

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
`corpus_documents` returns one review per document. About 35% are "rated reviews",
written with `RATED_REVIEW_TEMPLATE` as "Review: <text>\\nSentiment: positive", as if
scraped from a review site: web text carries such naturally labeled examples. They are
what lets a language model answer that prompt zero-shot and what fine-tuning later
draws on, which is why fine-tuning's default prompt format matches this one.
`corpus_text` joins documents with a blank line ("\\n\\n"); documents never contain a
blank line, so the pretraining pipeline can split them again and put its own
end-of-text token between them. All text is ASCII (British spelling).
"""
from .lexicon import (
    BOOSTERS, DOWNTONERS, ENTRIES, ENTRY_BY_TEXT, HEDGES, LABELS, LEXICON, NEGATORS, PARTS,
    VERB_BOOSTERS, Entry,
)
from .world import (
    ASPECT_FRAMES, ATTRIBUTIVE_FRAMES, CLAUSE_FRAMES, CLOSER_FRAME, DOMAINS, MINOR_FRAMES,
    NAMED_SLOTS, NEUTRAL_CLOSERS, PRODUCT_FRAMES, PRODUCTS, VERB_FRAMES, Domain, shared_phrases,
)
from .grammar import (
    Contrast, Fact, Judgement, Opinion, opinion_phrase, opinion_score, render_clause,
    render_review, render_sentence, review_label, review_score, sentence_score,
)
from .planner import generate_review, plan_review
from .datasets import (
    DOCUMENT_SEPARATOR, MAX_TRAIN, RATED_FRACTION, RATED_REVIEW_TEMPLATE,
    budget_train_set, corpus_documents, corpus_text, labeled_sets, rated_review,
)
from .judge import Verdict, judge
from .instructions import (
    REJECTION_KINDS, REQUEST_LABELS, REQUEST_TEMPLATES, Request, all_requests, preference_pairs,
    rejected_response, request_split, respond, sft_examples,
)

__all__ = [
    # lexicon
    "LABELS", "PARTS", "Entry", "ENTRIES", "ENTRY_BY_TEXT", "LEXICON",
    "BOOSTERS", "VERB_BOOSTERS", "DOWNTONERS", "HEDGES", "NEGATORS",
    # world
    "CLAUSE_FRAMES", "ASPECT_FRAMES", "PRODUCT_FRAMES", "ATTRIBUTIVE_FRAMES", "VERB_FRAMES",
    "MINOR_FRAMES", "CLOSER_FRAME", "NAMED_SLOTS", "Domain", "DOMAINS", "PRODUCTS", "NEUTRAL_CLOSERS",
    "shared_phrases",
    # grammar
    "Opinion", "Judgement", "Contrast", "Fact",
    "opinion_score", "sentence_score", "review_score", "review_label",
    "opinion_phrase", "render_clause", "render_sentence", "render_review",
    # planner
    "plan_review", "generate_review",
    # datasets
    "DOCUMENT_SEPARATOR", "RATED_FRACTION", "MAX_TRAIN", "RATED_REVIEW_TEMPLATE",
    "rated_review", "corpus_documents", "corpus_text", "labeled_sets", "budget_train_set",
    # judge
    "Verdict", "judge",
    # instructions
    "REQUEST_TEMPLATES", "REQUEST_LABELS", "REJECTION_KINDS", "Request", "all_requests", "request_split",
    "respond", "rejected_response", "sft_examples", "preference_pairs",
]
