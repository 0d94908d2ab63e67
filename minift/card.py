"""Model cards: the README.md that every finished run directory and every export holds, so
that a model found on a disk (or on a hub) says what it is without its author beside it:

    what it is      kind, strategy, architecture and size
    init            the run it started from, and the sha256 of that run's weights
    data            every data file with its sha256 (as config.json recorded them), labels
    recipe          the training settings, as config.json holds them
    metrics         test accuracy and macro-F1, or the last validation figures
    provenance      the sha256 of the weights beside the card, the date, minift's version

Everything on the card comes from config.json and the metrics, so the card can be written
again from them at any time; it is written atomically, just before metrics.json (which
marks the run finished, and is always the last write).
"""
import datetime
import json
from pathlib import Path

from .files import atomic_write, file_sha256
from .model import GPTConfig
from .runs import WEIGHTS

CARD = "README.md"
KINDS = {
    "pretrain": "a language model pretrained on next-token prediction",
    "classifier": "a text classifier: a pretrained backbone with a classification head",
    "instruct": "a language model instruction-tuned to answer with a label",
    "prompt": "a pretrained language model that labels texts by prompting (nothing trained)",
    "sft": "a language model aligned by supervised instruction tuning (SFT)",
    "dpo": "a language model aligned by direct preference optimization (DPO)",
    "huggingface-gpt2": "a Hugging Face GPT-2 language model",
}


def minift_version() -> str:
    """minift's version (minift.__version__, which setup.cfg reads too)."""
    from . import __version__
    return __version__


def _model_dict(cfg: dict) -> dict:
    model = cfg.get("model") or {}
    return model.to_dict() if isinstance(model, GPTConfig) else dict(model)


def _what(cfg: dict, parameters: int | None) -> list[str]:
    kind, model = cfg.get("kind", "unknown"), _model_dict(cfg)
    lines = [f"- **kind**: `{kind}`, {KINDS.get(kind, 'a minift model')}"]
    if cfg.get("strategy"):
        lines.append(f"- **strategy**: `{cfg['strategy']}`" +
                     (f", pooling `{cfg['pooling']}`" if cfg.get("pooling") else ""))
    if model:
        arch = "GPT-2 decoder (causal attention)" if model.get("causal", True) else "encoder (bidirectional attention)"
        size = f", {parameters:,} parameters" if parameters else ""
        lines.append(f"- **architecture**: {arch}: {model.get('n_layer')} layers, {model.get('n_head')} heads, "
                     f"n_embd {model.get('n_embd')}, context {model.get('block_size')} tokens, vocabulary "
                     f"{model.get('vocab_size')}{size}")
    return lines


def _data(cfg: dict) -> list[str]:
    lines = []
    if cfg.get("init"):
        digest = f" (model.safetensors sha256 `{cfg['init_sha256']}`)" if cfg.get("init_sha256") else ""
        lines.append(f"- **init**: `{cfg['init']}`{digest}")
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
    if "corpus_sha256" in cfg:
        files = ", ".join(f"`{f}`" for f in train.get("corpus_files") or []) or "the built-in feedback corpus"
        lines.append(f"- **corpus**: {files} (text sha256 `{cfg['corpus_sha256']}`)")
    for path, digest in (cfg.get("data_sha256") or {}).items():
        lines.append(f"- **data**: `{path}` (sha256 `{digest}`)")
    if isinstance(cfg.get("data"), str) and not cfg.get("data_sha256"):
        lines.append(f"- **data**: {cfg['data']}")
    if cfg.get("labels"):
        lines.append("- **labels**: " + ", ".join(f"`{label}`" for label in cfg["labels"]))
    return lines


def _recipe(cfg: dict) -> list[str]:
    """The settings section of config.json (fine-tuning's and alignment's hold the recipe)."""
    recipe = cfg.get("finetune") or cfg.get("align") or cfg.get("train") or {}
    return [f"- `{name}`: `{json.dumps(value)}`" for name, value in recipe.items()]


def _metrics(metrics: dict | None) -> list[str]:
    if not metrics:
        return ["(none recorded)"]
    lines = []
    for name, m in (metrics.get("test") or {}).items():
        lines.append(f"- test `{name}` ({m.get('n')} texts): accuracy {m['accuracy']:.1%}, macro-F1 "
                     f"{m['macro_f1']:.3f}")
    if isinstance(metrics.get("validation"), dict) and "accuracy" in metrics["validation"]:
        v = metrics["validation"]
        lines.append(f"- validation ({v.get('n')} texts): accuracy {v['accuracy']:.1%}, macro-F1 {v['macro_f1']:.3f}")
    elif isinstance(metrics.get("validation"), dict) or (metrics.get("eval") or []):
        last = metrics["validation"] if isinstance(metrics.get("validation"), dict) else metrics["eval"][-1]
        lines.append("- last evaluation: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                        for k, v in last.items()))
    if isinstance(metrics.get("judge"), dict):
        j = metrics["judge"]
        lines.append(f"- judged on held-out requests ({j.get('n')} responses): sentiment {j['sentiment']:.1%}, "
                     f"product {j['product']:.1%}, both {j['both']:.1%}")
    return lines or ["(none recorded)"]


def model_card(cfg: dict, metrics: dict | None = None, *, title: str = "model", parameters: int | None = None,
               weights: Path | None = None, usage: list[str] | None = None, intro: str | None = None) -> str:
    """The card (Markdown) of a model whose config.json is `cfg` and whose final metrics
    are `metrics`; `weights` is the file whose sha256 the card records, `usage` extra
    lines on how to load it."""
    parts = [f"# {title}", "", intro or f"A model trained by minift {minift_version()}.", "", "## What it is", "",
             *_what(cfg, parameters), "", "## Init and data", "", *(_data(cfg) or ["(none recorded)"]), "",
             "## Recipe", "", *(_recipe(cfg) or ["(none recorded)"]), "", "## Metrics", "", *_metrics(metrics), ""]
    if usage:
        parts += ["## Use", "", *usage, ""]
    written = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts += ["## Provenance", ""]
    if weights is not None and Path(weights).is_file():
        parts.append(f"- weights: `{Path(weights).name}` sha256 `{file_sha256(weights)}`")
    parts += [f"- written {written} by minift {minift_version()}", ""]
    return "\n".join(parts)


def write_card(directory: str | Path, cfg: dict, metrics: dict | None = None, **details) -> Path:
    """Write `directory`/README.md, atomically (details: model_card's keywords)."""
    directory = Path(directory)
    details.setdefault("title", directory.resolve().name)
    return atomic_write(directory / CARD, model_card(cfg, metrics, **details))


def write_run_card(run, metrics: dict, parameters: int | None = None) -> Path:
    """The card of a run that has just finished (`run`: its RunDir; `metrics`: what
    metrics.json is about to say), with the commands that use it."""
    cfg = run.read_config()
    if cfg["kind"] in ("classifier", "instruct", "prompt"):
        usage = [f"    python -m minift classify --model {run.path} \"I love it.\""]
    elif cfg["model"].causal:
        usage = [f"    python -m minift generate --model {run.path} --prompt \"The\""]
    else:                                          # an encoder writes no text: it is fine-tuned
        usage = [f"    python -m minift finetune --init {run.path} --out runs/ft"]
    if cfg["model"].causal:
        usage += ["", f"`python -m minift export --model {run.path} --out DIR` writes it in transformers' format."]
    return write_card(run.path, cfg, metrics, parameters=parameters, weights=run.file(WEIGHTS), usage=usage)
