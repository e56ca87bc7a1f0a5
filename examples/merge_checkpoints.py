"""Merge two fine-tuned checkpoints of one base model with TIES (streaming, tensor by tensor).

    python examples/merge_checkpoints.py BASE_DIR FT1_DIR FT2_DIR -o merged
    python examples/merge_checkpoints.py --tiny -o /tmp/merged   # makes three tiny random checkpoints first
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from graphpress.merging import merge_models


def tiny_checkpoints(root: Path) -> list[Path]:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    base = LlamaForCausalLM(config)
    folders = []
    for i in range(3):
        model = LlamaForCausalLM(config)
        model.load_state_dict(base.state_dict())
        if i:  # two "fine-tunes": small different deltas
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.01 * torch.randn_like(p))
        folders.append(root / f"model{i}")
        model.save_pretrained(folders[-1])
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="BASE FT1 FT2 ...")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folders = tiny_checkpoints(Path(tmp)) if args.tiny else [Path(m) for m in args.models]
        if len(folders) < 3:
            parser.error("give a base and at least two fine-tuned folders, or --tiny")
        out = merge_models(folders[0], folders[1:], method="ties", density=0.5, lambda_=1.0, output=args.output)
    print(f"merged {len(folders) - 1} models into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
