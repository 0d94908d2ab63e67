"""Exercise `lora_merge`: fold a LoRA adapter back into its layer.

LoRA (Hu et al. 2021) fine-tunes a frozen Linear layer (weight W (in, out), bias b)
through two small matrices A (in, r) and B (r, out), with r much smaller than in and out:

    y = x @ W + b  +  (x @ A) @ B * (alpha / r)

After training, the adapter can be merged: one weight W' such that x @ W' + b is the
same y for every x, so the model needs no extra products (and has plain GPT-2 names).

Write `merge_lora`, returning W' (in, out).

    check:  python -m minift.learn check lora_merge DIR
    minift's own: minift/adapt/lora.py, LoRALinear.merged
"""


def merge_lora(weight, lora_A, lora_B, alpha, rank):
    """weight (in, out), lora_A (in, r), lora_B (r, out) NumPy arrays; alpha a number, rank r.
    Returns the merged weight (in, out), a new array."""
    # SOLUTION: x @ W' must equal x @ W + (x @ A) @ B * (alpha / r) for every x
    return weight + (lora_A @ lora_B) * (alpha / rank)
    # END SOLUTION
