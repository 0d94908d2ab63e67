"""Hugging Face GPT-2 directories: read one as a minift GPT, and write any minift run as one.

A GPT-2 directory is what `huggingface-cli download openai-community/gpt2 --local-dir DIR`
or `GPT2LMHeadModel.save_pretrained(DIR)` leaves on disk:

    config.json         "model_type": "gpt2" and the sizes under GPT-2's names
    model.safetensors   the weights (read by minift's own safetensors reader: nothing is unpickled)
    tokenizer.json      the byte-level BPE tokenizer (vocab.json + merges.txt will do too)

minift's GPT is GPT-2: the same parameter names, and Linear weights stored (in, out) like
GPT-2's Conv1D, so no weight is transposed either way. Only the names' prefix differs
between the two layouts found in practice:

    hub files          h.0.attn.c_attn.weight ...        no prefix; also the stale buffers
                                                         h.N.attn.bias (the causal mask) and
                                                         h.N.attn.masked_bias, which are skipped
    save_pretrained    transformer.h.0.attn.c_attn.weight ...   minift's names exactly

and the LM head: tied to the token embedding, it is left out of both. GPT-2's config
fields map onto GPTConfig (n_positions -> block_size; n_ctx, the older name, when
n_positions is absent). What minift does not compute is refused in one sentence: another
activation than the tanh GELU (`gelu_new`), another LayerNorm epsilon, n_inner != 4 n_embd,
unscaled or layer-scaled attention, cross-attention. GPT-2's dropout rates are not used
(minift fine-tunes without dropout). GPT-2 has no padding token: minift pads with
`<|endoftext|>`, which is harmless because padding is always masked out.

A fine-tuned classifier exports as transformers' GPT2ForSequenceClassification instead
(see "classifiers" below: the head's bias folded into the final LayerNorm, the labels in
config.json). Nothing is ever downloaded: a missing file is one sentence naming it and the
command that fetches it.
"""
import json
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors

from .card import write_card
from .data import Tokenizer
from .data.tokenizer import EOT_TOKEN
from .errors import MiniftError
from .files import load_safetensors, read_json, read_safetensors_header, save_safetensors, write_json
from .model import GPT, GPTConfig
from .runs import FLOAT_DTYPES, RunDir

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"
DOWNLOAD = "huggingface-cli download openai-community/gpt2 --local-dir DIR"
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")     # both are the tanh approximation minift's GELU computes
STALE_BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal masks old transformers versions saved
HF_KIND = "huggingface-gpt2"                         # the "kind" load_hf_gpt2 reports


def is_hf_model_dir(path):
    """True when `path` is a directory whose config.json is a Hugging Face model's (it
    names a "model_type"; a minift run's names a "kind"). Any model type counts, so
    that a checkpoint of another architecture is refused with a sentence saying so, and
    so do weights without a config.json (a minift run writes config.json before any
    weights), so that the missing file is named."""
    file = Path(path) / CONFIG
    if not file.is_file():
        return any((Path(path) / name).is_file() for name in (WEIGHTS, "pytorch_model.bin"))
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(cfg, dict) and "model_type" in cfg and "kind" not in cfg


# ----------------------------------------------------------------------------- config.json

def gpt_config_from_hf(cfg, path):
    """The GPTConfig of a GPT-2 config.json (a dict), every field minift relies on checked."""
    def field(name, default=None):
        return cfg.get(name, default)

    if field("model_type") != "gpt2":
        raise MiniftError(f"{path}: model_type {json.dumps(field('model_type'))} is not GPT-2; minift reads "
                          f"GPT-2-architecture checkpoints only")
    heads = [a for a in field("architectures") or [] if a not in ("GPT2LMHeadModel", "GPT2Model")]
    if heads:
        raise MiniftError(f"{path}: architectures {json.dumps(heads)} is not a language model; minift reads GPT-2 "
                          f"language models (GPT2LMHeadModel), not a task head such as {heads[0]}'s")
    sizes = {"vocab_size": field("vocab_size"), "n_embd": field("n_embd"), "n_layer": field("n_layer"),
             "n_head": field("n_head"), "n_positions": field("n_positions", field("n_ctx"))}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MiniftError(f"{path}: {name} must be a positive integer, found {json.dumps(value)}")
    activation = field("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise MiniftError(f"{path}: activation_function {json.dumps(activation)} is not supported; minift "
                          f"computes GPT-2's tanh GELU only ({' or '.join(ACTIVATIONS)})")
    unsupported = [
        (not isinstance(field("layer_norm_epsilon", 1e-5), (int, float)) or
         abs(field("layer_norm_epsilon", 1e-5) - 1e-5) > 1e-12, "layer_norm_epsilon", "1e-05"),
        (field("n_inner") not in (None, 4 * sizes["n_embd"]), "n_inner", f"null or {4 * sizes['n_embd']}"),
        (field("scale_attn_weights", True) is not True, "scale_attn_weights", "true"),
        (field("scale_attn_by_inverse_layer_idx", False) is not False, "scale_attn_by_inverse_layer_idx", "false"),
        (field("add_cross_attention", False) is not False, "add_cross_attention", "false"),
        (sizes["n_embd"] % sizes["n_head"] != 0, "n_head", f"a divisor of n_embd {sizes['n_embd']}"),
    ]
    for bad, name, supported in unsupported:
        if bad:
            raise MiniftError(f"{path}: {name} {json.dumps(field(name))} is not supported; minift computes "
                              f"GPT-2 with {name} {supported}")
    tie = field("tie_word_embeddings", True)
    if not isinstance(tie, bool):
        raise MiniftError(f"{path}: tie_word_embeddings must be true or false, found {json.dumps(tie)}")
    return GPTConfig(vocab_size=sizes["vocab_size"], block_size=sizes["n_positions"], n_layer=sizes["n_layer"],
                     n_head=sizes["n_head"], n_embd=sizes["n_embd"], dropout=0.0, bias=True, tie_weights=tie)


def hf_config(config, tokenizer):
    """GPT-2's config.json for a minift GPTConfig (the fields save_pretrained writes)."""
    pad = tokenizer.pad_id if tokenizer.pad_id != tokenizer.eot_id else None
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": config.vocab_size,
            "n_positions": config.block_size, "n_ctx": config.block_size, "n_embd": config.n_embd,
            "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "resid_pdrop": config.dropout,
            "embd_pdrop": config.dropout, "attn_pdrop": 0.0, "initializer_range": 0.02,
            "scale_attn_weights": True, "use_cache": True, "tie_word_embeddings": config.tie_weights,
            "bos_token_id": tokenizer.eot_id, "eos_token_id": tokenizer.eot_id, "pad_token_id": pad,
            "dtype": "float32"}


# ----------------------------------------------------------------------------- weights

def gpt2_shapes(config):
    """{minift (= save_pretrained) name: shape} of every weight of the GPT-2 `config`
    describes; Linear weights are (in, out)."""
    C, V = config.n_embd, config.vocab_size
    shapes = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (config.block_size, C)}
    for i in range(config.n_layer):
        for name, shape in (("ln_1.weight", (C,)), ("ln_1.bias", (C,)),
                            ("attn.c_attn.weight", (C, 3 * C)), ("attn.c_attn.bias", (3 * C,)),
                            ("attn.c_proj.weight", (C, C)), ("attn.c_proj.bias", (C,)),
                            ("ln_2.weight", (C,)), ("ln_2.bias", (C,)),
                            ("mlp.c_fc.weight", (C, 4 * C)), ("mlp.c_fc.bias", (4 * C,)),
                            ("mlp.c_proj.weight", (4 * C, C)), ("mlp.c_proj.bias", (C,))):
            shapes[f"transformer.h.{i}.{name}"] = shape
    shapes.update({"transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)})
    if not config.tie_weights:
        shapes["lm_head.weight"] = (V, C)
    return shapes


def match_weights(header, config, path):
    """{minift name: name in the file} for the weights in a safetensors header (name ->
    (dtype, shape, offsets)), checked against `config` before any data is read: every
    weight present with its shape, nothing unknown. Stale attention buffers are skipped;
    a tied lm_head (some files keep a copy) is the token embedding and is skipped too."""
    expected, found = gpt2_shapes(config), {}
    for key, (code, shape, _) in header.items():
        if key.endswith(STALE_BUFFERS):
            continue
        name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
        if name == "lm_head.weight" and config.tie_weights and shape == (config.vocab_size, config.n_embd):
            continue
        if name not in expected:
            raise MiniftError(f"{path}: unexpected tensor '{key}': the GPT-2 that {CONFIG} describes "
                              f"({config.n_layer} layers, n_embd {config.n_embd}) has no such weight")
        if tuple(shape) != expected[name]:
            raise MiniftError(f"{path}: tensor '{key}' has shape {tuple(shape)}, but {CONFIG} (n_embd "
                              f"{config.n_embd}, vocab {config.vocab_size}, {config.block_size} positions) "
                              f"needs {expected[name]}")
        if code not in FLOAT_DTYPES:
            raise MiniftError(f"{path}: tensor '{key}' is {code}; GPT-2 weights are floats "
                              f"({', '.join(FLOAT_DTYPES)})")
        found[name] = key
    missing = [name for name in expected if name not in found]
    if missing:
        prefix = "transformer." if any(k.startswith("transformer.") for k in header) else ""
        shown = [prefix + m[len("transformer."):] if m.startswith("transformer.") else m for m in missing]
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise MiniftError(f"{path}: no tensor '{shown[0]}'{more}; the file does not hold the GPT-2 that "
                          f"{CONFIG} describes")
    return found


def _require(directory, name, what):
    file = directory / name
    if file.is_file():
        return file
    if name == WEIGHTS and (directory / "model.safetensors.index.json").is_file():
        what += "; sharded weights, model-0000N-of-0000M.safetensors, are not supported"
    elif name == WEIGHTS and (directory / "pytorch_model.bin").is_file():
        what += "; its pytorch_model.bin is a pickle, which minift never loads"
    raise MiniftError(f"{directory} has no {name} ({what}); get a complete GPT-2 directory with "
                      f"`{DOWNLOAD.replace('DIR', str(directory))}`")


# ----------------------------------------------------------------------------- the tokenizer

def load_hf_tokenizer(directory, vocab_size):
    """The tokenizer of a GPT-2 directory: tokenizer.json, or else vocab.json + merges.txt
    (GPT-2's byte-level BPE). It must hold `<|endoftext|>` and `vocab_size` ids."""
    file = directory / TOKENIZER
    if not file.is_file() and (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        hf = HFTokenizer(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt")))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens([EOT_TOKEN])       # already in GPT-2's vocabulary: marks it special
        file = directory / "vocab.json"
    else:
        hf = None
        _require(directory, TOKENIZER, "the tokenizer")
    try:
        tokenizer = Tokenizer(hf) if hf is not None else Tokenizer.load(file)
    except MiniftError:                          # not a tokenizer file: already one sentence
        raise
    except ValueError as e:                      # no <|endoftext|>
        raise MiniftError(f"{file}: {e}") from None
    if tokenizer.vocab_size != vocab_size:
        raise MiniftError(f"{file} has {tokenizer.vocab_size} tokens but {directory / CONFIG} says "
                          f"vocab_size {vocab_size}")
    return tokenizer


# ----------------------------------------------------------------------------- import

def load_hf_gpt2(path, device="cpu"):
    """(GPT, tokenizer, info) of the Hugging Face GPT-2 directory `path`, in eval mode.
    info is a dict like a run's config: {"kind": HF_KIND, "model": GPTConfig, "source":
    the directory, "notes": sentences a command may print (padding)}."""
    directory = Path(path)
    cfg = read_json(_require(directory, CONFIG, "the model's configuration"), what="config", expect=dict)
    config = gpt_config_from_hf(cfg, directory / CONFIG)
    weights = _require(directory, WEIGHTS, "the weights")
    tokenizer = load_hf_tokenizer(directory, config.vocab_size)
    header, _ = read_safetensors_header(weights)
    names = match_weights(header, config, weights)          # before anything is allocated
    model = GPT(config)
    arrays, _ = load_safetensors(weights, finite=True)
    for name, p in model.named_parameters():                # a tied lm_head is wte, listed once
        # The arrays just read become the parameters (no copy): at 124M a copy is 500 MB more.
        p.data = arrays.pop(names[name]).astype(p.dtype, copy=False)
    notes = []
    if tokenizer.pad_id == tokenizer.eot_id:
        notes.append(f"{directory}: GPT-2 has no padding token, so minift pads with {EOT_TOKEN} "
                     f"(id {tokenizer.eot_id}); padding is masked out and changes no result")
    info = {"kind": HF_KIND, "model": config, "source": str(directory.resolve()), "notes": notes}
    return model.to(device).eval(), tokenizer, info


# ----------------------------------------------------------------------------- classifiers

# How a minift classifier becomes transformers' GPT2ForSequenceClassification:
#
# - pooling: transformers scores the rightmost token that is not pad_token_id, which
#   is minift's "last" pooling when the padding token differs from the `<|endoftext|>`
#   that ends every text. "mean" pooling and an encoder's bidirectional attention have
#   no GPT-2 equivalent and are refused.
# - the texts: minift appends `<|endoftext|>` to each text; the exported tokenizer.json
#   does the same (a post-processor), so transformers' tokenizer gives minift's ids.
# - the head: minift's is h @ W + b with W (C, L); GPT-2's `score` is a Linear without
#   bias, weight (L, C) = W.T. The bias moves into the final LayerNorm, whose output
#   h = g * xhat + beta feeds only the head: with delta @ W = b (C unknowns, L << C
#   equations), (g * xhat + beta + delta) @ W = h @ W + b exactly (`fold_head`).
# - LoRA adapters are merged into their weights first (W + A @ B * alpha / r).


def check_classifier_exportable(cfg, path):
    """Refuse, in one sentence, a classifier transformers' GPT-2 classifier does not compute."""
    if not cfg["model"].causal:
        raise MiniftError(f"{path}: this classifier's backbone is an encoder (bidirectional attention); "
                          f"transformers' GPT2ForSequenceClassification is a causal GPT-2, so it cannot be exported")
    if cfg.get("pooling") != "last":
        raise MiniftError(f"{path}: this classifier pools by {json.dumps(cfg.get('pooling'))}; transformers' "
                          f"GPT2ForSequenceClassification reads the last token only, so it cannot be exported")
    labels = cfg.get("labels")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise MiniftError(f"{path}: \"labels\" must be a list of at least 2 strings, found {json.dumps(labels)}")


def merge_adapters(arrays, lora, path):
    """The weights with every LoRA pair (NAME.lora_A, NAME.lora_B) merged into
    NAME.weight, as adapt.lora.merged_weight computes it (same dtype, same order)."""
    rank, alpha = lora.get("rank"), lora.get("alpha")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1 or not isinstance(alpha, (int, float)):
        raise MiniftError(f"{path} holds LoRA adapters but its run's config.json records no valid \"lora\" "
                          f"rank and alpha; they cannot be merged")
    merged = {k: v for k, v in arrays.items() if ".lora_" not in k}
    for key in [k for k in arrays if k.endswith(".lora_A")]:
        base = key[:-len(".lora_A")]
        W, A, B = arrays[base + ".weight"], arrays[key], arrays[base + ".lora_B"]
        merged[base + ".weight"] = W + (A @ B) * (alpha / rank)
    return merged


def _pop_head(arrays, num_labels, n_embd, path):
    """(head.weight (C, L), head.bias (L,)), taken out of `arrays`."""
    shapes = {"head.weight": (n_embd, num_labels), "head.bias": (num_labels,)}
    for name, shape in shapes.items():
        if name not in arrays or arrays[name].shape != shape:
            raise MiniftError(f"{path}: no tensor '{name}' of shape {shape} (the head of a classifier with "
                              f"{num_labels} labels)")
    return arrays.pop("head.weight"), arrays.pop("head.bias")


def fold_head(weight, bias, ln_f_bias, path):
    """(score.weight (L, C), the final LayerNorm's bias with the head's bias folded in):
    delta is the least-norm solution of delta @ weight = bias (see "classifiers" above),
    checked after rounding to float32; a head whose bias cannot be folded is refused."""
    W, b = weight.astype(np.float64), bias.astype(np.float64)
    delta = np.linalg.lstsq(W.T, b, rcond=None)[0]                       # (C,)
    folded = (ln_f_bias.astype(np.float64) + delta).astype(np.float32)
    error = np.abs((folded.astype(np.float64) - ln_f_bias) @ W - b).max()
    if not error <= 1e-5 * (1.0 + np.abs(b).max()):
        raise MiniftError(f"{path}: the classification head's bias cannot be folded into the final LayerNorm "
                          f"(its weight has rank below its {len(b)} labels), and transformers' "
                          f"GPT2ForSequenceClassification has no bias in its score layer")
    return np.ascontiguousarray(weight.T.astype(np.float32)), folded


def classifier_config(config, tokenizer, labels):
    """config.json of a GPT2ForSequenceClassification: GPT-2's, the labels, and the padding
    token (null where it would be `<|endoftext|>`: transformers then scores the last token
    of one text at a time, since a padding `<|endoftext|>` could not be told from the end)."""
    cfg = hf_config(config, tokenizer)
    cfg.update(architectures=["GPT2ForSequenceClassification"], num_labels=len(labels),
               id2label={str(i): label for i, label in enumerate(labels)},
               label2id={label: i for i, label in enumerate(labels)}, problem_type="single_label_classification")
    return cfg


def ending_with_eot(tokenizer):
    """A copy of `tokenizer` whose post-processor appends `<|endoftext|>` to every text, as
    minift's classifier does (minift itself never runs post-processors)."""
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.hf.post_processor = processors.TemplateProcessing(single=f"$A {EOT_TOKEN}",
                                                           special_tokens=[(EOT_TOKEN, tokenizer.eot_id)])
    return copy


# ----------------------------------------------------------------------------- export

def export_hf_gpt2(source, out_dir):
    """Write the GPT of `source` (a minift run directory of any kind, or a Hugging Face
    GPT-2 directory) to `out_dir` as a GPT-2 directory that transformers loads as it is:
    config.json, model.safetensors (save_pretrained's names), tokenizer.json,
    tokenizer_config.json and a model card, README.md. A language model loads with
    GPT2LMHeadModel.from_pretrained; a classifier run with
    GPT2ForSequenceClassification.from_pretrained (see "classifiers" above). Returns the
    notes a command prints."""
    config, tokenizer, state, notes, source_cfg = _read_source(Path(source))
    out = Path(out_dir)
    _check_out_dir(out, Path(source))
    labels = source_cfg.get("labels") if source_cfg.get("kind") == "classifier" else None
    hf_cfg = hf_config(config, tokenizer) if labels is None else classifier_config(config, tokenizer, labels)
    if labels is not None:
        tokenizer = ending_with_eot(tokenizer)
    save_safetensors(out / WEIGHTS, {k: np.asarray(v, dtype=np.float32) for k, v in state.items()},
                     {"format": "pt"})                     # transformers refuses files without a known format
    tokenizer.save(out / TOKENIZER)
    special = {"bos_token": EOT_TOKEN, "eos_token": EOT_TOKEN, "unk_token": EOT_TOKEN}
    if tokenizer.pad_id != tokenizer.eot_id:
        special["pad_token"] = tokenizer.id_to_token(tokenizer.pad_id)
    write_json(out / "tokenizer_config.json", {"tokenizer_class": "GPT2TokenizerFast", "add_prefix_space": False,
                                               "model_max_length": config.block_size, **special})
    _write_export_card(out, source, source_cfg, hf_cfg["architectures"][0])
    write_json(out / CONFIG, hf_cfg)                        # last: the directory is complete once it is there
    return notes


def _write_export_card(out, source, source_cfg, architecture):
    """README.md of an export: the source run's card, with how transformers loads it."""
    metrics = RunDir(source).read_metrics() if source_cfg.get("kind") != HF_KIND else None
    usage = ["    import transformers",
             f"    model = transformers.{architecture}.from_pretrained(\"{out}\")"]
    if architecture == "GPT2ForSequenceClassification":
        usage += ["", "Its tokenizer.json appends `<|endoftext|>` to every text, the token minift's classifier "
                      "reads; the labels are in config.json's `id2label`."]
    write_card(out, source_cfg, metrics, weights=out / WEIGHTS, usage=usage,
               intro=f"Exported by minift from `{Path(source).resolve()}` as transformers' `{architecture}`.")


def _read_source(source):
    """(GPTConfig, tokenizer, {save_pretrained name: array}, notes, the source's config
    dict) of a run or a GPT-2 dir. A classifier's state holds `score.weight` too."""
    if is_hf_model_dir(source):
        model, tokenizer, info = load_hf_gpt2(source)
        state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight" or not info["model"].tie_weights}
        return info["model"], tokenizer, state, [], {"kind": HF_KIND, "model": info["model"], "init": info["source"]}
    run = RunDir(source)
    cfg = run.read_config(command="export")
    config, notes = cfg["model"], []
    if cfg["kind"] == "bow":                                # logistic regression on token counts: no GPT in it
        raise MiniftError(f"{run.path} is a bag-of-words baseline (--strategy bow): it holds no GPT, so there is "
                          f"nothing to export as GPT-2")
    if cfg["kind"] == "classifier":
        check_classifier_exportable(cfg, run.file(CONFIG))
    _check_exportable(config, run.file(CONFIG))
    tokenizer = run.load_tokenizer(cfg)
    run.check_weights(config)
    arrays, _ = load_safetensors(run.file(WEIGHTS), expect_dtypes=FLOAT_DTYPES, finite=True)
    if any(".lora_" in k for k in arrays):                  # a checkpoint of a LoRA run: merge as finetune does
        arrays = merge_adapters(arrays, cfg.get("lora") or {}, run.file(WEIGHTS))
    head = None
    if cfg["kind"] == "classifier":
        config = replace(config, tie_weights=True)          # GPT2ForSequenceClassification has no LM head
        head = _pop_head(arrays, len(cfg["labels"]), config.n_embd, run.file(WEIGHTS))
    if not run.is_finished():
        notes.append(f"{run.path} has not finished training: its last checkpoint's weights are exported")
    header = {k: ("F32", v.shape, None) for k, v in arrays.items()}
    names = match_weights(header, config, run.file(WEIGHTS))
    state = {name: arrays[key] for name, key in names.items()}
    if head is not None:
        state["score.weight"], state["transformer.ln_f.bias"] = fold_head(*head, state["transformer.ln_f.bias"],
                                                                          run.file(WEIGHTS))
    return config, tokenizer, state, notes, cfg


def _check_exportable(config, path):
    """GPT-2 has biases and nothing else that GPTConfig may describe (other architectures)."""
    defaults = GPTConfig(vocab_size=1, block_size=1, n_layer=1, n_head=1, n_embd=1)
    sizes = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "tie_weights")
    for f in fields(GPTConfig):
        if f.name not in sizes and getattr(config, f.name) != getattr(defaults, f.name):
            raise MiniftError(f"{path}: model.{f.name} = {json.dumps(getattr(config, f.name))} has no GPT-2 "
                              f"equivalent (GPT-2 has {f.name} = {json.dumps(getattr(defaults, f.name))}); "
                              f"this model cannot be exported as GPT-2")


def _check_out_dir(out, source):
    """--out is new, empty, or an earlier export (overwritten); never a run or the source."""
    if out.exists() and not out.is_dir():
        raise MiniftError(f"--out {out} is a file; choose a directory for the exported model")
    if out.exists() and out.resolve() == source.resolve():
        raise MiniftError(f"--out {out} is the directory being exported; choose another")
    if (out / CONFIG).is_file() and not is_hf_model_dir(out):
        raise MiniftError(f"--out {out} holds a minift run; export writes a new directory: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not ((out / CONFIG).is_file() and is_hf_model_dir(out)):
        raise MiniftError(f"--out {out} exists and is not empty; choose a new or empty directory")
