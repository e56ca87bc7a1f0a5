"""Tiny Hugging Face models of architectures beyond :mod:`.zoo`'s core list, for sweeping graphpress over
models nobody tuned it for (``benchmarks/arch_sweep.py``) and for regression tests of what such sweeps found.

Each builder makes a 2-layer model with small widths and random weights from its config class (nothing is
downloaded) and returns a :class:`~graphpress.testing.zoo.ZooCase` with example inputs.
``arch_case_names()`` lists them; ``arch_case(name)`` builds one (seeded, eval mode).
"""

from __future__ import annotations

from typing import Callable

import torch

from .zoo import ZooCase, randomize_batchnorm

__all__ = ["arch_case", "arch_case_names"]

_VOCAB, _BATCH, _SEQ = 128, 2, 8
_NO_CACHE = {"use_cache": False}


def _tokens() -> torch.Tensor:
    return torch.randint(0, _VOCAB, (_BATCH, _SEQ), generator=torch.Generator().manual_seed(1))


def _mask() -> torch.Tensor:
    mask = torch.ones(_BATCH, _SEQ, dtype=torch.long)
    mask[1, -3:] = 0  # one padded sequence, so the mask is really used
    return mask


def _image(size: int = 32) -> torch.Tensor:
    return torch.randn(_BATCH, 3, size, size, generator=torch.Generator().manual_seed(2))


def _transformers():
    import transformers

    return transformers


def _causal(config_name: str, **options) -> Callable[[], ZooCase]:
    """A causal LM from ``config_name`` with llama-style option names (most decoder configs share them)."""
    def build() -> ZooCase:
        tf = _transformers()
        base = dict(vocab_size=_VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=64)
        config = getattr(tf, config_name)(**{**base, **options})
        model = tf.AutoModelForCausalLM.from_config(config)
        return ZooCase(config_name, model, {"input_ids": _tokens()}, dict(_NO_CACHE))
    return build


def _causal_raw(config_name: str, **options) -> Callable[[], ZooCase]:
    """A causal LM whose config uses its own option names (GPT-2 style ``n_embd``/``n_layer``...)."""
    def build() -> ZooCase:
        tf = _transformers()
        config = getattr(tf, config_name)(vocab_size=_VOCAB, **options)
        model = tf.AutoModelForCausalLM.from_config(config)
        return ZooCase(config_name, model, {"input_ids": _tokens()}, dict(_NO_CACHE))
    return build


def _encoder(config_name: str, model_name: str, mask: bool = True, **options) -> Callable[[], ZooCase]:
    """A text encoder (``input_ids`` and, if ``mask``, a padded ``attention_mask``)."""
    def build() -> ZooCase:
        tf = _transformers()
        config = getattr(tf, config_name)(vocab_size=_VOCAB, **options)
        inputs = {"input_ids": _tokens(), **({"attention_mask": _mask()} if mask else {})}
        return ZooCase(model_name, getattr(tf, model_name)(config), inputs)
    return build


def _vision(config_name: str, model_name: str, size: int = 32, **options) -> Callable[[], ZooCase]:
    def build() -> ZooCase:
        tf = _transformers()
        config = getattr(tf, config_name)(image_size=size, **options)
        model = randomize_batchnorm(getattr(tf, model_name)(config))  # default BN init can zero an output
        return ZooCase(model_name, model, {"pixel_values": _image(size)})
    return build


def _whisper_encoder() -> ZooCase:
    tf = _transformers()
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = tf.WhisperConfig(vocab_size=_VOCAB, d_model=64, encoder_layers=2, encoder_attention_heads=4,
                              encoder_ffn_dim=96, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=96,
                              num_mel_bins=16, max_source_positions=16, max_target_positions=16)
    features = torch.randn(_BATCH, 16, 32, generator=torch.Generator().manual_seed(3))
    return ZooCase("whisper_encoder", WhisperEncoder(config), {"input_features": features})


def _t5_encoder() -> ZooCase:
    tf = _transformers()
    config = tf.T5Config(vocab_size=_VOCAB, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4)
    return ZooCase("t5_encoder", tf.T5EncoderModel(config), {"input_ids": _tokens(), "attention_mask": _mask()})


_TEXT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
             max_position_embeddings=64)
_VIT = dict(patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)

_BUILDERS: dict[str, Callable[[], ZooCase]] = {
    # decoders
    "opt": _causal_raw("OPTConfig", hidden_size=64, num_hidden_layers=2, ffn_dim=96, num_attention_heads=4,
                       max_position_embeddings=64, word_embed_proj_dim=64),
    "gpt_neox": _causal("GPTNeoXConfig"),
    "falcon": _causal_raw("FalconConfig", hidden_size=64, num_hidden_layers=2, num_attention_heads=4),
    "falcon_new": _causal_raw("FalconConfig", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              new_decoder_architecture=True, num_kv_heads=2),
    "bloom": _causal_raw("BloomConfig", hidden_size=64, n_layer=2, n_head=4),
    "gptj": _causal_raw("GPTJConfig", n_embd=64, n_layer=2, n_head=4, n_inner=96, rotary_dim=8, n_positions=64),
    "stablelm": _causal("StableLmConfig", num_key_value_heads=2),
    "phi": _causal("PhiConfig"),
    "starcoder2": _causal("Starcoder2Config", num_key_value_heads=2),
    "olmo": _causal("OlmoConfig"),
    "olmo2": _causal("Olmo2Config", num_key_value_heads=2),
    "cohere": _causal("CohereConfig", num_key_value_heads=2),
    "gemma2": _causal("Gemma2Config", num_key_value_heads=2, head_dim=16),
    "gemma3_text": _causal("Gemma3TextConfig", num_key_value_heads=2, head_dim=16, sliding_window=4),
    "granite": _causal("GraniteConfig", num_key_value_heads=2),
    "mistral": _causal("MistralConfig", num_key_value_heads=2),
    "qwen2": _causal("Qwen2Config", num_key_value_heads=2),
    "qwen3": _causal("Qwen3Config", num_key_value_heads=2, head_dim=16),
    "phi3": _causal("Phi3Config", num_key_value_heads=2, pad_token_id=0),
    "smollm3": _causal("SmolLM3Config", num_key_value_heads=2, pad_token_id=0),
    "exaone4": _causal("Exaone4Config", num_key_value_heads=2),
    "gpt_bigcode": _causal_raw("GPTBigCodeConfig", n_embd=64, n_layer=2, n_head=4, n_positions=64),
    "mixtral": _causal("MixtralConfig", num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": _causal("Qwen2MoeConfig", num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                         moe_intermediate_size=32, shared_expert_intermediate_size=48),
    "llama4_text": _causal("Llama4TextConfig", num_key_value_heads=2, head_dim=16, num_local_experts=2,
                           intermediate_size_mlp=96),
    "mamba": _causal_raw("MambaConfig", hidden_size=64, num_hidden_layers=2, state_size=8),
    # encoders
    "distilbert": _encoder("DistilBertConfig", "DistilBertModel", dim=64, n_layers=2, n_heads=4, hidden_dim=96,
                           max_position_embeddings=64),
    "roberta": _encoder("RobertaConfig", "RobertaModel", **{**_TEXT, "max_position_embeddings": 66}),
    "deberta_v2": _encoder("DebertaV2Config", "DebertaV2Model", **_TEXT),
    "albert": _encoder("AlbertConfig", "AlbertModel", embedding_size=32, **_TEXT),
    "electra": _encoder("ElectraConfig", "ElectraModel", embedding_size=32, **_TEXT),
    "t5_encoder": _t5_encoder,
    "whisper_encoder": _whisper_encoder,
    "clip_text": _encoder("CLIPTextConfig", "CLIPTextModel", **_TEXT),
    "modernbert": _encoder("ModernBertConfig", "ModernBertModel", pad_token_id=0, **_TEXT),
    # vision
    "clip_vision": _vision("CLIPVisionConfig", "CLIPVisionModel", **_VIT),
    "deit": _vision("DeiTConfig", "DeiTModel", **_VIT),
    "dinov2": _vision("Dinov2Config", "Dinov2Model", **_VIT),
    "beit": _vision("BeitConfig", "BeitModel", **_VIT),
    "swin": _vision("SwinConfig", "SwinModel", patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4],
                    window_size=4),
    "convnext": _vision("ConvNextConfig", "ConvNextModel", num_stages=2, hidden_sizes=[16, 32], depths=[1, 1],
                        layer_scale_init_value=1.0),  # the default 1e-6 hides the blocks' linears
    "mobilevit": _vision("MobileViTConfig", "MobileViTModel", size=64, hidden_sizes=[32, 48, 64],
                         neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64], num_attention_heads=2),
    "segformer": _vision("SegformerConfig", "SegformerModel", num_encoder_blocks=2, depths=[1, 1],
                         sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2],
                         num_attention_heads=[1, 2], mlp_ratios=[2, 2]),
    "resnet_hf": _vision("ResNetConfig", "ResNetModel", embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                         layer_type="basic"),
}


def arch_case_names() -> list[str]:
    return list(_BUILDERS)


def arch_case(name: str, seed: int = 0) -> ZooCase:
    """Build the named tiny architecture (eval mode, weights seeded by ``seed``) with its example inputs."""
    if name not in _BUILDERS:
        raise KeyError(f"no architecture {name!r}; choose one of {', '.join(_BUILDERS)}")
    torch.manual_seed(seed)
    case = _BUILDERS[name]()
    case.model.eval()
    return case
