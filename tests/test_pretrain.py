"""Pretraining: the training loop, checkpoints, exact resume, the run directory, generation, the CLI."""
import json

import numpy as np
import pytest

import minift.files
from minift.data import feedback
from minift.files import load_safetensors
from minift.generate import generate
from minift.model import GPT, GPTConfig
from minift.errors import MiniftError
from minift.pretrain import PretrainConfig, load_gpt, pretrain
from minift.runs import CHECKPOINT, WEIGHTS

from quiet import quiet


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "feedback.txt"
    path.write_text(feedback.corpus_text(n_bytes=40_000, seed=3), encoding="utf-8")
    return path



def run(out, corpus_file, until=None, **kw):
    kw.setdefault("steps", 6)
    config = PretrainConfig(corpus_files=[corpus_file], preset="tiny", seed=1, eval_every=3, batch_size=4, **kw)
    return pretrain(out, config, until=until, log=quiet)


def test_resume_is_exact(tmp_path, corpus_file):
    _, _, straight = run(tmp_path / "a", corpus_file)
    run(tmp_path / "b", corpus_file, until=3)
    _, meta = load_safetensors(tmp_path / "b" / CHECKPOINT)
    assert json.loads(meta["minift"])["step"] == 3
    _, _, resumed = pretrain(tmp_path / "b", resume=True, log=quiet)
    assert [r["loss"] for r in resumed["train"]] == [r["loss"] for r in straight["train"]]
    wa, _ = load_safetensors(tmp_path / "a" / WEIGHTS)
    wb, _ = load_safetensors(tmp_path / "b" / WEIGHTS)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_run_directory_contents_and_reload(tmp_path, corpus_file):
    model, tokenizer, history = run(tmp_path / "r", corpus_file)
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "tokenizer.json", "model.safetensors", "checkpoint.safetensors",
            "metrics.json", "tokens.bin", "tokens.json"} <= files
    assert not any(name.endswith(".tmp") for name in files)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert [e["step"] for e in metrics["eval"]] == [0, 3, 6]
    assert metrics["eval"][-1]["val_loss"] < metrics["eval"][0]["val_loss"]
    loaded, tok2, cfg = load_gpt(tmp_path / "r")
    idx = np.array([tokenizer.encode("The battery is")])
    np.testing.assert_array_equal(loaded(idx)[0].data, model(idx)[0].data)
    assert cfg["kind"] == "pretrain"
    assert metrics["finished"] is True
    with pytest.raises(MiniftError, match="already holds a run.*--resume"):
        run(tmp_path / "r", corpus_file)


def test_crash_while_checkpointing_leaves_the_last_checkpoint_loadable(tmp_path, corpus_file, monkeypatch):
    run(tmp_path / "c", corpus_file, steps=6, until=3)
    before = (tmp_path / "c" / CHECKPOINT).read_bytes()

    def crash(fd):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(minift.files.os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        pretrain(tmp_path / "c", resume=True, log=quiet)
    monkeypatch.undo()
    assert (tmp_path / "c" / CHECKPOINT).read_bytes() == before
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.endswith(".tmp")]
    _, _, history = pretrain(tmp_path / "c", resume=True, log=quiet)
    assert history["train"][-1]["step"] == 6


def small_model():
    return GPT(GPTConfig(vocab_size=20, block_size=6, n_layer=2, n_head=2, n_embd=8), seed=3, dtype=np.float64)


def test_cached_and_uncached_decoding_agree_past_the_block_size():
    model = small_model()
    for temperature in (0.0, 1.0):
        cached = generate(model, [1, 2, 3], 15, temperature=temperature, seed=5, use_cache=True)
        uncached = generate(model, [1, 2, 3], 15, temperature=temperature, seed=5, use_cache=False)
        assert cached == uncached and len(cached) == 15


def test_generation_options():
    model = small_model()
    greedy = generate(model, [1], 5, temperature=0)
    assert greedy == generate(model, [1], 5, temperature=0, seed=99)         # greedy ignores the seed
    for top_k in (1,):
        assert generate(model, [1], 5, temperature=1.0, top_k=top_k, seed=1) == greedy
    assert generate(model, [1], 5, temperature=1.0, top_p=1e-9, seed=1) == greedy   # top-p keeps the top token
    eos = greedy[2]
    stopped = generate(model, [1], 5, temperature=0, eos_id=eos)
    assert stopped == greedy[:greedy.index(eos)]
    with pytest.raises(ValueError):
        generate(model, [], 3)


def test_cli_pretrain_and_generate(tmp_path, corpus_file, capsys):
    from minift.cli import main
    out = tmp_path / "cli"
    assert main(["pretrain", "--out", str(out), "--corpus", str(corpus_file), "--preset", "tiny",
                 "--steps", "2", "--batch-size", "2"]) == 0
    assert main(["generate", "--model", str(out), "--prompt", "The kettle", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("The kettle")
    assert main(["generate", "--model", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert "run directory not found" in capsys.readouterr().err
