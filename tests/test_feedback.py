"""Tests of the synthetic customer-feedback generator (minift.data.feedback)."""
import collections
import random
import re
import statistics

import pytest

from minift.data import feedback
from minift.data.feedback import (
    ENTRY_BY_TEXT, LABELS, Contrast, Fact, Judgement, Opinion, render_review, review_label,
)


def whole_word(item):
    """Matches `item` as whole words; a hyphen joins words ("so-so" is one word)."""
    return re.compile(r"(?<![\w-])" + re.escape(item) + r"(?![\w-])", re.IGNORECASE)


def items_of(part):
    return [e.text for e in feedback.ENTRIES if e.part == part]


def any_item(part):
    return re.compile("|".join(whole_word(t).pattern for t in items_of(part)), re.IGNORECASE)


def sentence_count(text):
    # A full stop counts only when a space or the end follows it: "Bluetooth 5.2" is no end.
    return len(re.findall(r"[.!?](?:\s|$)", text))


@pytest.fixture(scope="module")
def sets():
    return feedback.labeled_sets(seed=0)


# ----------------------------------------------------------------------------- determinism

def test_same_seed_gives_same_data():
    assert feedback.corpus_documents(300, seed=3) == feedback.corpus_documents(300, seed=3)
    assert feedback.corpus_text(20_000, seed=3) == feedback.corpus_text(20_000, seed=3)
    a = feedback.labeled_sets(seed=3, n_train=60, n_test=30)
    b = feedback.labeled_sets(seed=3, n_train=60, n_test=30)
    assert a == b


def test_different_seed_gives_different_data():
    assert feedback.corpus_documents(50, seed=0) != feedback.corpus_documents(50, seed=1)
    a = feedback.labeled_sets(seed=0, n_train=60, n_test=30)
    b = feedback.labeled_sets(seed=1, n_train=60, n_test=30)
    for split in ("train", "test_a", "test_b"):
        assert a[split] != b[split]


def test_generate_review_is_a_function_of_the_rng_state():
    one = [feedback.generate_review(random.Random(7), "AB") for _ in range(3)]
    assert one[0] == one[1] == one[2]


# ----------------------------------------------------------------------------- labeled sets

def test_labeled_set_sizes_and_balance(sets):
    assert {k: len(v) for k, v in sets.items()} == {"train": 480, "test_a": 300, "test_b": 300}
    for split, examples in sets.items():
        counts = collections.Counter(label for _, label in examples)
        assert set(counts) == set(LABELS), split
        assert max(counts.values()) - min(counts.values()) <= 1, (split, counts)


def test_uneven_sizes_stay_balanced():
    data = feedback.labeled_sets(seed=2, n_train=100, n_test=31)
    for split, examples in data.items():
        counts = collections.Counter(label for _, label in examples)
        assert max(counts.values()) - min(counts.values()) <= 1, (split, counts)


def test_labels_are_shuffled(sets):
    # Not in blocks of one label: many label changes along the list.
    labels = [label for _, label in sets["train"]]
    changes = sum(a != b for a, b in zip(labels, labels[1:]))
    assert changes > len(labels) / 2


def test_n_train_cap():
    assert len(feedback.labeled_sets(n_train=500, n_test=3)["train"]) == 500
    with pytest.raises(ValueError):
        feedback.labeled_sets(n_train=501)
    with pytest.raises(ValueError):
        feedback.labeled_sets(n_train=-1)


def test_test_sets_do_not_depend_on_n_train():
    small = feedback.labeled_sets(seed=4, n_train=30, n_test=45)
    large = feedback.labeled_sets(seed=4, n_train=300, n_test=45)
    assert small["test_a"] == large["test_a"]
    assert small["test_b"] == large["test_b"]


def test_no_text_appears_twice():
    # Large test sets, where short factual reviews would collide if nothing prevented it.
    data = feedback.labeled_sets(seed=1, n_train=480, n_test=2000)
    texts = [text for examples in data.values() for text, _ in examples]
    assert len(texts) == len(set(texts))


def test_labeled_examples_are_short_single_reviews(sets):
    for examples in sets.values():
        for text, label in examples:
            assert label in LABELS
            assert 1 <= sentence_count(text) <= 4, text
            assert 3 <= len(text.split()) <= 70, text
            assert "Review:" not in text and "Sentiment:" not in text and "\n" not in text


def test_neutral_is_not_given_away_by_length(sets):
    # Mean word and sentence counts of each label lie within 15% of the overall mean.
    examples = sets["train"] + sets["test_a"] + sets["test_b"]
    for measure in (lambda t: len(t.split()), sentence_count):
        overall = statistics.mean(measure(t) for t, _ in examples)
        for label in LABELS:
            mean = statistics.mean(measure(t) for t, l in examples if l == label)
            assert abs(mean - overall) < 0.15 * overall, (label, mean, overall)


# ----------------------------------------------------------------------------- the lexicon split

def test_train_and_test_a_hold_no_part_b_item(sets):
    part_b = any_item("B")
    for split in ("train", "test_a"):
        hits = [t for t, _ in sets[split] if part_b.search(t)]
        assert hits == [], (split, hits[:3])


def test_test_b_holds_no_part_a_item_and_uses_part_b(sets):
    part_a, part_b = any_item("A"), any_item("B")
    assert [t for t, _ in sets["test_b"] if part_a.search(t)] == []
    # Every polar test_b review is judged with part-B words.
    polar = [t for t, label in sets["test_b"] if label != "neutral"]
    assert all(part_b.search(t) for t in polar)


def test_corpus_mixes_both_parts_within_documents():
    part_a, part_b = any_item("A"), any_item("B")
    docs = feedback.corpus_documents(2000, seed=0)
    hits_a = sum(len(part_a.findall(d)) for d in docs)
    hits_b = sum(len(part_b.findall(d)) for d in docs)
    assert hits_a > 1000 and hits_b > 1000
    assert 0.8 < hits_b / hits_a < 1.25                     # B as frequent as A
    both = sum(bool(part_a.search(d) and part_b.search(d)) for d in docs)
    assert both > 0.25 * len(docs)                            # side by side in one review


def test_lexicon_parts_are_disjoint():
    a, b = items_of("A"), items_of("B")
    assert not set(a) & set(b)
    for x in a:
        for y in b:
            assert not whole_word(x).search(y), (x, y)
            assert not whole_word(y).search(x), (y, x)


def test_lexicon_parts_share_no_word_or_stem():
    # Function words may repeat; content words may not, nor share a 5-letter start
    # ("pleasant"/"pleased"), since a tokenizer would give both the same first piece.
    function_words = {"a", "the", "i", "it", "me", "with", "for", "of", "to", "from", "if", "or",
                      "would", "overall", "not", "no", "will", "can"}

    def content_words(part):
        return {w for t in items_of(part) for w in re.findall(r"[a-z]+", t.lower())
                if w not in function_words}

    for x in content_words("A"):
        for y in content_words("B"):
            assert x != y, x
            if min(len(x), len(y)) >= 4:
                assert x not in y and y not in x, (x, y)
                assert x[:5] != y[:5], (x, y)


def test_shared_text_holds_no_sentiment_item():
    phrases = feedback.shared_phrases()
    assert len(phrases) > 300
    for entry in feedback.ENTRIES:
        pattern = whole_word(entry.text)
        hits = [p for p in phrases if pattern.search(p)]
        assert hits == [], (entry.text, hits)


def test_lexicon_shape():
    assert set(feedback.LEXICON) == {"A", "B"}
    for part in ("A", "B"):
        assert set(feedback.LEXICON[part]) == set(LABELS)
        for polarity in (-1, 1):
            strengths = {e.strength for e in feedback.ENTRIES
                         if e.part == part and e.polarity == polarity}
            assert strengths == {1, 2}, (part, polarity)
        for label in LABELS:
            size_a = len(feedback.LEXICON["A"][label])
            size_b = len(feedback.LEXICON["B"][label])
            assert size_b >= 0.8 * size_a > 0, label
    assert all(e.text in ENTRY_BY_TEXT for e in feedback.ENTRIES)


# ----------------------------------------------------------------------------- the label rule

def aspect(text, modifier="", negator="", frame="{target} {be} {phrase}", target="the sound"):
    return Judgement(frame, target, False, Opinion(ENTRY_BY_TEXT[text], modifier, negator))


def closer(text):
    return Judgement(feedback.CLOSER_FRAME, "", False, Opinion(ENTRY_BY_TEXT[text]))


def test_rule_negation_flips_and_weakens():
    assert review_label([aspect("great", negator="not")]) == "negative"
    assert review_label([aspect("bad", negator="not")]) == "positive"
    # weakened to 1: "not awful" (+1) is outweighed by "poor" (-1) plus a boost (-1)
    review = [aspect("awful", negator="not"), aspect("poor", modifier="very", target="the lid")]
    assert feedback.review_score(review) == -1
    assert render_review(review) == "The sound is not awful. The lid is very poor."


def test_rule_contrast_second_clause_decides():
    review = [Contrast(aspect("superb", modifier="absolutely"),
                       aspect("poor", target="the battery life"))]
    assert render_review(review) == "The sound is absolutely superb, but the battery life is poor."
    assert review_label(review) == "negative"
    lukewarm_first = [Contrast(aspect("okay"), aspect("decent", target="the lid"))]
    assert review_label(lukewarm_first) == "positive"


def test_rule_facts_and_lukewarm_are_neutral():
    facts = [Fact("Bought this for my son."), Fact("It holds 1.7 litres."),
             Fact("That is all for now.")]
    assert review_label(facts) == "neutral"
    lukewarm = facts[:1] + [aspect("average", modifier="fairly"), closer("will keep it for now")]
    assert review_label(lukewarm) == "neutral"
    assert review_label([aspect("so-so", modifier="just")]) == "neutral"


def test_rule_strength_and_boosters_weigh():
    assert feedback.opinion_score(Opinion(ENTRY_BY_TEXT["decent"])) == 1
    assert feedback.opinion_score(Opinion(ENTRY_BY_TEXT["superb"])) == 2
    assert feedback.opinion_score(Opinion(ENTRY_BY_TEXT["decent"], modifier="very")) == 2
    assert feedback.opinion_score(Opinion(ENTRY_BY_TEXT["decent"], modifier="fairly")) == 1
    assert feedback.opinion_score(Opinion(ENTRY_BY_TEXT["hate"], modifier="really")) == -3
    # a toned-down minor complaint does not flip a strongly positive review
    review = [aspect("stellar"), aspect("shoddy", modifier="somewhat", target="the zip",
                                        frame="admittedly, {target} {be} {phrase}"),
              closer("top marks from me")]
    assert review_label(review) == "positive"
    assert feedback.review_score(review) == 3


def test_generated_label_matches_the_rule():
    rng = random.Random(5)
    for part in ("A", "B", "AB"):
        for label in LABELS:
            for _ in range(100):
                sentences = feedback.plan_review(rng, part, label)
                assert review_label(sentences) == label
                text = render_review(sentences)
                assert 1 <= sentence_count(text) <= 4, text
    text, label = feedback.generate_review(rng, "A")
    assert label in LABELS and isinstance(text, str)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        feedback.generate_review(random.Random(0), "C")
    with pytest.raises(ValueError):
        feedback.generate_review(random.Random(0), "A", "mixed")


# ----------------------------------------------------------------------------- variety and corpus

def test_reviews_are_varied():
    rng = random.Random(11)
    texts = [feedback.generate_review(rng, "A")[0] for _ in range(2000)]
    assert len(set(texts)) >= 0.95 * len(texts)
    # at least six domains, each of them written about
    assert len(feedback.DOMAINS) >= 6
    for domain in feedback.DOMAINS:
        aspects = [whole_word("the " + aspect) for aspect, _ in domain.aspects]
        assert sum(any(a.search(t) for a in aspects) for t in texts) > 50, domain.name


def test_corpus_text_size_and_format():
    for n_bytes in (5_000, 200_000):
        text = feedback.corpus_text(n_bytes, seed=0)
        assert abs(len(text.encode("utf-8")) - n_bytes) <= 0.1 * n_bytes
    assert text.isascii()
    docs = text.split(feedback.DOCUMENT_SEPARATOR)
    # the text is a prefix of the document stream, and splits back into it
    assert docs == feedback.corpus_documents(len(docs), seed=0)
    assert all(d == d.strip() and d and "\n\n" not in d for d in docs)
    assert feedback.corpus_text(0) == ""


def test_corpus_holds_rated_reviews():
    docs = feedback.corpus_documents(3000, seed=1)
    rated = [d for d in docs if d.startswith("Review: ")]
    share = feedback.RATED_FRACTION
    assert share - 0.05 <= len(rated) / len(docs) <= share + 0.05
    labels = collections.Counter()
    for doc in rated:
        prompt, sep, label = doc.rpartition(" ")
        assert label in LABELS, doc
        text = prompt[len("Review: "):-len("\nSentiment:")]
        assert doc == feedback.rated_review(text, label), doc
        labels[label] += 1
    assert set(labels) == set(LABELS)
    # plain documents are bare reviews
    assert all("Sentiment:" not in d for d in docs if not d.startswith("Review: "))


def test_rated_review_format():
    assert feedback.RATED_REVIEW_TEMPLATE == "Review: {text}\nSentiment:"
    document = feedback.rated_review("It works.", "positive")
    assert document == "Review: It works.\nSentiment: positive"

