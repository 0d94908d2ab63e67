"""Alignment: the exact judge, requests and preference pairs, the pairs file, sequence
log-probabilities and the DPO loss, the align command (SFT and DPO), its run directory,
exact resume and the CLI. Tiny models built here only."""
import json
import math
import random
import re

import numpy as np
import pytest

import minift
from minift import align as al
from minift.adapt.prompts import IGNORE
from minift.cli import main
from minift.data import Tokenizer, feedback, load_pairs, write_pairs
from minift.adapt import PromptFormat
from minift.data.feedback import LABELS, PRODUCTS, judge
from minift.data.feedback.grammar import render_review, review_score
from minift.errors import MiniftError
from minift.files import load_safetensors, save_safetensors, write_json
from minift.generate import generate, generate_batch
from minift.model import GPT, GPTConfig
from minift.pretrain import load_gpt
from minift.runs import CHECKPOINT, LANGUAGE_MODEL_KINDS, WEIGHTS
from minift.tensor import Tensor

from quiet import Silent, quiet
from run_dirs import pretrained_run


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(feedback.corpus_documents(400, seed=5), vocab_size=300)


@pytest.fixture(scope="module")
def config(tok):
    return GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=16)


@pytest.fixture(scope="module")
def init_run(tmp_path_factory, tok, config):
    """A finished 'pretrained' run directory with random weights."""
    return pretrained_run(tmp_path_factory.mktemp("init"), tok, config)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", feedback.preference_pairs(40, seed=3))


def run_align(init, out, **settings):
    """align() quietly, with AlignConfig settings as keywords (until= passes through)."""
    until = settings.pop("until", None)
    return al.align(init, out, al.AlignConfig(**settings), until=until, log=quiet, progress=Silent())


# ----------------------------------------------------------------------------- the judge

def test_the_judge_gives_the_label_rule_score_of_every_planner_review():
    rng = random.Random(4)
    for part in ("A", "B", "AB"):
        for label in LABELS:
            for i in range(150):
                noun = sorted(PRODUCTS)[i % len(PRODUCTS)]
                sentences = feedback.plan_review(rng, part, label, noun)
                verdict = judge(render_review(sentences))
                assert verdict.score == review_score(sentences), render_review(sentences)
                assert verdict.label == label
                # a review of `noun` names no other product and nothing of another domain
                assert verdict.nouns <= {noun} and verdict.domains <= {PRODUCTS[noun][0].name}, \
                    render_review(sentences)


@pytest.mark.parametrize("text, score", [
    ("The lid is not bad.", 1),                                               # negation flips and weakens
    ("Not great.", -1),
    ("The sound is absolutely superb, but the battery life is poor.", -1),    # the clause after "but" decides
    ("I really hate this kettle. Would not recommend.", -4),                  # boosted verb; one closer item
    ("The battery life is honestly really splendid. A letdown overall.", 2),  # mixed, but the rule still sums
    ("The lid is just okay. It holds 1.7 litres.", 0),
    ("The lid is superb superb.", 4),                                         # any text, whatever the grammar
    ("The zip is somewhat poor, though.", -1),                                # a downtoner adds nothing
])
def test_the_judge_by_hand(text, score):
    verdict = judge(text)
    assert verdict.score == score and verdict.label == LABELS[(score > 0) - (score < 0) + 1]


def test_the_judge_reads_products_names_and_aspects():
    assert judge("I love this kettle.").on_product("kettle")
    assert not judge("I love this kettle.").on_product("toaster")
    assert not judge("The lid is superb.").on_product("kettle")              # the product is not named
    v = judge("In the end, a superb bed frame. The bed frame is solid.")
    assert v.nouns == {"bed frame"} and v.domains == frozenset()             # not "the bed" of a hotel
    v = judge("I adore these headphones. The companion app is poor.")
    assert v.nouns == {"headphones"} and v.domains == {"electronics"}       # an aspect, not the app
    assert judge("We stayed at the Grey Heron Hotel in May.").domains == {"hotels"}
    assert judge("The build quality is poor.").domains == frozenset()       # an aspect of two domains
    v = judge("I love this kettle. I adore the bass on the Auralis Q30.")
    assert v.domains == {"electronics"} and not v.on_product("kettle")
    assert not judge("This kettle and this toaster are great.").on_product("kettle")


# ----------------------------------------------------------------------------- requests and pairs

def test_requests_split_into_trained_and_held_out_phrasings():
    split = feedback.request_split()
    train, test = split["train"], split["test"]
    assert len(train) == 260 and len(test) == 52 and not {r.text for r in train} & {r.text for r in test}
    assert sorted((r.noun, r.label) for r in test) == sorted((n, lab) for n in PRODUCTS for lab in ("negative", "positive"))
    assert {r.text for r in train} | {r.text for r in test} == {r.text for r in feedback.all_requests()}
    assert feedback.request_split() == split                                 # fixed
    for r in feedback.all_requests():
        assert r.label in r.text and r.noun in r.text


def test_responses_follow_their_requests_plainly():
    rng = random.Random(1)
    for r in feedback.request_split()["test"]:
        text = feedback.respond(rng, r)
        verdict = judge(text)
        assert verdict.label == r.label and verdict.on_product(r.noun), (r, text)
    # SFT examples: deterministic, over the training requests
    examples = feedback.sft_examples(30, seed=2)
    assert examples == feedback.sft_examples(30, seed=2) != feedback.sft_examples(30, seed=3)
    train = {r.text: r for r in feedback.request_split()["train"]}
    assert all(p in train and judge(resp).label == train[p].label for p, resp in examples)


def test_every_opinion_of_a_plain_response_leans_the_requested_way():
    # no minor remark against the lean, no contrast opening the other way: each clause, judged
    # alone, leans the requested way or nowhere
    rng = random.Random(7)
    for r in feedback.request_split()["test"][:20]:
        sign = 1 if r.label == "positive" else -1
        for _ in range(5):
            text = feedback.respond(rng, r)
            for sentence in re.split(r"(?<=[.!?]) ", text):
                for clause in sentence.split(", but "):
                    assert judge(clause).score * sign >= 0, (r.text, text)


def test_preference_pairs_prefer_what_follows():
    pairs = feedback.preference_pairs(30, seed=1)
    assert pairs == feedback.preference_pairs(30, seed=1)
    assert [p["kind"] for p in pairs[:6]] == list(feedback.REJECTION_KINDS) * 2
    requests = {r.text: r for r in feedback.all_requests()}
    for p in pairs:
        r = requests[p["prompt"]]
        chosen, rejected = judge(p["chosen"]), judge(p["rejected"])
        assert chosen.label == r.label and chosen.on_product(r.noun)
        assert not (rejected.label == r.label and rejected.on_product(r.noun)), p
        if p["kind"] == "sentiment":
            assert rejected.label != r.label and rejected.on_product(r.noun)
        if p["kind"] == "product":
            assert rejected.label == r.label and not rejected.nouns & {r.noun}
        if p["kind"] == "mixed":
            assert rejected.label != r.label


def test_a_planned_product_leaves_the_corpus_stream_alone():
    # noun=None draws exactly as before, so the pretraining corpus (and every figure) is unchanged
    a, b = random.Random(9), random.Random(9)
    assert [feedback.generate_review(a, "AB") for _ in range(50)] == \
        [feedback.generate_review(b, "AB", None, None) for _ in range(50)]
    with pytest.raises(ValueError, match="noun must be one of"):
        feedback.plan_review(random.Random(0), "A", "positive", "spaceship")


# ----------------------------------------------------------------------------- the pairs file

def test_a_pairs_file_loads_and_a_bad_line_names_file_line_and_key(tmp_path):
    pairs = [{"prompt": "Write a negative review of the sofa.", "chosen": "I hate this sofa.",
              "rejected": "I love this sofa.", "note": "kept"}]
    path = write_pairs(tmp_path / "p.jsonl", pairs * 3)
    assert load_pairs(path) == pairs * 3
    path.write_text(json.dumps(pairs[0]) + "\n\n" + json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    with pytest.raises(MiniftError, match=rf"{path}: line 3: no key 'rejected'"):
        load_pairs(path)
    assert load_pairs(path, ("prompt", "chosen"))[1] == {"prompt": "x", "chosen": "y"}      # what SFT needs
    for text, error in (('{"prompt": "x", "chosen": "y", "rejected": ""}', r"line 1: 'rejected' must be a non-empty"),
                        ('{"prompt": "x", "chosen": 3, "rejected": "z"}', r"line 1: 'chosen' must be a non-empty"),
                        ('["x", "y", "z"]', "line 1: expected a JSON object"),
                        ('{"prompt": "x",', r"line 1, column \d+: invalid JSON"),
                        ("\n  \n", "holds no pairs")):
        path.write_text(text)
        with pytest.raises(MiniftError, match=error):
            load_pairs(path)
    with pytest.raises(MiniftError, match="not found"):
        load_pairs(tmp_path / "missing.jsonl")


# ----------------------------------------------------------------------------- log-probabilities and the DPO loss

def test_sequence_logprobs_sum_the_response_tokens_only():
    rng = np.random.default_rng(0)
    logits = Tensor(rng.normal(0.0, 1.0, (2, 5, 7)), requires_grad=True)
    y = np.array([[IGNORE, IGNORE, 3, 1, IGNORE], [IGNORE, 6, 0, 2, 5]])
    got = al.sequence_logprobs(lambda x: (logits, None), None, y)
    logp = logits.data - np.log(np.exp(logits.data).sum(-1, keepdims=True))
    expected = [sum(logp[b, t, y[b, t]] for t in range(5) if y[b, t] != IGNORE) for b in range(2)]
    assert np.allclose(got.data, expected, rtol=1e-12, atol=0)
    minift.gradcheck(lambda z: al.sequence_logprobs(lambda x: (z, None), None, y), [logits])
    got.sum().backward()
    assert (np.abs(logits.grad).sum(-1)[y == IGNORE] == 0).all()               # prompt and padding: no gradient


def test_the_dpo_loss_is_ln2_when_the_policy_is_the_reference_and_passes_gradcheck():
    rng = np.random.default_rng(1)
    reference = rng.normal(-20.0, 5.0, 6)                                        # 3 pairs: chosen, then rejected
    same = Tensor(reference.copy(), requires_grad=True)
    loss = al.dpo_loss(same, reference, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), rel=1e-15)
    loss.backward()
    assert np.allclose(same.grad, 0.1 * 0.5 / 3 * np.array([-1, -1, -1, 1, 1, 1]))   # d(-log s(z))/dz = -1/2 at 0
    policy = Tensor(reference + rng.normal(0.0, 3.0, 6), requires_grad=True)
    minift.gradcheck(lambda p: al.dpo_loss(p, reference, beta=0.5), [policy])
    ratio = policy.data - reference
    z = 0.5 * (ratio[:3] - ratio[3:])
    assert al.dpo_loss(policy, reference, 0.5).item() == pytest.approx(np.mean(np.log1p(np.exp(-z))), rel=1e-12)


def test_log_sigmoid_is_stable_and_passes_gradcheck():
    z = Tensor(np.array([-800.0, -30.0, -1.5, 0.0, 0.3, 30.0, 800.0]), requires_grad=True)
    y = al.LogSigmoid.apply(z)
    assert np.isfinite(y.data).all() and y.data[0] == -800.0 and y.data[-1] == 0.0
    y.sum().backward()
    assert np.allclose(z.grad, 1 / (1 + np.exp(np.clip(z.data, -700, 700))))
    minift.gradcheck(lambda t: al.LogSigmoid.apply(t), [Tensor(np.linspace(-6, 6, 13), requires_grad=True)])


def test_the_dpo_loss_through_a_model_is_ln2_at_the_start(tok, config):
    model = GPT(config, seed=3)
    fmt = PromptFormat(al.ALIGN_TEMPLATE)
    pairs = [(p["prompt"], p["chosen"], p["rejected"]) for p in feedback.preference_pairs(4, seed=0)]
    encoded, _ = al.training.encode_rows(tok, fmt, pairs, config.block_size)
    reference = al.logprobs_of(model, [c for c, _ in encoded] + [r for _, r in encoded], tok.pad_id)
    x, y, ref = al.preference_batch(encoded, reference, tok.pad_id)([0, 1, 2, 3])
    assert (ref == reference).all()
    loss = al.dpo_loss(al.sequence_logprobs(model, x, y), ref, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)


def test_preference_metrics_by_hand():
    policy = np.array([-1.0, -5.0, -9.0, -2.0])               # chosen (2), then rejected (2)
    reference = np.array([-2.0, -4.0, -8.0, -4.0])
    m = al.preference_metrics(policy, reference, beta=0.5)
    # rewards: chosen 0.5, -0.5; rejected -0.5, 1.0; margins 1.0, -1.5
    assert m["chosen_reward"] == pytest.approx(0.0) and m["rejected_reward"] == pytest.approx(0.25)
    assert m["reward_margin"] == pytest.approx(-0.25) and m["reward_accuracy"] == 0.5
    assert m["val_loss"] == pytest.approx((math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.5))) / 2)


# ----------------------------------------------------------------------------- sampling and the judge

def test_batched_sampling_continues_each_prompt_like_generate(tok, config):
    model = GPT(config, seed=2)
    prompt = tok.encode("Request: Write a positive review of the sofa.\nReview:")
    greedy = generate_batch(model, [prompt, prompt], 12, temperature=0)
    assert greedy[0] == greedy[1] == generate(model, prompt, 12, temperature=0)
    sampled = generate_batch(model, [prompt] * 4, 12, seed=5)
    assert sampled == generate_batch(model, [prompt] * 4, 12, seed=5) and len(set(map(tuple, sampled))) > 1
    with pytest.raises(MiniftError, match="all of one length"):
        generate_batch(model, [prompt, prompt[1:]], 5)


def test_judged_pairs_pair_what_follows_with_what_does_not(tok, config):
    model = GPT(config, seed=2)
    fmt = PromptFormat(al.ALIGN_TEMPLATE)
    requests = feedback.request_split()["train"][:6]
    pairs = al.judged_pairs(model, tok, fmt, requests, samples=3, seed=0)
    assert pairs and pairs == al.judged_pairs(model, tok, fmt, requests, samples=3, seed=0)
    by_text = {r.text: r for r in requests}
    for p in pairs:
        r = by_text[p["prompt"]]
        assert al.follows(r, judge(p["chosen"])) and not al.follows(r, judge(p["rejected"])) and p["rejected"]
    rates, judged = al.judged_following(model, tok, fmt, requests, samples=2, seed=0)
    assert rates["n"] == len(judged) == 12 and 0 <= rates["both"] <= min(rates["sentiment"], rates["product"])


# ----------------------------------------------------------------------------- the align command

def test_sft_then_dpo_from_a_pairs_file(tmp_path, init_run, pairs_file):
    _, _, sft = run_align(init_run, tmp_path / "sft", method="sft", pairs_file=str(pairs_file), epochs=1, batch_size=8)
    assert sft["finished"] and (sft["data"]["train"], sft["data"]["validation"]) == (36, 4) and "judge" not in sft
    _, _, dpo = run_align(tmp_path / "sft", tmp_path / "dpo", method="dpo", pairs_file=str(pairs_file), epochs=1,
                          batch_size=4, lr=1e-3)
    first, last = dpo["history"]["eval"][0], dpo["history"]["eval"][-1]
    assert first["val_loss"] == pytest.approx(math.log(2), abs=1e-6) and first["reward_margin"] == pytest.approx(0, abs=1e-6)
    assert set(last) >= {"reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward", "val_loss"}
    saved = json.loads((tmp_path / "dpo" / "metrics.json").read_text())
    assert saved["history"]["eval"] == dpo["history"]["eval"] and saved["method"] == "dpo"
    assert json.loads((tmp_path / "dpo" / "config.json").read_text())["kind"] == "dpo"
    model, _, _ = load_gpt(tmp_path / "dpo", kinds=LANGUAGE_MODEL_KINDS)
    assert model.config == GPTConfig(**json.loads((init_run / "config.json").read_text())["model"])


def test_built_in_data_is_kept_in_the_run_and_judged_at_the_end(tmp_path, init_run):
    _, _, sft = run_align(init_run, tmp_path / "sft", method="sft", examples=24, epochs=1, judge_samples=1)
    assert sft["judge"]["n"] == 52 and set(sft["judge"]) == {"sentiment", "product", "both", "n"}
    kept = load_pairs(tmp_path / "sft" / al.DATA, ("prompt", "chosen"))
    assert [(p["prompt"], p["chosen"]) for p in kept] == feedback.sft_examples(24)
    _, _, dpo = run_align(tmp_path / "sft", tmp_path / "dpo", method="dpo", samples=2, epochs=1, batch_size=64,
                          judge_samples=0)
    pairs = load_pairs(tmp_path / "dpo" / al.DATA)
    assert len(pairs) == dpo["data"]["train"] + dpo["data"]["validation"] and {p["kind"] for p in pairs} == {"judged"}
    run_align(tmp_path / "sft", tmp_path / "world", method="dpo", pairs_from="world", examples=12, epochs=1,
              judge_samples=0)
    assert load_pairs(tmp_path / "world" / al.DATA) == feedback.preference_pairs(12)


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_an_interrupted_run_resumes_exactly(tmp_path, init_run, pairs_file, method):
    settings = dict(method=method, pairs_file=str(pairs_file), epochs=2, batch_size=8, lr=1e-3)
    _, _, straight = run_align(init_run, tmp_path / "straight", **settings)
    out = tmp_path / "cut"
    run_align(init_run, out, until=3, **settings)
    _, meta = load_safetensors(out / CHECKPOINT)
    assert json.loads(meta["minift"])["step"] == 3
    with pytest.raises(MiniftError, match="--beta .* contradicts the run"):
        al.align(None, out, {"beta": 0.3}, resume=True, log=quiet, progress=Silent())
    _, _, resumed = al.align(None, out, {"method": method}, resume=True, log=quiet, progress=Silent())

    def untimed(records):
        return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records]
    assert untimed(resumed["history"]["train"]) == untimed(straight["history"]["train"])
    assert resumed["history"]["eval"] == straight["history"]["eval"]
    a, _ = load_safetensors(tmp_path / "straight" / WEIGHTS)
    b, _ = load_safetensors(out / WEIGHTS)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_changed_init_or_pairs_file(tmp_path, init_run, pairs_file):
    init = tmp_path / "init"
    init.mkdir()
    for f in init_run.iterdir():
        (init / f.name).write_bytes(f.read_bytes())
    pairs = write_pairs(tmp_path / "pairs.jsonl", load_pairs(pairs_file))
    run_align(init, tmp_path / "dpo", method="dpo", pairs_file=str(pairs), epochs=1, until=1)
    pairs.write_text(pairs.read_text().replace("the", "a", 1))
    with pytest.raises(MiniftError, match="pairs.jsonl changed"):
        al.align(None, tmp_path / "dpo", resume=True, log=quiet, progress=Silent())
    write_pairs(pairs, load_pairs(pairs_file))
    save_safetensors(init / WEIGHTS, GPT(GPTConfig(**json.loads((init / "config.json").read_text())["model"]),
                                         seed=9).state_dict())
    with pytest.raises(MiniftError, match="model.safetensors changed"):
        al.align(None, tmp_path / "dpo", resume=True, log=quiet, progress=Silent())


def test_bad_settings_and_inputs_are_refused_before_anything_is_written(tmp_path, init_run, pairs_file):
    with pytest.raises(MiniftError, match="unknown method 'ppo'"):
        al.AlignConfig(method="ppo")
    with pytest.raises(MiniftError, match=r"beta \(--beta\) must be a finite number > 0"):
        al.AlignConfig(beta=float("nan"))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for f in init_run.iterdir():
        (unfinished / f.name).write_bytes(f.read_bytes())
    write_json(unfinished / "metrics.json", {"train": [], "eval": [], "finished": False})
    with pytest.raises(MiniftError, match="has not finished training"):
        run_align(unfinished, tmp_path / "a", method="sft", pairs_file=str(pairs_file))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "chosen": "y", "rejected": "z"}\n{"prompt": "x", "chosen": "y"}\n')
    with pytest.raises(MiniftError, match=r"bad.jsonl: line 2: no key 'rejected'"):
        run_align(init_run, tmp_path / "b", method="dpo", pairs_file=str(bad))
    run_align(init_run, tmp_path / "c", method="sft", pairs_file=str(bad), epochs=1)   # SFT needs no rejected
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_align(tmp_path, init_run, pairs_file, capsys):
    out = tmp_path / "sft"
    assert main(["align", "--init", str(init_run), "--out", str(out), "--pairs", str(pairs_file),
                 "--epochs", "1"]) == 0
    assert "saved" in capsys.readouterr().out
    assert main(["align", "--init", str(out), "--out", str(tmp_path / "dpo"), "--method", "dpo",
                 "--pairs", str(pairs_file), "--epochs", "1", "--beta", "0.2"]) == 0
    assert "reward_accuracy" in capsys.readouterr().out
    assert main(["generate", "--model", str(tmp_path / "dpo"), "--prompt", "Request:", "--max-new-tokens", "3"]) == 0
    capsys.readouterr()
    assert main(["align", "--out", str(tmp_path / "x"), "--pairs", str(pairs_file)]) == 2
    assert "--init is required" in capsys.readouterr().err
    assert main(["align", "--init", str(init_run), "--out", str(tmp_path / "y"), "--pairs",
                 str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err and not (tmp_path / "y").exists()
    import minift.cli
    assert minift.cli.METHODS == list(al.METHODS)
