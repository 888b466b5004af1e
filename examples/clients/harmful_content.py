"""Harmful content client: a post's text (hashed tokens) + image -> probability per harm class.

    python examples/clients/harmful_content.py [--protocol grpc] [--url HOST:PORT] [--text "..."]

Tokenisation is the model's contract: FNV-1a (32-bit) of each lower-cased word, 0 = padding, 32
tokens. The mlsd KServe predictor also returns a decision per class.
"""

import numpy as np
from _common import infer, parse

CLASSES = ("violence", "nudity", "hate_speech", "spam")
MAX_TOKENS = 32


def fnv1a_32(word: str) -> int:
    value = 0x811C9DC5
    for byte in word.lower().encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value or 1


def tokenize(text: str) -> np.ndarray:
    ids = np.zeros(MAX_TOKENS, dtype=np.int64)
    words = text.split()[:MAX_TOKENS]
    ids[: len(words)] = [fnv1a_32(w) for w in words]
    return ids


args = parse(__doc__.splitlines()[0], "harmful-content",
             lambda p: p.add_argument("--text", default="w0003 w0010 w0100 w0500 w0999", help="the post's text"))
text = args.text
image = np.full((1, 3, 32, 32), 0.2, dtype=np.float32)
image[0, 0, 10:22, 10:22] = 0.9                      # a red square
result, outputs = infer(args, {"token_ids": tokenize(text)[None, :], "image": image})
probabilities = result.as_numpy("probabilities")[0]
decisions = result.as_numpy("decisions")[0] if "decisions" in outputs else probabilities >= 0.5
for name, p, flagged in zip(CLASSES, probabilities, decisions):
    print(f"{name:12s} {p:.3f} {'FLAG' if flagged else ''}")
