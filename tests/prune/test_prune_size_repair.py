"""recover= rewrites stale size attributes (a forward that reshapes with a stored number) instead of freezing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import graphpress
from graphpress.backends.size_attributes import SizeRule, propose_rules, twin_rules


class StoredWidthAttention(nn.Module):
    """SpeechT5's pattern: heads from q/k/v, output reshaped to ``self.embed_dim`` (hf fix-ups know num_heads,
    not embed_dim). ``scale_by_width`` also uses the number as a value, so rewriting it changes the result."""

    def __init__(self, dim: int = 32, heads: int = 4, scale_by_width: bool = False):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = dim, heads, dim // heads
        self.scale_by_width = scale_by_width
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        out = out.transpose(1, 2).reshape(b, s, self.embed_dim)
        if self.scale_by_width:
            out = out * (32 / self.embed_dim)
        return self.out_proj(out)


class Mixer(nn.Module):
    """Names no fix-up knows: ``heads`` splits the fused projection, ``inner`` is the merged width. Rewriting
    ``inner`` alone runs but splits the heads wrongly; both together are right."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads, self.inner = heads, dim
        self.to_qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = (t.reshape(b, s, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, s, self.inner)
        return self.proj(out)


class Net(nn.Module):
    def __init__(self, block: type[nn.Module], **options):
        super().__init__()
        self.blocks = nn.ModuleList(block(**options) for _ in range(2))
        self.norm = nn.LayerNorm(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(self.norm(x))
        return x


def _prune(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, dict]:
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=(x,), return_report=True)
    return pruned, report.records[-1].stats


def _onnx_output(model: nn.Module, x: torch.Tensor, tmp_path) -> torch.Tensor:
    from graphpress.backends.onnx import run_onnxruntime

    path = str(tmp_path / "pruned.onnx")
    graphpress.export_onnx(model, path, (x,))
    import onnx

    return torch.as_tensor(run_onnxruntime(onnx.load(path), [x])[0])


def test_a_stored_width_is_rewritten_instead_of_freezing_the_heads(tmp_path):
    torch.manual_seed(0)
    model, x = Net(StoredWidthAttention).eval(), torch.randn(2, 5, 32)
    pruned, stats = _prune(model, x)
    assert "frozen" not in stats and stats["achieved_ratio"] > 0
    assert stats["size_repairs"] == ["blocks.0.embed_dim = q_proj.weight.shape[0]",
                                     "blocks.1.embed_dim = q_proj.weight.shape[0]"]
    for block in pruned.blocks:
        assert block.embed_dim == block.q_proj.weight.shape[0] < 32
    assert all(block.embed_dim == 32 for block in model.blocks)  # the user's model is untouched
    with torch.no_grad():
        got = pruned(x)
    assert torch.allclose(got, _onnx_output(pruned, x, tmp_path), atol=1e-5)


def test_a_number_also_used_as_a_value_is_not_rewritten():
    torch.manual_seed(0)
    model, x = Net(StoredWidthAttention, scale_by_width=True).eval(), torch.randn(2, 5, 32)
    pruned, stats = _prune(model, x)
    assert "size_repairs" not in stats
    assert stats["frozen"] and all("changed what it computes" in message for message in stats["frozen"])
    assert all(block.embed_dim == 32 == block.q_proj.weight.shape[0] for block in pruned.blocks)


def test_a_head_count_and_a_width_are_rewritten_together(tmp_path):
    torch.manual_seed(0)
    model, x = Net(Mixer).eval(), torch.randn(2, 5, 32)
    pruned, stats = _prune(model, x)
    assert "frozen" not in stats and stats["achieved_ratio"] > 0
    for block in pruned.blocks:
        width = block.proj.weight.shape[1]
        assert width < 32 and block.inner == width and block.heads == width // 8
    with torch.no_grad():
        got = pruned(x)
    assert torch.allclose(got, _onnx_output(pruned, x, tmp_path), atol=1e-5)


def test_candidates_come_from_the_tensors_whose_sizes_changed():
    torch.manual_seed(0)
    original = Net(Mixer)
    edited = Net(Mixer)
    block = edited.blocks[0]
    block.to_qkv.weight.data = block.to_qkv.weight.data[:72]  # one head of 8 out of q, k and v
    block.proj.weight.data = block.proj.weight.data[:, :24]
    candidates = dict(((rule.attr, value), rule) for rule, value in propose_rules(original, edited, "blocks.0"))
    assert set(candidates) == {("heads", 3), ("inner", 24)}
    heads = candidates["heads", 3]
    assert heads.value(edited) == 3 and heads.value(original) == 4  # holds on the unpruned model
    assert twin_rules(heads, original) == [SizeRule("blocks.1", "heads", heads.tensor, heads.axis, heads.unit)]


class PerHeadBiasAttention(nn.Module):
    """TinyViT's attention (timm): each head's q, k and v are cut out by stored widths (``key_dim``, ``val_dim``),
    a per-head position bias is SDPA's mask, and the merged width is stored as ``out_dim``. After one head goes,
    ``num_heads`` and ``out_dim`` are stale; ``key_dim`` equals a quarter of the residual width, so rewriting it
    from the pruned residual is a decoy that breaks an earlier statement."""

    def __init__(self, dim: int = 32, heads: int = 4, tokens: int = 5):
        super().__init__()
        self.num_heads, self.key_dim, self.val_dim = heads, dim // heads, dim // heads
        self.out_dim = heads * self.val_dim
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, heads * (2 * self.key_dim + self.val_dim))
        self.proj = nn.Linear(self.out_dim, dim)
        self.attention_biases = nn.Parameter(torch.randn(heads, tokens))
        self.register_buffer("bias_index", torch.randint(0, tokens, (tokens, tokens)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        heads = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1)
        q, k, v = (t.transpose(1, 2) for t in heads.split([self.key_dim, self.key_dim, self.val_dim], dim=3))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.attention_biases[:, self.bias_index])
        return self.proj(out.transpose(1, 2).reshape(b, n, self.out_dim))


class EmbeddedNet(nn.Module):
    """Blocks behind an embedding and before a head, so the residual width may shrink too."""

    def __init__(self, block: type[nn.Module]):
        super().__init__()
        self.embed, self.head = nn.Linear(16, 32), nn.Linear(32, 10)
        self.blocks = nn.ModuleList(block() for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def test_stale_head_count_and_width_are_found_past_a_decoy_that_fails_earlier(tmp_path):
    torch.manual_seed(0)
    model, x = EmbeddedNet(PerHeadBiasAttention).eval(), torch.randn(2, 5, 16)
    pruned, stats = _prune(model, x)
    assert "frozen" not in stats and 0.27 <= stats["achieved_ratio"] <= 0.33
    for block in pruned.blocks:
        heads = block.attention_biases.shape[0]
        assert heads < 4 and block.num_heads == heads and block.out_dim == heads * 8 == block.proj.in_features
        assert block.key_dim == 8  # the decoy was not kept
    with torch.no_grad():
        got = pruned(x)
    assert torch.allclose(got, _onnx_output(pruned, x, tmp_path), atol=1e-5)


class TwoStatements(nn.Module):
    def __init__(self):
        super().__init__()
        self.rows, self.width = 4, 12

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(2, self.rows, -1)
        return x.reshape(2, self.width)


def test_a_failure_moved_to_an_earlier_line_is_not_progress():
    """Which statement fails is read from the line numbers of the module's own frames, not from the message."""
    from graphpress.passes.prune.size_repair import _further, attempt

    module, x = TwoStatements(), torch.randn(24)
    module.width = 15
    late = attempt(module, (x,), {})  # the reshape fails
    module.width, module.rows = 12, 5
    early = attempt(module, (x,), {})  # the view fails, with another message
    assert late.position and early.position and late.position[0][2] > early.position[0][2]
    assert not _further(early, late) and _further(late, early)
    module.rows, module.width = 4, 14
    assert not _further(attempt(module, (x,), {}), late)  # the same line with another number


class TableBias(nn.Module):
    """timm's relative position bias: a ``[positions, heads]`` table viewed as ``self.bias_shape``, a tuple whose
    last entry is the head count, by a method the attention calls directly (not through ``forward``)."""

    def __init__(self, heads: int = 4, tokens: int = 5):
        super().__init__()
        self.table = nn.Parameter(torch.randn(tokens * tokens, heads))
        self.bias_shape = (tokens, tokens, heads)

    def get_bias(self) -> torch.Tensor:
        return self.table.view(self.bias_shape).permute(2, 0, 1)


class TableBiasAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.num_heads = heads
        self.qkv, self.proj, self.rel_pos = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), TableBias(heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attention = (q @ k.transpose(-2, -1) + self.rel_pos.get_bias()).softmax(-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(b, n, -1))


def test_a_head_count_inside_a_stored_shape_tuple_is_rewritten(tmp_path):
    """The failure is raised in ``get_bias``, whose module is not on the forward stack: the modules whose code is
    on the traceback are searched too, and so are the elements of short integer tuples (``bias_shape[2]``)."""
    torch.manual_seed(0)
    model, x = Net(TableBiasAttention).eval(), torch.randn(2, 5, 32)
    pruned, stats = _prune(model, x)
    assert "frozen" not in stats and stats["achieved_ratio"] > 0
    assert "blocks.0.rel_pos.bias_shape[2] = table.shape[1]" in stats["size_repairs"]
    for block in pruned.blocks:
        heads = block.rel_pos.table.shape[1]
        assert heads < 4 and block.rel_pos.bias_shape == (5, 5, heads) and block.num_heads == heads
    assert model.blocks[0].rel_pos.bias_shape == (5, 5, 4)  # the user's model is untouched
    with torch.no_grad():
        got = pruned(x)
    assert torch.allclose(got, _onnx_output(pruned, x, tmp_path), atol=1e-5)


def test_shape_tuples_are_candidates_in_model_code_but_not_in_torch_layers():
    from graphpress.backends.size_attributes import read_size, size_attributes

    bias = TableBias(heads=4, tokens=5)
    assert size_attributes(bias) == {"bias_shape[0]": 5, "bias_shape[1]": 5, "bias_shape[2]": 4}
    assert read_size(bias, "bias_shape[2]") == 4 and read_size(bias, "bias_shape[7]") is None
    assert size_attributes(nn.Conv2d(4, 8, 3, padding=1)) == {"in_channels": 4, "out_channels": 8}
