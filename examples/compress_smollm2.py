"""Compress SmolLM2-135M (prune 10% of its channels, then 4-bit quantize) and save a Hugging Face folder.

    python examples/compress_smollm2.py -o smollm2-small          # the real model (a few minutes on 2 cores)
    python examples/compress_smollm2.py --tiny -o /tmp/tiny-small  # a tiny random Llama (seconds; used in CI)

The folder reloads with ``graphpress.quantization.load_quantized(folder)`` and generates text.
"""

from __future__ import annotations

import argparse

import torch

import graphpress
from graphpress.quantization import load_quantized

PIPELINE = "prune-channels{ratio=0.1,importance=l2,ignore=lm_head},quantize{bits=4,group=64,method=hqq}"


def load(tiny: bool):
    if tiny:
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
        return LlamaForCausalLM(config).eval(), None
    from graphpress.models import load_smollm2

    return load_smollm2()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama instead of SmolLM2")
    args = parser.parse_args(argv)

    model, tokenizer = load(args.tiny)
    small = graphpress.optimize(model, PIPELINE)
    small.save_pretrained(args.output)
    if tokenizer is not None:
        tokenizer.save_pretrained(args.output)

    reloaded = load_quantized(args.output)
    prompt = torch.tensor([[1, 2, 3, 4]]) if tokenizer is None else tokenizer("def fibonacci(n):",
                                                                               return_tensors="pt").input_ids
    generated = reloaded.generate(prompt, max_new_tokens=20, do_sample=False)
    params = [sum(p.numel() for p in m.parameters()) for m in (model, small)]
    print(f"parameters (float): {params[0]:,} -> {params[1]:,}; saved to {args.output}")
    print("generated:", generated[0].tolist() if tokenizer is None else tokenizer.decode(generated[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
