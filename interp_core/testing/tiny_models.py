"""Tiny random models of every supported family, for tests and benchmarks.

They are saved with ``save_pretrained`` (safetensors) next to a small byte-level BPE
tokenizer trained here, and then loaded through the same :func:`load_model` the app uses.
Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

FAMILIES = ("gpt2", "llama", "gpt_neox")

CORPUS = [
    "When Mary and John went to the store, John gave a drink to Mary.",
    "When Mary and John went to the park, Mary gave a ball to John.",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "The Eiffel Tower is located in the city of Paris.",
    "The cat sat on the mat. The dog sat on the log.",
    "One two three four five six seven eight nine ten.",
    "Alice and Bob talked about the weather and the news.",
]


def build_tokenizer(vocab_size: int = 400) -> object:
    """A byte-level BPE tokenizer trained on :data:`CORPUS`, BOS ``<|bos|>`` id 0 (fast, offline)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|bos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|bos|>", eos_token="<|bos|>", pad_token="<|bos|>")


def tiny_config(family: str, vocab_size: int, **overrides: object) -> object:
    """A 2-layer config of ``family`` with small widths; ``overrides`` replace any field."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    if family == "gpt2":
        fields = dict(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=vocab_size, bos_token_id=0, eos_token_id=0)
        fields.update(overrides)
        return GPT2Config(**fields)
    if family == "llama":
        fields = dict(
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=64,
            intermediate_size=128, max_position_embeddings=128, vocab_size=vocab_size,
            bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=True,
        )
        fields.update(overrides)
        return LlamaConfig(**fields)
    if family == "gpt_neox":
        fields = dict(
            num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128,
            max_position_embeddings=128, vocab_size=vocab_size, rotary_pct=0.5, use_parallel_residual=True,
            bos_token_id=0, eos_token_id=0, tie_word_embeddings=False,
        )
        fields.update(overrides)
        return GPTNeoXConfig(**fields)
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def save_tiny_model(family: str, directory: str | Path, *, seed: int = 0, uneven_norms: bool = False, **overrides: object) -> Path:
    """Create a random tiny ``family`` model with its tokenizer in ``directory``; returns it.

    ``uneven_norms=True`` draws every norm weight from ``U(0.5, 1.5)`` instead of leaving it at 1,
    like a trained model's: tests of norm folding need weights whose folding changes something.
    """
    from transformers import AutoModelForCausalLM

    directory = Path(directory)
    tokenizer = build_tokenizer()
    config = tiny_config(family, len(tokenizer), **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # random init is near-degenerate at these widths; widen the spread a little
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.2)
            elif "bias" in name:
                param.normal_(0.0, 0.05)
            elif uneven_norms:  # the remaining 1-d weights are the norms' (all ones at init)
                param.uniform_(0.5, 1.5)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
