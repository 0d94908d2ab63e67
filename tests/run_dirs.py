"""A finished 'pretrained' run directory for tests that fine-tune or align: what
`pretrain` writes (config.json, tokenizer.json, weights, metrics marked finished), with
the random weights of GPT(config, seed=0)."""
from minift.files import save_safetensors, write_json
from minift.model import GPT
from minift.runs import WEIGHTS


def pretrained_run(out, tok, config):
    tok.save(out)
    write_json(out / "config.json", {"kind": "pretrain", "model": config.to_dict(),
                                     "tokenizer_fingerprint": tok.fingerprint()})
    save_safetensors(out / WEIGHTS, GPT(config, seed=0).state_dict())
    write_json(out / "metrics.json", {"train": [], "eval": [], "finished": True})
    return out
