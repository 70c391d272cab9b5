"""A loaded model: the HF module, its tokenizer, its adapter, and safe ways to run it.

One :class:`LoadedModel` is shared by every Streamlit session of a server, so it is never
mutated after loading, and every forward it runs (hooked or not) holds ``self.lock``: a
forward without hooks run while another thread's hooks are attached would see them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from interp_core.core.arch.base import Adapter, ModelWeights
from interp_core.core.devices import execution_device
from interp_core.core.errors import BadPromptError, NotSingleTokenError, UnknownHookError
from interp_core.core.fair_lock import FairLock
from interp_core.core.hooks import HookList, StopForward, attached, capture_into, resolve, stop_after
from interp_core.core.load_options import LoadOptions
from interp_core.core.names import BLOCK_POINTS, GLOBAL_POINTS, hook_name
from interp_core.core.prefix import (
    KeyValueRecorder,
    PrefixKeyValues,
    block_keywords,
    block_over_row_suffixes,
    cache_argument,
    suffix_keywords,
)

NameFilter = Iterable[str] | Callable[[str], bool] | None


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a loaded model, shown on the model card and used to validate input."""

    name: str
    source: str
    family: str
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    norm: str
    positional: str
    parallel_residual: bool
    n_params: int
    device: str
    dtype: str
    load_seconds: float
    device_map: str = ""  # a dispatched model: modules per device, e.g. "cuda:0: 14, cpu: 3"; else empty


@dataclass(frozen=True)
class LayerContext:
    """What a decoder block is called with besides the residual (mask, rotary tables, ...),
    recorded on a real forward so blocks can be replayed from any layer."""

    keywords: dict  # every argument besides the residual, by name (:func:`interp_core.core.prefix.block_keywords`)
    n_pos: int
    cache_argument: str | None  # the block's KV-cache argument, where it has one


class LoadedModel:
    """A frozen HF causal LM with hook-point access. Build it with :func:`interp_core.load_model`."""

    def __init__(self, hf_model: torch.nn.Module, tokenizer: object, adapter: Adapter, info: ModelInfo,
                 fingerprint: str = "", options: LoadOptions | None = None) -> None:
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.adapter = adapter
        self.info = info
        self.options = options or LoadOptions()
        # Identifies these weights: results cached under it are never served for other weights, e.g.
        # after a toy model is retrained under the same name. Loaded models get it from their files.
        self.fingerprint = fingerprint or f"{info.name}@{id(self):x}"
        self.lock = FairLock()  # reentrant; first come first served, so a sweep cannot starve a light request

    def __repr__(self) -> str:
        i = self.info
        return f"LoadedModel({i.name!r}, {i.family}, {i.n_layers} layers x {i.n_heads} heads, {i.device})"

    @property
    def device(self) -> torch.device:
        """The main device: where tokens go in (the embedding computes) and where recorded activations and
        canonical weights are kept. One device unless the model is dispatched over several by accelerate."""
        return execution_device(self.adapter.embed)

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (float32 unless loaded in half precision); activations run in it, while
        recorded activations, logits and canonical weights are float32 whatever it is."""
        return self.adapter.embed.weight.dtype

    # --- tokens ------------------------------------------------------------------------
    def unknown_tokens(self, text: str) -> tuple[int, int]:
        """``(unknown, total)`` tokens of ``text``: how many became the tokenizer's UNK token.

        Only word-level tokenizers (the toy models) have a real UNK; byte-level ones (GPT-2,
        llama) never produce one, and where UNK doubles as BOS/EOS (GPT-2) it is not counted.
        """
        ids = self.tokenizer(text)["input_ids"] if text else []
        unk = self._real_unk_id()
        if unk is None:
            return 0, len(ids)
        return sum(1 for i in ids if i == unk), len(ids)

    def tokenize(self, prompt: str, *, max_tokens: int | None = None) -> torch.Tensor:
        """Tokenise one prompt as the model expects; returns ``(1, pos)`` token ids.

        Raises BadPromptError for an empty prompt or one longer than ``max_tokens``
        (default: the model's context length).
        """
        if not prompt or not prompt.strip():
            raise BadPromptError("The prompt is empty: type some text in the prompt box.")
        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
        self.check_length(ids.shape[1], max_tokens=max_tokens)
        if ids.shape[1] == 0:
            raise BadPromptError("The prompt produced no tokens: type some text in the prompt box.")
        return ids

    def token_limit(self, max_tokens: int | None = None) -> int:
        """The longest sequence any input may have here: the smallest of ``max_tokens``, the model's
        context and the server's ``$WORKBENCH_MAX_PROMPT_TOKENS``."""
        return min(max_tokens or self.info.n_ctx, self.info.n_ctx, max_prompt_tokens())

    def check_length(self, n_tokens: int, *, max_tokens: int | None = None, what: str = "The prompt") -> None:
        """Raise BadPromptError when a sequence of ``n_tokens`` is over :meth:`token_limit`."""
        limit = self.token_limit(max_tokens)
        if n_tokens > limit:
            raise BadPromptError(f"{what} is {n_tokens} tokens long; the limit here is {limit}. Shorten it.")

    def token_strings(self, ids: torch.Tensor | Sequence[int]) -> list[str]:
        """Readable text of each token id, e.g. ``[' Paris', ...]`` (leading spaces kept)."""
        flat = ids.flatten().tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [self.tokenizer.decode([i]) for i in flat]

    def single_token_id(self, text: str) -> int:
        """The id of ``text`` if it is exactly one token; else NotSingleTokenError naming the pieces."""
        if not text:
            raise NotSingleTokenError("The answer token is empty: type a token such as ' Paris' (with its leading space).")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            pieces = ", ".join(repr(p) for p in self.token_strings(ids))
            hint = " Most words need their leading space, e.g. ' Paris'." if not text.startswith(" ") else ""
            raise NotSingleTokenError(
                f"{text!r} is {len(ids)} tokens for this model ({pieces}), not one. Pick a single-token word.{hint}"
            )
        unk = self._real_unk_id()
        if unk is not None and int(ids[0]) == unk and text.strip() != self.tokenizer.unk_token:
            raise NotSingleTokenError(
                f"{text!r} is unknown to this model: its tokenizer turns it into the unknown-token symbol "
                f"{self.tokenizer.unk_token!r}. Pick one of its symbols, e.g. {', '.join(repr(s) for s in self._sample_symbols())}."
            )
        return int(ids[0])

    def _real_unk_id(self) -> int | None:
        """The tokenizer's UNK id when it has a real one (word-level toy tokenizers); None where there
        is none or it doubles as BOS/EOS (GPT-2), the rule of :meth:`unknown_tokens`."""
        tok = self.tokenizer
        unk = getattr(tok, "unk_token_id", None)
        if unk is None or unk in (getattr(tok, "bos_token_id", None), getattr(tok, "eos_token_id", None)):
            return None
        return int(unk)

    def _sample_symbols(self, n: int = 8) -> list[str]:
        """A few ordinary (non-special) tokens of the vocabulary, lowest ids first."""
        special = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        ids = [i for i in range(min(self.info.d_vocab, 4 * n + len(special))) if i not in special][:n]
        return self.token_strings(ids)

    # --- running -----------------------------------------------------------------------
    @cached_property
    def hook_names(self) -> tuple[str, ...]:
        """Every hook-point name this model has, in forward order within each block."""
        names = []
        candidates = list(GLOBAL_POINTS) + [hook_name(p, layer) for layer in range(self.info.n_layers) for p in BLOCK_POINTS]
        for name in candidates:
            try:
                resolve(self.adapter, name)
            except UnknownHookError:
                continue
            names.append(name)
        return tuple(names)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        hooks: HookList = (),
        attention_mask: torch.Tensor | None = None,
        last_position_only: bool = False,
        grad: bool = False,
    ) -> torch.Tensor:
        """Run the model with ``hooks`` attached; returns logits ``(batch, pos, d_vocab)``
        (``pos`` = 1 with ``last_position_only``)."""
        with self.lock, attached(self.adapter, hooks), torch.set_grad_enabled(grad):
            out = self.hf_model(
                input_ids=tokens.to(self.device),
                attention_mask=None if attention_mask is None else attention_mask.to(self.device),
                use_cache=False,
                logits_to_keep=1 if last_position_only else 0,
            )
        return out.logits.float()

    run_with_hooks = forward

    def run_with_cache(
        self,
        tokens: torch.Tensor,
        names: NameFilter = None,
        *,
        hooks: HookList = (),
        attention_mask: torch.Tensor | None = None,
        stop_at_layer: int | None = None,
        grad: bool = False,
        key_values: KeyValueRecorder | None = None,
        last_position_only: bool = False,
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Run once and record activations.

        Args:
            tokens: ``(batch, pos)`` token ids.
            names: the hook points to record: a list of names, a predicate on names, or
                ``None`` for every point this model has.
            hooks: editing hooks, attached before the recording ones.
            stop_at_layer: stop after block ``stop_at_layer - 1`` (its output is
                ``blocks.{stop_at_layer-1}.hook_resid_post``); logits are then ``None``.
            grad: keep the graph (recorded tensors are not detached) for gradients.
            key_values: also record every block's keys and values into it (for :meth:`run_blocks`
                over a suffix).
            last_position_only: unembed the last position only (logits ``(batch, 1, d_vocab)``).

        Returns:
            ``(logits (batch, pos, d_vocab) or None, {name: activation})``.
        """
        all_names = self.hook_names
        if names is None:
            wanted = all_names
        elif callable(names):
            wanted = [n for n in all_names if names(n)]
        else:
            wanted = list(names)
        if stop_at_layer is not None:
            wanted = [n for n in wanted if not n.startswith("ln_final") and _layer_of(n) < stop_at_layer]
        store: dict[str, torch.Tensor] = {}
        recorder = capture_into(store, detach=not grad, device=self.device, dtype=torch.float32)
        all_hooks = list(hooks) + [(n, recorder) for n in wanted]
        logits = None
        with self.lock, attached(self.adapter, all_hooks), torch.set_grad_enabled(grad):
            stopper = stop_after(self.adapter.layers[stop_at_layer - 1]) if stop_at_layer else None
            kv_handles = [key_values.attach(block) for block in self.adapter.layers] if key_values is not None else []
            try:
                logits = self.hf_model(
                    input_ids=tokens.to(self.device),
                    attention_mask=None if attention_mask is None else attention_mask.to(self.device),
                    use_cache=False,
                    logits_to_keep=1 if last_position_only else 0,
                ).logits.float()
            except StopForward:
                pass
            finally:
                if stopper is not None:
                    stopper.remove()
                for handle in kv_handles:
                    handle.remove()
        return logits, store

    # --- replaying blocks ----------------------------------------------------------------
    def layer_context(self, tokens: torch.Tensor) -> LayerContext:
        """Record the non-residual arguments block 0 receives for ``tokens (1, pos)``."""
        seen: dict[str, object] = {}

        def grab(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            seen["args"], seen["kwargs"] = args[1:], dict(kwargs)
            raise StopForward

        with self.lock:
            handle = self.adapter.layers[0].register_forward_pre_hook(grab, with_kwargs=True)
            try:
                with torch.no_grad():
                    self.hf_model(input_ids=tokens[:1].to(self.device), use_cache=False)
            except StopForward:
                pass
            finally:
                handle.remove()
        block = self.adapter.layers[0]
        keywords = block_keywords(block, seen["args"], seen["kwargs"])  # type: ignore[arg-type]
        return LayerContext(keywords, int(tokens.shape[1]), cache_argument(block))

    def run_blocks(
        self,
        resid: torch.Tensor,
        start_layer: int,
        context: LayerContext,
        *,
        hooks: HookList = (),
        last_position_only: bool = True,
        grad: bool = False,
        end_layer: int | None = None,
        prefix: PrefixKeyValues | None = None,
        start_pos: int = 0,
    ) -> torch.Tensor:
        """Continue a forward pass from ``blocks.{start_layer}.hook_resid_pre``.

        Args:
            resid: ``(batch, pos, d_model)``, the residual entering block ``start_layer``.
            context: from :meth:`layer_context` on a prompt of the same length.

            end_layer: stop before this block and return the residual entering it,
                ``(batch, pos, d_model)``, instead of logits.
            prefix, start_pos: run positions ``start_pos..`` only: ``resid`` is then
                ``(batch, pos - start_pos, d_model)`` and attention reads the keys and values of
                positions ``..start_pos-1`` from ``prefix`` (recorded by :meth:`run_with_cache`'s
                ``key_values`` on a run that agrees with this one before ``start_pos``). Hook values
                then cover those positions only.

        Returns:
            logits ``(batch, 1 or pos, d_vocab)``, equal to a full forward's logits when
            ``resid`` is that forward's residual (tested).
        """
        if resid.shape[1] != context.n_pos - start_pos:
            raise ValueError(f"resid has {resid.shape[1]} positions but the context was recorded for {context.n_pos} "
                             f"and the run starts at position {start_pos}.")
        if start_pos and prefix is None:
            raise ValueError("A run from a later position needs the earlier positions' keys and values (prefix).")
        with self.lock, attached(self.adapter, hooks), torch.set_grad_enabled(grad):
            x = resid.to(self.device, self.dtype)
            keywords = suffix_keywords(context.keywords, context.cache_argument, start_pos, prefix, context.n_pos, x.dtype)
            for block in self.adapter.layers[start_layer:end_layer]:
                out = block(x, **keywords)
                x = out[0] if isinstance(out, tuple) else out
            if end_layer is not None:
                return x.to(self.device, resid.dtype)
            if last_position_only:
                x = x[:, -1:]
            return self.unembed(self.adapter.final_norm(x))

    def run_block_rows(self, resid: torch.Tensor, starts: torch.Tensor, layer: int, prefix: PrefixKeyValues, *,
                       last_position_only: bool = False, prefix_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Block ``layer`` over rows that agree with ``prefix``'s run before their ``starts``:
        :func:`interp_core.core.prefix.block_over_row_suffixes` (no hooks), ``(rows, pos, d_model)``;
        ``prefix_rows`` names each row's prompt in a batched ``prefix`` (default: prompt 0)."""
        with self.lock, torch.no_grad():
            block_device = execution_device(self.adapter.layers[layer])
            out = block_over_row_suffixes(self.adapter, layer, resid.to(block_device, self.dtype), starts, prefix,
                                          last_position_only=last_position_only, prefix_rows=prefix_rows)
            return out.to(self.device, resid.dtype)

    # --- pieces ------------------------------------------------------------------------
    def apply_final_norm(self, resid: torch.Tensor) -> torch.Tensor:
        """The model's own final norm applied to ``resid (..., d_model)``."""
        return self.adapter.final_norm(resid.to(self.device, self.dtype)).to(self.device, torch.float32)

    def unembed(self, normed: torch.Tensor) -> torch.Tensor:
        """``(..., d_model) -> (..., d_vocab)`` logits through the model's own head (on the main device)."""
        return self.adapter.lm_head(normed.to(self.dtype)).to(self.device, torch.float32)

    @cached_property
    def weights(self) -> ModelWeights:
        """Canonical weights, all on :attr:`device` (read-only views of the parameters; never edit them).

        A dispatched model's blocks are read when first asked for (``weights.blocks[layer]``), each
        then copied to the main device once; weights offloaded to CPU or disk are read from accelerate's
        offload store (:func:`interp_core.core.devices.real_tensor`).
        """
        with torch.no_grad():
            return self.adapter.model_weights(self.device)


def max_prompt_tokens() -> int:
    """A server-wide prompt limit for hosted workshops: ``$WORKBENCH_MAX_PROMPT_TOKENS`` (default: none)."""
    raw = os.environ.get("WORKBENCH_MAX_PROMPT_TOKENS", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1 << 30


def _layer_of(name: str) -> int:
    return int(name.split(".")[1]) if name.startswith("blocks.") else -1
