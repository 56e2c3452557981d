"""Where a decode step's time goes: one llama_decode of B sequences, for B = 1 .. 16, on the embedded model.

The decode loop (continuous batching) puts the next token of every running sequence into one
``llama_decode``. Whether that pays depends on what a step is bound by. With B = 1 a step streams every
weight from memory once for one token; with B tokens it streams them once for all, but does B times the
arithmetic. This script times steps of B sequences, each with its own prompt of about PROMPT tokens
already in the cache (as in a real batch), and prints per B: ms per step, tokens/s, the step's arithmetic
(multiply-accumulates from the model's shapes: the layers' weights, attention over the cached cells, and
the output layer over the whole vocabulary, which every sequence needs for its logits) and the rate that
arithmetic ran at. When the GMAC/s stop rising, the cores are the limit: more sequences then cost
proportionally more time, and tokens/s stays flat.

    .venv/bin/python benchmarks/decode_step.py [--model qwen2.5-coder-0.5b] [--threads 2] [--steps 32] [--prompt 200]
        [--split] [--no-flash]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from _report import figure

from fusion_of_n.backends.local import resolve_model


def shapes(llama: Any) -> dict[str, int]:
    meta = llama.metadata
    arch = meta["general.architecture"]
    return {
        "layers": int(meta[f"{arch}.block_count"]),
        "embd": int(meta[f"{arch}.embedding_length"]),
        "ff": int(meta[f"{arch}.feed_forward_length"]),
        "heads": int(meta[f"{arch}.attention.head_count"]),
        "kv_heads": int(meta.get(f"{arch}.attention.head_count_kv", meta[f"{arch}.attention.head_count"])),
        "vocab": int(llama.n_vocab()),
    }


def macs_per_token(s: dict[str, int], cells: int) -> tuple[float, float, float]:
    """Multiply-accumulates for one token: layer weights, attention over ``cells`` cached cells, output layer."""
    head = s["embd"] // s["heads"]
    kv = s["kv_heads"] * head
    layer = s["embd"] * (s["embd"] + 2 * kv + s["embd"]) + 3 * s["embd"] * s["ff"]  # q,k,v,o + gate,up,down
    attention = 2 * s["heads"] * head * cells  # q.k over the cells, then the weighted sum of v
    return s["layers"] * layer, s["layers"] * attention, s["embd"] * s["vocab"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=200, help="cached prompt tokens per sequence")
    parser.add_argument(
        "--split", action="store_true", help="one KV stream per sequence (kv_unified off) instead of the engine's pool"
    )
    parser.add_argument(
        "--no-flash", action="store_true", help="flash attention off (the engine has it on: it skips masked cells)"
    )
    args = parser.parse_args()
    import llama_cpp
    from llama_cpp import _internals

    cache = Path(os.environ.get("FUSION_OF_N_CACHE", "~/.cache/fusion-of-n")).expanduser()
    path = resolve_model(args.model, cache)
    llama = llama_cpp.Llama(model_path=str(path), n_ctx=8192, n_threads=args.threads, verbose=False)
    s = shapes(llama)
    source = llama.context_params
    kv = "one KV stream per sequence" if args.split else "one pooled KV cache (as the engine)"
    kv += ", flash attention off" if args.no_flash else ", flash attention"
    print(f"{args.model}, {args.threads} threads, {args.steps} steps per B, ~{args.prompt} tokens/sequence, {kv}")
    print(
        f"{'B':>3} {'ms/step':>8} {'tok/s':>7} {'x B=1':>6} {'GMAC/step':>10} {'GMAC/s':>7}"
        "  share: layers/attention/output"
    )
    single = None
    per_b: dict[int, tuple[float, float]] = {}
    for b in (1, 2, 4, 8, 12, 16):
        params = type(source).from_buffer_copy(source)
        params.n_ctx = 16384
        params.n_seq_max = 16
        params.kv_unified = not args.split
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED if args.no_flash else llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        )
        ctx = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
        raw = batch.batch
        for seq in range(b):  # each sequence its own prompt
            text = f"Problem {seq}: a shop sells {seq + 3} apples for {seq + 7} dollars each. " * 64
            prompt = llama.tokenize(text.encode())[: args.prompt]
            for start in range(0, len(prompt), 256):
                chunk = prompt[start : start + 256]
                for row, token in enumerate(chunk):
                    raw.token[row], raw.pos[row], raw.n_seq_id[row] = token, start + row, 1
                    raw.seq_id[row][0], raw.logits[row] = seq, row == len(chunk) - 1
                raw.n_tokens = len(chunk)
                ctx.decode(batch)
        started = time.perf_counter()
        for step in range(args.steps):
            for row in range(b):
                raw.token[row], raw.pos[row], raw.n_seq_id[row] = 100 + row, args.prompt + step, 1
                raw.seq_id[row][0], raw.logits[row] = row, True
            raw.n_tokens = b
            ctx.decode(batch)
        per_step = (time.perf_counter() - started) / args.steps
        batch.close()
        ctx.close()
        cells = (1 if args.split else b) * (args.prompt + args.steps // 2)  # a pooled cache: every sequence's cells
        layers, attention, output = macs_per_token(s, cells)
        step_macs = b * (layers + attention + output)
        tokens = b / per_step
        single = single or tokens
        total = layers + attention + output
        per_b[b] = (tokens / single, step_macs / 1e9 / per_step)
        print(
            f"{b:>3} {1000 * per_step:>8.1f} {tokens:>7.1f} {tokens / single:>5.2f}x {step_macs / 1e9:>10.2f} "
            f"{step_macs / 1e9 / per_step:>7.1f}  {layers / total:.0%}/{attention / total:.0%}/{output / total:.0%}"
        )
    llama.close()
    speedup, rate = per_b[16]
    if not args.split and not args.no_flash:  # the README quotes the engine's layout
        figure("decode.b16_speedup", speedup, f"{speedup:.2f}x")
        figure("decode.b16_gmacs", rate, f"{rate:.0f} GMAC/s")


if __name__ == "__main__":
    main()
