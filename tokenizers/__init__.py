"""Action tokenizers and the physical-token quantizer (installed as `physai.tokenizers`).

Importing this package registers every action tokenizer in `TOKENIZERS`: `bins` (uniform
per-dimension bins), `fast` (DCT + BPE compression, FAST) and `longlat` (car longitudinal/lateral
vocabularies with mu-law steering bins); `TOKENIZERS.get(name)(**kwargs)` builds one and
`load_tokenizer(dir)` restores a saved one. `FSQ` is the finite scalar quantizer of the shared
physical-language bottleneck. This folder is never importable as a top-level `tokenizers`: that
name belongs to Hugging Face's library, which the FAST tokenizer uses.
"""

from physai.tokenizers.base import TOKENIZERS, ActionTokenizer, load_tokenizer
from physai.tokenizers.bins import BinsTokenizer
from physai.tokenizers.fast import FastTokenizer
from physai.tokenizers.fsq import FSQ
from physai.tokenizers.longlat import LongLatTokenizer

__all__ = [
    "TOKENIZERS",
    "ActionTokenizer",
    "load_tokenizer",
    "FSQ",
    "BinsTokenizer",
    "FastTokenizer",
    "LongLatTokenizer",
]
