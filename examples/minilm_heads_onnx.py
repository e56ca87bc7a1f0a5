"""Prune a quarter of MiniLM's attention heads and export it to ONNX for onnxruntime.

    python examples/minilm_heads_onnx.py -o minilm-pruned.onnx
    python examples/minilm_heads_onnx.py --tiny -o /tmp/tiny-bert.onnx   # a tiny random BERT (CI)
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import torch

import graphpress
from graphpress.backends.onnx import run_onnxruntime


def load(tiny: bool):
    if tiny:
        from transformers import BertConfig, BertModel

        config = BertConfig(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=128, max_position_embeddings=64)
        return BertModel(config).eval()
    from graphpress.models import load_minilm

    return load_minilm()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)

    model = load(args.tiny)
    ids = torch.randint(0, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    pruned = graphpress.optimize(model, "prune-heads{ratio=0.25}", example_inputs=(ids,))
    graphpress.export_onnx(pruned, args.output, example_inputs=(ids,))

    with torch.no_grad():
        expected = pruned(ids).last_hidden_state.numpy()
    actual = run_onnxruntime(onnx.load(args.output), [ids])[0]
    error = float(np.abs(actual - expected).max() / np.abs(expected).max())
    heads = [layer.attention.self.num_attention_heads for layer in pruned.encoder.layer]
    print(f"heads per layer: {heads}; onnxruntime vs torch max relative error {error:.2e}; wrote {args.output}")
    return 0 if error <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
