"""The sparse checkpoint format: exact round trip, tied weights, smaller than dense on disk."""

import pytest
import torch
from safetensors.torch import save_file

from graphpress.errors import GraphpressError
from graphpress.sparsity import load_sparse, pack_sparse, parse_pattern, save_sparse, sparsify_model
from graphpress.sparsity.storage import unpack_sparse


@pytest.mark.parametrize("shape", [(7,), (5, 13), (3, 4, 9)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_pack_unpack_round_trip(shape, dtype):
    tensor = torch.randn(shape).to(dtype)
    tensor[torch.rand(shape) < 0.6] = 0
    mask, values = pack_sparse(tensor)
    assert mask.dtype == torch.uint8 and mask.numel() == (tensor.numel() + 7) // 8
    assert torch.equal(unpack_sparse(mask, values, shape), tensor)


def test_save_load_round_trip_is_exact_and_smaller(tmp_path, make_llama):
    model = make_llama(hidden=128, intermediate=256)
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    sparsify_model(model, parse_pattern(0.5, None), method="magnitude")
    info = save_sparse(model, tmp_path / "sparse.safetensors")
    assert info.sparse_tensors == 14  # the decoder linears; norms and embeddings stay dense
    dense_path = tmp_path / "dense.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}, dense_path)
    assert info.bytes_on_disk < 0.8 * dense_path.stat().st_size
    restored = make_llama(hidden=128, intermediate=256)
    restored.lm_head.weight = restored.model.embed_tokens.weight
    load_sparse(tmp_path / "sparse.safetensors", restored)
    for name, tensor in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name
    ids = torch.randint(0, 128, (1, 8))
    assert torch.equal(restored(ids).logits, model(ids).logits)


def test_plain_safetensors_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(GraphpressError, match="not a graphpress sparse checkpoint"):
        load_sparse(path)
