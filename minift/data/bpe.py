"""One step of BPE training, written out: what the `tokenizers` library does at each step.

minift trains its tokenizer with HF `tokenizers` (tokenizer.py), whose Rust trainer is
fast and hard to read. This is the same step in a few readable lines, for learning; the
test suite checks that repeating it gives the library's first merges
(tests/test_tokenizer.py).

Training starts from words split into single symbols (bytes, in minift: the
pre-tokenizer first cuts the text into words, so no token spans two words), each word
with its count in the corpus. Every token has an id: the symbols first, then each
merged token in the order it was made. Each step

    1. counts every adjacent pair of tokens, over every word, each occurrence weighted
       by its word's count (a pair twice in one word counts twice);
    2. takes the most frequent pair; on a tie, the library takes the pair with the
       smallest ids (the first token's, then the second's);
    3. replaces every occurrence of that pair, scanning each word left to right, by
       one new token.

Training repeats the step until the vocabulary has the size asked for (or no pair
occurs often enough: the library's `min_frequency`).
"""
from collections import Counter


def bpe_merge_step(word_counts, new_id):
    """One BPE merge. `word_counts` is {word: count}, each word a tuple of token ids;
    `new_id` the id of the token the merged pair becomes. Returns (pair, new word
    counts): the most frequent adjacent pair (a tuple of two ids; the smallest pair on a
    tie) and {word: count} with that pair merged into `new_id` everywhere."""
    pairs = Counter()
    for word, count in word_counts.items():
        for pair in zip(word, word[1:]):
            pairs[pair] += count
    pair = min(pairs, key=lambda p: (-pairs[p], p))       # the most frequent; then the smallest ids
    merged_counts = Counter()
    for word, count in word_counts.items():
        merged, i = [], 0
        while i < len(word):
            if word[i:i + 2] == pair:                       # left to right: "a a a" -> "aa a"
                merged.append(new_id)
                i += 2
            else:
                merged.append(word[i])
                i += 1
        merged_counts[tuple(merged)] += count
    return pair, dict(merged_counts)
