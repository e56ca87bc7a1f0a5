"""Head counts the returned module's attention code reads beside its weights, after head pruning: GPT-2's
cross-attention splits its key-value projection by ``split_size`` and T5-style attention (T5, Pix2Struct) sizes
its position bias with ``n_heads`` and its output with ``inner_dim``. Left stale, the pruned model fails and
``recover=`` freezes those heads (the third architecture sweep's VisionEncoderDecoder and Pix2Struct rows)."""

from __future__ import annotations

import pytest

import graphpress
from graphpress.testing.arch_zoo import arch_case
from graphpress.testing.zoo_checks import call_case, optimize_kwargs


def _pruned(name: str):
    case = arch_case(name)
    model, report = graphpress.optimize(case.model, "prune-heads{ratio=0.3}", return_report=True,
                                        **optimize_kwargs(case))
    stats = report.records[-1].stats
    assert not stats.get("frozen"), stats.get("frozen")  # no head group had to be frozen to keep it running
    assert [o.shape for o in call_case(model, case)] == [o.shape for o in call_case(case.model, case)]
    return model


def test_gpt2_cross_attention_gets_its_split_size() -> None:
    model = _pruned("vision_encoder_decoder")
    cross = model.decoder.transformer.h[0].crossattention
    assert cross.split_size == cross.q_attn.weight.shape[1] < 64  # Conv1D: (in, out)
    assert cross.c_attn.weight.shape[1] == 2 * cross.split_size


@pytest.mark.parametrize("name", ["t5", "pix2struct"])
def test_t5_style_attention_gets_n_heads_and_inner_dim(name: str) -> None:
    model = _pruned(name)
    attentions = [m for m in model.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "n_heads")]
    assert attentions
    for attention in attentions:
        query = getattr(attention, "q", None) or attention.query
        assert attention.n_heads * attention.key_value_proj_dim == attention.inner_dim == query.weight.shape[0]
    assert any(attention.n_heads < 4 for attention in attentions)
