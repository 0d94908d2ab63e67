"""Alignment: a language model taught to follow requests (SFT), then to prefer the
responses that follow them over those that do not (DPO).

    python -m minift align --init runs/small --out runs/sft --method sft
    python -m minift align --init runs/sft --out runs/dpo --method dpo
    python -m minift align --init runs/sft --out runs/dpo-mine --method dpo --pairs pairs.jsonl

    sft   supervised instruction tuning: after "Request: <prompt>\\nReview:" the model
          learns to write the response and then <|endoftext|> (so that it stops), with
          the loss on those tokens only (adapt.prompts.masked_example, as `instruct`)
    dpo   direct preference optimisation (Rafailov et al., 2023): the policy starts as
          the init (the SFT run), a frozen copy of the init is the reference, and the
          loss on each pair (prompt, chosen, rejected) rewards the policy for raising the
          chosen response's log-probability, relative to the reference, above the
          rejected one's (dpo.py). Evaluations log, on held-out pairs, the mean implicit
          rewards of chosen and rejected responses, their margin and the reward accuracy.

Data. --pairs reads a JSONL file of {"prompt", "chosen", "rejected"} (data.preferences;
SFT trains on prompt -> chosen). Without it the built-in feedback world supplies the
data (data.feedback.instructions) over its 260 training requests ("Write a negative
review of the blender."): SFT examples written by the world; DPO pairs judged from the
init's own responses: it answers each training request several times, and the exact
judge pairs every response that does not follow its request with one that does
(--pairs-from world: pairs written by the world instead). Built-in runs end with the
judge on the 52 held-out requests: the share of sampled responses whose judged
sentiment is the one requested, and the share that stay on the requested product.

Read in this order:
    dpo        response log-probabilities, the DPO loss, preference batches and metrics
    judged     sampled responses read by the judge: following rates, judged pairs
    training   AlignConfig, align() and --resume
"""
from .dpo import LogSigmoid, dpo_loss, logprobs_of, preference_batch, preference_metrics, sequence_logprobs
from .judged import follows, judged_following, judged_pairs, sample_responses
from .training import ALIGN_RECIPES, ALIGN_TEMPLATE, DATA, METHODS, PAIRS_FROM, AlignConfig, align, judge_line

__all__ = [
    "sequence_logprobs", "LogSigmoid", "dpo_loss", "preference_batch", "logprobs_of", "preference_metrics",
    "sample_responses", "follows", "judged_following", "judged_pairs",
    "AlignConfig", "align", "judge_line", "ALIGN_RECIPES", "ALIGN_TEMPLATE", "DATA", "METHODS", "PAIRS_FROM",
]
