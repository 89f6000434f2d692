"""An offline CLIP tokenizer for pipelines built from config (tests, benchmarks,
the demo): no vocabulary download, the same special tokens and 77-token limit."""

from __future__ import annotations


def byte_level_tokenizer():  # -> CLIPTokenizer
    """A CLIP tokenizer with one token per byte (and per word-final byte), no merges.

    CLIP's real vocabulary is a 49k-line download; this one is built in code,
    tokenizes any text, and keeps the same special tokens and 77-token limit.
    """
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _byte_symbols() -> list[str]:
    """The printable stand-in that byte-level BPE (GPT-2, CLIP) uses for each byte.

    Printable Latin-1 bytes stand for themselves; the rest (controls, space,
    soft hyphen...) are shifted to code points from 256 up, in byte order.
    """
    printable = {
        *range(ord("!"), ord("~") + 1),
        *range(0xA1, 0xAD),
        *range(0xAE, 0x100),
    }
    symbols, shifted = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols
