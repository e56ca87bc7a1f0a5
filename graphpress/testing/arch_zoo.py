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


def _tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, _VOCAB, (_BATCH, _SEQ), generator=torch.Generator().manual_seed(seed))


def _mask() -> torch.Tensor:
    mask = torch.ones(_BATCH, _SEQ, dtype=torch.long)
    mask[1, -3:] = 0  # one padded sequence, so the mask is really used
    return mask



def _mask_of(length: int) -> Callable[[], torch.Tensor]:
    """A factory of a padding mask over ``length`` frames (the second sequence padded by a quarter)."""
    def make() -> torch.Tensor:
        mask = torch.ones(_BATCH, length, dtype=torch.long)
        mask[1, -length // 4:] = 0
        return mask
    return make

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
        config = getattr(tf, config_name)(**{"image_size": size, **options})
        model = randomize_batchnorm(getattr(tf, model_name)(config))  # default BN init can zero an output
        return ZooCase(model_name, model, {"pixel_values": _image(size)})
    return build


def _seq2seq(config_name: str, **options) -> Callable[[], ZooCase]:
    """An encoder-decoder LM: a padded source sentence and a target prefix (``decoder_input_ids``)."""
    def build() -> ZooCase:
        tf = _transformers()
        model = tf.AutoModelForSeq2SeqLM.from_config(getattr(tf, config_name)(vocab_size=_VOCAB, **options))
        inputs = {"input_ids": _tokens(), "attention_mask": _mask(), "decoder_input_ids": _tokens(seed=4)}
        return ZooCase(config_name, model, inputs, dict(_NO_CACHE))
    return build


def _audio(config_name: str, model_name: str, **options) -> Callable[[], ZooCase]:
    """A raw-waveform speech encoder (convolutional feature extractor, then a transformer)."""
    def build() -> ZooCase:
        tf = _transformers()
        config = getattr(tf, config_name)(**{**_AUDIO, **options})
        samples = torch.randn(_BATCH, 800, generator=torch.Generator().manual_seed(3))
        return ZooCase(model_name, getattr(tf, model_name)(config), {"input_values": samples})
    return build


def _model(config_name: str, model_name: str, inputs: Callable, call: dict | None = None,
           **options) -> Callable[[], ZooCase]:
    """Any model from its config class (``options``, sub-configs as dicts with their ``model_type``) with the
    inputs ``inputs(model)`` builds: what the families of the third sweep (vision-language, detection, speech
    and contrastive models, each with its own inputs) share."""
    def build() -> ZooCase:
        tf = _transformers()
        config = getattr(tf, config_name)(**options)
        model = randomize_batchnorm(getattr(tf, model_name)(config))
        return ZooCase(model_name, model, inputs(model.eval()), dict(call or {}))
    return build


def _prompt(image_tokens: int, image_id: int = _VOCAB - 1, before: tuple[int, ...] = (),
            after: tuple[int, ...] = ()) -> torch.Tensor:
    """Token ids of a vision-language prompt: ``before``, ``image_tokens`` image placeholders, ``after``, then
    text (ids below ``_VOCAB - 8``, so no text token is taken for a special one)."""
    text = torch.randint(0, _VOCAB - 8, (_BATCH, _SEQ), generator=torch.Generator().manual_seed(1))
    special = [*before, *[image_id] * image_tokens, *after]
    return torch.cat([torch.tensor(special, dtype=torch.long).expand(_BATCH, -1), text], 1)


def _vlm(config_name: str, image_tokens: int, size: int = 32, id_key: str | None = "image_token_id",
         extra: Callable | None = None, before=(), after=(), **options) -> Callable[[], ZooCase]:
    """A vision-language model: ``image_tokens`` placeholders (id ``_VOCAB - 1`` under the config's ``id_key``)
    and text, one ``size``-pixel image per prompt (``extra(model, inputs)`` adds or replaces inputs)."""
    def inputs(model) -> dict:
        out = {"input_ids": _prompt(image_tokens, before=before, after=after), "pixel_values": _image(size)}
        return {**out, **(extra(model, out) if extra else {})}
    model_name = config_name.replace("Config", "ForConditionalGeneration")
    return _model(config_name, model_name, inputs, dict(_NO_CACHE), **{**({id_key: _VOCAB - 1} if id_key else {}),
                                                                       **options})


def _prefix_types(model, inputs: dict) -> dict:
    """PaliGemma's ``token_type_ids`` (0: image and prompt, attended both ways; 1: the suffix), as its processor
    makes them. Without them its eager forward skips the mask and runs the text model bidirectionally, while
    ``torch.export`` (any tracing) builds a causal one: the two programs differ by 7%, the model's own
    inconsistency."""
    types = torch.zeros(_BATCH, 16 + _SEQ, dtype=torch.long)
    types[:, -_SEQ // 2:] = 1
    return {"token_type_ids": types}


def _mrope(model, inputs: dict) -> dict:
    """Qwen2-VL style inputs: each image as 4x4 flattened patches of 8 px over 2 frames (``image_grid_thw``),
    and the M-RoPE positions of the prompt, computed here by the model's own ``get_rope_index`` from the token
    types its processor returns (its forward computes them in Python, ``.tolist()`` of the token types)."""
    grid = torch.tensor([[1, 4, 4]] * _BATCH)
    patches = torch.randn(_BATCH * 16, 3 * 2 * 8 * 8, generator=torch.Generator().manual_seed(2))
    ids = inputs["input_ids"]
    positions, _ = model.model.get_rope_index(ids, (ids == _VOCAB - 1).int(), image_grid_thw=grid,
                                              attention_mask=torch.ones_like(ids))
    return {"pixel_values": patches, "image_grid_thw": grid, "position_ids": positions}


def _tiles(model, inputs: dict) -> dict:
    """Mllama's one image of one tile per prompt, its aspect-ratio ids and masks, and a cross-attention mask."""
    return {"pixel_values": inputs["pixel_values"][:, None, None], "aspect_ratio_ids": torch.ones(_BATCH, 1,
            dtype=torch.long), "aspect_ratio_mask": torch.ones(_BATCH, 1, 1, dtype=torch.long),
            "cross_attention_mask": torch.ones(_BATCH, inputs["input_ids"].shape[1], 1, 1, dtype=torch.long)}


def _pair(config_name: str, model_name: str, size: int = 32, **options) -> Callable[[], ZooCase]:
    """A contrastive text-image model (CLIP style, OWL-ViT's detector too): padded text and an image."""
    def inputs(model) -> dict:
        return {"input_ids": _tokens(), "attention_mask": _mask(), "pixel_values": _image(size)}
    return _model(config_name, model_name, inputs, **options)


def _pixels(size: int = 64, **extra: Callable) -> Callable:
    """Inputs of an image model: one batch of ``size``-pixel images, plus ``extra`` inputs (name -> tensor
    factory)."""
    return lambda model: {"pixel_values": _image(size), **{k: make() for k, make in extra.items()}}


def _speech(key: str, shape: tuple[int, ...], **extra: Callable) -> Callable:
    """Inputs of a speech or audio encoder-decoder: random ``key`` features of ``shape`` and a target prefix."""
    def inputs(model) -> dict:
        features = torch.randn(shape, generator=torch.Generator().manual_seed(3))
        return {key: features, "decoder_input_ids": _tokens(seed=4), **{k: make() for k, make in extra.items()}}
    return inputs


def _flattened_patches(model) -> dict:
    """Pix2Struct's input: 16 patches of 4x4 px, each its row and column (1-based) then its 48 pixel values."""
    rows, cols = torch.arange(16) // 4 + 1, torch.arange(16) % 4 + 1
    pixels = torch.randn(_BATCH, 16, 48, generator=torch.Generator().manual_seed(2))
    places = torch.stack([rows, cols], -1).float().expand(_BATCH, -1, -1)
    return {"flattened_patches": torch.cat([places, pixels], -1), "attention_mask": torch.ones(_BATCH, 16,
            dtype=torch.long), "decoder_input_ids": _tokens(seed=4)}


def _image_to_text(decoder: dict) -> Callable[[], ZooCase]:
    """A VisionEncoderDecoderModel: a ViT encoder and the text decoder ``decoder`` (a config dict with its
    ``model_type``), given an image and a target prefix (TrOCR, image captioning)."""
    def build() -> ZooCase:
        tf = _transformers()
        encoder = tf.ViTConfig(image_size=32, **_VIT)
        config = tf.VisionEncoderDecoderConfig.from_encoder_decoder_configs(
            encoder, tf.AutoConfig.for_model(**decoder, is_decoder=True, add_cross_attention=True))
        config.decoder_start_token_id, config.pad_token_id = 0, 0
        model = tf.VisionEncoderDecoderModel(config)
        return ZooCase(decoder["model_type"], model, {"pixel_values": _image(32), "decoder_input_ids": _tokens(4)},
                       dict(_NO_CACHE))
    return build


def _vit_mae() -> ZooCase:
    """ViT-MAE shuffles its patches by a random ``noise`` drawn in each forward unless given one: fixed here, or
    two runs of the same model would differ."""
    case = _vision("ViTMAEConfig", "ViTMAEModel", mask_ratio=0.0, **_VIT)()
    patches = (32 // _VIT["patch_size"]) ** 2
    case.inputs["noise"] = torch.rand(_BATCH, patches, generator=torch.Generator().manual_seed(5))
    return case


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
_MLA = dict(moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
            first_k_dense_replace=1, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16,
            n_group=1, topk_group=1, num_key_value_heads=4)
_SEQ2SEQ = dict(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
                encoder_ffn_dim=96, decoder_ffn_dim=96, max_position_embeddings=64)
_T5 = dict(d_model=64, d_kv=16, d_ff=96, num_layers=1, num_decoder_layers=1, num_heads=4, decoder_start_token_id=0)
_AUDIO = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, conv_dim=(16, 16),
              conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
_VIT = dict(patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)

_LLAMA = dict(model_type="llama", vocab_size=_VOCAB, num_key_value_heads=2, **_TEXT)
_CLIP_VISION = dict(model_type="clip_vision_model", image_size=32, **_VIT)
_SIGLIP_VISION = dict(model_type="siglip_vision_model", image_size=32, **_VIT)

_QWEN_VL_TEXT = dict(_LLAMA, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                               "mrope_section": [2, 3, 3]})
_QWEN_VL_IDS = dict(image_token_id=_VOCAB - 1, video_token_id=_VOCAB - 5, vision_start_token_id=_VOCAB - 4,
                    vision_end_token_id=_VOCAB - 3)
_BART = dict(model_type="bart", vocab_size=_VOCAB, **_SEQ2SEQ)

_RESNET = dict(model_type="resnet", embedding_size=16, hidden_sizes=[16, 32, 32, 64], depths=[1, 1, 1, 1],
               layer_type="basic")
_DETR = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=64, decoder_ffn_dim=64,
             encoder_attention_heads=4, decoder_attention_heads=4, num_queries=8, num_labels=4)
_SWIN = dict(model_type="swin", image_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
             window_size=2)
_DPT_NECK = dict(neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16)
_SMALL_VIT = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, patch_size=8,
                  image_size=32)
_OWL = dict(text_config=dict(vocab_size=_VOCAB, max_position_embeddings=16, **{k: v for k, v in _TEXT.items()
                                                                                if k != "max_position_embeddings"}),
            vision_config=dict(_VIT, image_size=32), projection_dim=64)

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
    # decoders of the second sweep: latent attention, more MoE routers, hybrids of attention with state-space
    # or convolution layers, and the older GPT-style families
    "deepseek_v3": _causal("DeepseekV3Config", **_MLA, q_lora_rank=32),
    "deepseek_v2": _causal("DeepseekV2Config", **_MLA, q_lora_rank=None),
    "qwen3_moe": _causal("Qwen3MoeConfig", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                         head_dim=16, num_key_value_heads=2),
    "olmoe": _causal("OlmoeConfig", num_experts=4, num_experts_per_tok=2, num_key_value_heads=2),
    "glm4": _causal("Glm4Config", num_key_value_heads=2, head_dim=16, pad_token_id=0),
    "gpt_oss": _causal("GptOssConfig", num_local_experts=4, num_experts_per_tok=2, head_dim=16,
                       num_key_value_heads=2, sliding_window=4),
    "granitemoe": _causal("GraniteMoeConfig", num_local_experts=4, num_experts_per_tok=2, num_key_value_heads=2),
    "phimoe": _causal("PhimoeConfig", num_local_experts=4, num_experts_per_tok=2, num_key_value_heads=2),
    "jetmoe": _causal("JetMoeConfig", num_local_experts=4, num_experts_per_tok=2, kv_channels=16),
    "nemotron": _causal("NemotronConfig", num_key_value_heads=2, head_dim=16),
    "gemma": _causal("GemmaConfig", num_key_value_heads=1, head_dim=16),
    "cohere2": _causal("Cohere2Config", num_key_value_heads=2, sliding_window=4),
    "ernie4_5": _causal("Ernie4_5Config", num_key_value_heads=2, head_dim=16),
    "helium": _causal("HeliumConfig", num_key_value_heads=2, head_dim=16),
    "hunyuan_v1_dense": _causal("HunYuanDenseV1Config", num_key_value_heads=2, head_dim=16),
    "seed_oss": _causal("SeedOssConfig", num_key_value_heads=2, head_dim=16),
    "apertus": _causal("ApertusConfig", num_key_value_heads=2),
    "arcee": _causal("ArceeConfig", num_key_value_heads=2),
    "diffllama": _causal("DiffLlamaConfig", num_key_value_heads=2),
    "bitnet": _causal("BitNetConfig", num_key_value_heads=2),
    "lfm2": _causal("Lfm2Config", num_key_value_heads=2, layer_types=["conv", "full_attention"]),
    "minimax": _causal("MiniMaxConfig", num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                       head_dim=16, layer_types=["linear_attention", "full_attention"]),
    "qwen3_next": _causal("Qwen3NextConfig", num_key_value_heads=2, head_dim=16, num_experts=4,
                          num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
                          linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=16,
                          linear_value_head_dim=16, layer_types=["linear_attention", "full_attention"]),
    "falcon_h1": _causal("FalconH1Config", num_key_value_heads=2, head_dim=16, mamba_d_ssm=64, mamba_n_heads=4,
                         mamba_d_head=16, mamba_d_state=8, mamba_n_groups=1),
    "bamba": _causal("BambaConfig", num_key_value_heads=2, mamba_n_heads=8, mamba_d_head=16, mamba_d_state=8,
                     mamba_n_groups=1, attn_layer_indices=[1]),
    "granitemoehybrid": _causal("GraniteMoeHybridConfig", num_local_experts=4, num_experts_per_tok=2,
                                num_key_value_heads=2, mamba_n_heads=8, mamba_d_head=16, mamba_d_state=8,
                                mamba_n_groups=1, layer_types=["mamba", "attention"]),
    "jamba": _causal("JambaConfig", num_key_value_heads=2, num_experts=2, num_experts_per_tok=1,
                     attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
                     mamba_d_state=8, mamba_expand=2, use_mamba_kernels=False),
    "recurrent_gemma": _causal("RecurrentGemmaConfig", num_key_value_heads=1, lru_width=64,
                               attention_window_size=4, block_types=["recurrent", "attention"]),
    "mamba2": _causal_raw("Mamba2Config", hidden_size=64, num_hidden_layers=2, state_size=8, num_heads=8,
                          head_dim=16, n_groups=1, expand=2),
    "rwkv": _causal_raw("RwkvConfig", hidden_size=64, num_hidden_layers=2, attention_hidden_size=64,
                        intermediate_size=96, context_length=64),
    "xlstm": _causal_raw("xLSTMConfig", hidden_size=64, num_hidden_layers=2, num_heads=4),
    "gpt_neo": _causal_raw("GPTNeoConfig", hidden_size=64, num_layers=2, num_heads=4, window_size=4,
                           attention_types=[[["global", "local"], 1]], max_position_embeddings=64),
    "codegen": _causal_raw("CodeGenConfig", n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=64,
                           n_ctx=64),
    "mpt": _causal_raw("MptConfig", d_model=64, n_layers=2, n_heads=4, max_seq_len=64),
    "xglm": _causal_raw("XGLMConfig", d_model=64, num_layers=2, attention_heads=4, ffn_dim=96,
                        max_position_embeddings=64),
    "biogpt": _causal_raw("BioGptConfig", **_TEXT),
    "persimmon": _causal_raw("PersimmonConfig", **_TEXT),
    "openai_gpt": _causal_raw("OpenAIGPTConfig", n_embd=64, n_layer=2, n_head=4, n_positions=64),
    "ctrl": _causal_raw("CTRLConfig", n_embd=64, n_layer=2, n_head=4, dff=96, n_positions=64),
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
    # encoders of the second sweep: grouped and dynamic convolutions, bottlenecks, pooling between blocks,
    # relative and rotary positions
    "mpnet": _encoder("MPNetConfig", "MPNetModel", **_TEXT),
    "convbert": _encoder("ConvBertConfig", "ConvBertModel", embedding_size=64, **_TEXT),
    "funnel": _encoder("FunnelConfig", "FunnelModel", d_model=64, n_head=4, d_head=16, d_inner=96,
                       block_sizes=[1, 1], num_decoder_layers=1),
    "mobilebert": _encoder("MobileBertConfig", "MobileBertModel", embedding_size=32, intra_bottleneck_size=32,
                           num_feedforward_networks=2, true_hidden_size=32, **_TEXT),
    "nomic_bert": _encoder("NomicBertConfig", "NomicBertModel", **_TEXT),
    "esm": _encoder("EsmConfig", "EsmModel", pad_token_id=1, position_embedding_type="rotary", **_TEXT),
    "squeezebert": _encoder("SqueezeBertConfig", "SqueezeBertModel", embedding_size=64, q_groups=2, k_groups=2,
                            v_groups=2, post_attention_groups=2, intermediate_groups=4, output_groups=2, **_TEXT),
    "rembert": _encoder("RemBertConfig", "RemBertModel", input_embedding_size=32, output_embedding_size=32, **_TEXT),
    "roformer": _encoder("RoFormerConfig", "RoFormerModel", embedding_size=64, **_TEXT),
    "deberta": _encoder("DebertaConfig", "DebertaModel", **_TEXT),
    "xlnet": _encoder("XLNetConfig", "XLNetModel", d_model=64, n_layer=2, n_head=4, d_inner=96),
    "eurobert": _encoder("EuroBertConfig", "EuroBertModel", num_key_value_heads=2, pad_token_id=0, **_TEXT),
    "flaubert": _encoder("FlaubertConfig", "FlaubertModel", emb_dim=64, n_layers=2, n_heads=4),
    "ibert": _encoder("IBertConfig", "IBertModel", **{**_TEXT, "max_position_embeddings": 66}),
    "big_bird": _encoder("BigBirdConfig", "BigBirdModel", attention_type="original_full", **_TEXT),
    # encoder-decoders
    "bart": _seq2seq("BartConfig", **_SEQ2SEQ),
    "mbart": _seq2seq("MBartConfig", **_SEQ2SEQ),
    "marian": _seq2seq("MarianConfig", pad_token_id=0, decoder_start_token_id=0, **_SEQ2SEQ),
    "pegasus": _seq2seq("PegasusConfig", **_SEQ2SEQ),
    "m2m_100": _seq2seq("M2M100Config", **_SEQ2SEQ),
    "led": _seq2seq("LEDConfig", max_encoder_position_embeddings=64, max_decoder_position_embeddings=64,
                    attention_window=[4], **{k: v for k, v in _SEQ2SEQ.items() if k != "max_position_embeddings"}),
    "t5": _seq2seq("T5Config", **_T5),
    "mt5": _seq2seq("MT5Config", **_T5),
    "umt5": _seq2seq("UMT5Config", **_T5),
    "longt5": _seq2seq("LongT5Config", **_T5),
    "switch_transformers": _seq2seq("SwitchTransformersConfig", **{**_T5, "num_layers": 2, "num_decoder_layers": 2},
                                    num_experts=4, encoder_sparse_step=2, decoder_sparse_step=2),
    # speech encoders on raw waveforms
    "wav2vec2": _audio("Wav2Vec2Config", "Wav2Vec2Model"),
    "hubert": _audio("HubertConfig", "HubertModel"),
    "wavlm": _audio("WavLMConfig", "WavLMModel", num_buckets=16, max_bucket_distance=32),
    "data2vec_audio": _audio("Data2VecAudioConfig", "Data2VecAudioModel", conv_pos_kernel_size=5,
                             num_conv_pos_embeddings=5),
    "sew": _audio("SEWConfig", "SEWModel", squeeze_factor=2),
    "wav2vec2_conformer": _audio("Wav2Vec2ConformerConfig", "Wav2Vec2ConformerModel", conv_depthwise_kernel_size=3),
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
    # vision models of the second sweep
    "mobilenet_v2": _vision("MobileNetV2Config", "MobileNetV2Model", depth_multiplier=0.35),
    "mobilenet_v1": _vision("MobileNetV1Config", "MobileNetV1Model", depth_multiplier=0.25),
    "efficientnet": _vision("EfficientNetConfig", "EfficientNetModel", width_coefficient=0.25,
                            depth_coefficient=0.25, hidden_dim=320),
    "regnet": _vision("RegNetConfig", "RegNetModel", embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                      groups_width=8),
    "bit": _vision("BitConfig", "BitModel", embedding_size=32, hidden_sizes=[32, 64], depths=[1, 1],
                   layer_type="bottleneck", num_groups=8),
    "poolformer": _vision("PoolFormerConfig", "PoolFormerModel", hidden_sizes=[16, 32], depths=[1, 1],
                          num_encoder_blocks=2, patch_sizes=[7, 3], strides=[4, 2], padding=[2, 1]),
    "pvt_v2": _vision("PvtV2Config", "PvtV2Model", hidden_sizes=[16, 32], depths=[1, 1], num_encoder_blocks=2,
                      sr_ratios=[2, 1], num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2],
                      mlp_ratios=[2, 2]),
    "convnextv2": _vision("ConvNextV2Config", "ConvNextV2Model", num_stages=2, hidden_sizes=[16, 32], depths=[1, 1]),
    "focalnet": _vision("FocalNetConfig", "FocalNetModel", embed_dim=16, depths=[1, 1], patch_size=4),
    "swinv2": _vision("Swinv2Config", "Swinv2Model", patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4],
                      window_size=4),
    "mobilevitv2": _vision("MobileViTV2Config", "MobileViTV2Model", size=64, width_multiplier=0.5),
    "glpn": _vision("GLPNConfig", "GLPNModel", num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                    hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
                    mlp_ratios=[2, 2]),
    "swiftformer": _vision("SwiftFormerConfig", "SwiftFormerModel", depths=[1, 1], embed_dims=[16, 32],
                           downsamples=[True, True], mlp_ratio=2),
    "dinov3_vit": _vision("DINOv3ViTConfig", "DINOv3ViTModel", num_register_tokens=2, **_VIT),
    "siglip_vision": _vision("SiglipVisionConfig", "SiglipVisionModel", **_VIT),
    "vit_mae": _vit_mae,
    "yolos": _vision("YolosConfig", "YolosModel", num_detection_tokens=4, image_size=[32, 32], **_VIT),
    "data2vec_vision": _vision("Data2VecVisionConfig", "Data2VecVisionModel", **_VIT),
    "vitdet": _vision("VitDetConfig", "VitDetModel", pretrain_image_size=32, **_VIT),
    "resnet_hf": _vision("ResNetConfig", "ResNetModel", embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                         layer_type="basic"),
    # vision-language models of the third sweep: image placeholders in the prompt, one tiny image each
    "llava": _vlm("LlavaConfig", 16, id_key="image_token_index", vision_config=_CLIP_VISION, text_config=_LLAMA),
    "paligemma": _vlm("PaliGemmaConfig", 16, id_key="image_token_index", extra=_prefix_types,
                      vision_config=_SIGLIP_VISION,
                      projection_dim=64, text_config=dict(_LLAMA, model_type="gemma", head_dim=16)),
    "gemma3": _vlm("Gemma3Config", 4, id_key="image_token_index", before=(_VOCAB - 3,), after=(_VOCAB - 2,),
                   boi_token_index=_VOCAB - 3, eoi_token_index=_VOCAB - 2, mm_tokens_per_image=4,
                   vision_config=_SIGLIP_VISION, text_config=dict(_LLAMA, model_type="gemma3_text", head_dim=16,
                                                                  sliding_window=4)),
    "aya_vision": _vlm("AyaVisionConfig", 4, id_key="image_token_index", vision_config=_SIGLIP_VISION,
                       vision_feature_select_strategy="full", text_config=dict(_LLAMA, model_type="cohere2",
                                                                               sliding_window=4)),
    "mistral3": _vlm("Mistral3Config", 4, id_key="image_token_index", extra=lambda model, inputs: {
        "image_sizes": torch.tensor([[32, 32]] * _BATCH)}, text_config=dict(_LLAMA, model_type="mistral"),
        vision_config=dict(_VIT, model_type="pixtral", image_size=32, head_dim=16)),
    "smolvlm": _vlm("SmolVLMConfig", 4, extra=lambda model, inputs: {"pixel_values": inputs["pixel_values"][:, None]},
                    vision_config=dict(_VIT, image_size=32), text_config=_LLAMA, scale_factor=2),
    "qwen2_vl": _vlm("Qwen2VLConfig", 4, before=(_VOCAB - 4,), after=(_VOCAB - 3,), extra=_mrope,
                     text_config=dict(_QWEN_VL_TEXT, model_type="qwen2_vl_text"), **_QWEN_VL_IDS,
                     vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, patch_size=8, mlp_ratio=2)),
    "qwen2_5_vl": _vlm("Qwen2_5_VLConfig", 4, before=(_VOCAB - 4,), after=(_VOCAB - 3,), extra=_mrope,
                       text_config=dict(_QWEN_VL_TEXT, model_type="qwen2_5_vl_text"), **_QWEN_VL_IDS,
                       vision_config=dict(depth=2, hidden_size=32, out_hidden_size=64, intermediate_size=64,
                                          num_heads=2, patch_size=8, window_size=32, fullatt_block_indexes=[1])),
    "mllama": _vlm("MllamaConfig", 1, id_key="image_token_index", extra=_tiles, text_config=dict(
        _LLAMA, model_type="mllama_text_model", cross_attention_layers=[1], pad_token_id=0), vision_config=dict(
        hidden_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=4, intermediate_size=64,
        vision_output_dim=64, image_size=32, patch_size=8, max_num_tiles=1, intermediate_layers_indices=[0],
        supported_aspect_ratios=[[1, 1]])),
    "blip2": _vlm("Blip2Config", 4, id_key="image_token_index", num_query_tokens=4,
                  vision_config=dict(_VIT, image_size=32), text_config=dict(
                      model_type="opt", vocab_size=_VOCAB, hidden_size=64, ffn_dim=96, num_hidden_layers=2,
                      num_attention_heads=4, word_embed_proj_dim=64, max_position_embeddings=64),
                  qformer_config=dict(_TEXT, vocab_size=_VOCAB, encoder_hidden_size=64, cross_attention_frequency=1)),
    "kosmos2": _vlm("Kosmos2Config", 0, id_key=None, latent_query_num=4, extra=lambda model, inputs: {
        "image_embeds_position_mask": torch.tensor([[0] + [1] * 4 + [0] * (_SEQ - 5)] * _BATCH),
        "input_ids": inputs["input_ids"][:, :_SEQ]}, text_config=dict(vocab_size=_VOCAB, embed_dim=64, layers=2,
        ffn_dim=96, attention_heads=4, max_position_embeddings=64), vision_config=dict(_VIT, image_size=32)),
    "florence2": _vlm("Florence2Config", 17, extra=lambda model, inputs: {"decoder_input_ids": _tokens(seed=4)},
                      text_config=_BART, vision_config=dict(
                          depths=[1, 1], embed_dim=[16, 32], num_heads=[1, 2], num_groups=[1, 2], patch_size=[7, 3],
                          patch_stride=[4, 2], patch_padding=[3, 1], patch_prenorm=[False, True], window_size=2,
                          projection_dim=64)),
    # detection, segmentation and depth models of the third sweep (HF backbones, 32-64 px images)
    "detr": _model("DetrConfig", "DetrForObjectDetection", _pixels(), backbone_config=dict(
        _RESNET, out_features=["stage4"]), **_DETR),
    "conditional_detr": _model("ConditionalDetrConfig", "ConditionalDetrForObjectDetection", _pixels(),
                               backbone_config=dict(_RESNET, out_features=["stage4"]), **_DETR),
    "rt_detr": _model("RTDetrConfig", "RTDetrForObjectDetection", _pixels(), backbone_config=dict(
        _RESNET, model_type="rt_detr_resnet", out_features=["stage2", "stage3", "stage4"]),
        encoder_in_channels=[32, 32, 64], encoder_hidden_dim=32,
        decoder_in_channels=[32, 32, 32], decoder_n_points=2, **_DETR),
    "dpt": _model("DPTConfig", "DPTForDepthEstimation", _pixels(32), backbone_out_indices=[0, 1, 2, 3],
                  **_SMALL_VIT, **_DPT_NECK),
    "depth_anything": _model("DepthAnythingConfig", "DepthAnythingForDepthEstimation", _pixels(32), patch_size=8,
                             backbone_config=dict(_SMALL_VIT, model_type="dinov2", out_indices=[1, 2, 3, 4],
                                                  reshape_hidden_states=False),
                             reassemble_hidden_size=32, head_hidden_size=8, **_DPT_NECK),
    "upernet": _model("UperNetConfig", "UperNetForSemanticSegmentation", _pixels(), hidden_size=16,
                      auxiliary_channels=8, num_labels=4, backbone_config=dict(
                          model_type="convnext", hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                          out_features=["stage1", "stage2", "stage3", "stage4"])),
    "mask2former": _model("Mask2FormerConfig", "Mask2FormerForUniversalSegmentation", _pixels(), backbone_config=dict(
        _SWIN, out_features=["stage1", "stage2", "stage3", "stage4"]), feature_size=32, mask_feature_size=32, hidden_dim=32,
        encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=2, num_attention_heads=2, dim_feedforward=32,
        num_queries=4, num_labels=3),
    "grounding_dino": _model("GroundingDinoConfig", "GroundingDinoForObjectDetection", _pixels(
        input_ids=_tokens, attention_mask=lambda: torch.ones(_BATCH, _SEQ, dtype=torch.long)), backbone_config=dict(
        _SWIN, out_features=["stage2", "stage3", "stage4"]), text_config=dict(_TEXT, model_type="bert",
        vocab_size=_VOCAB), num_feature_levels=3, encoder_n_points=2, decoder_n_points=2, max_text_len=_SEQ,
        **{**_DETR, "decoder_layers": 2}),  # one decoder layer breaks its own tie_weights_keys
    "sam": _model("SamConfig", "SamModel", _pixels(
        input_points=lambda: torch.tensor([[[[20.0, 30.0]]], [[[40.0, 10.0]]]]),
        input_labels=lambda: torch.ones(_BATCH, 1, 1, dtype=torch.long)),
        vision_config=dict(hidden_size=64, output_channels=32, num_hidden_layers=2, num_attention_heads=4,
                           image_size=64, patch_size=8, window_size=4, global_attn_indexes=[1], mlp_dim=96,
                           num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=4, iou_head_hidden_dim=32)),
    "owlvit": _pair("OwlViTConfig", "OwlViTForObjectDetection", **_OWL),
    "owlv2": _pair("Owlv2Config", "Owlv2ForObjectDetection", **_OWL),
    # speech and image-to-text encoder-decoders of the third sweep
    "whisper": _model("WhisperConfig", "WhisperForConditionalGeneration", _speech("input_features", (_BATCH, 16, 32)),
                      dict(_NO_CACHE), vocab_size=_VOCAB, d_model=64, encoder_layers=2, encoder_attention_heads=4,
                      encoder_ffn_dim=96, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=96,
                      num_mel_bins=16, max_source_positions=16, max_target_positions=16, pad_token_id=0),
    "speech2text": _model("Speech2TextConfig", "Speech2TextForConditionalGeneration",
                          _speech("input_features", (_BATCH, 32, 16), attention_mask=_mask_of(32)), dict(_NO_CACHE),
                          vocab_size=_VOCAB, conv_channels=32, input_feat_per_channel=16, max_source_positions=64,
                          max_target_positions=64, **_SEQ2SEQ),
    "speecht5": _model("SpeechT5Config", "SpeechT5ForSpeechToText", _speech("input_values", (_BATCH, 800)),
                       dict(_NO_CACHE), vocab_size=_VOCAB, hidden_size=64, encoder_layers=2, encoder_attention_heads=4,
                       encoder_ffn_dim=96, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=96,
                       conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                       num_conv_pos_embedding_groups=4, apply_spec_augment=False, encoder_max_relative_position=16),
    "moonshine": _model("MoonshineConfig", "MoonshineForConditionalGeneration", _speech("input_values", (_BATCH, 3200)),
                        dict(_NO_CACHE), vocab_size=_VOCAB, hidden_size=64, intermediate_size=96,
                        encoder_num_hidden_layers=2, decoder_num_hidden_layers=2, encoder_num_attention_heads=4,
                        decoder_num_attention_heads=4, max_position_embeddings=64),
    "vision_encoder_decoder": _image_to_text(dict(model_type="gpt2", vocab_size=_VOCAB, n_embd=64, n_layer=2,
                                                  n_head=4, n_positions=64)),
    "trocr": _image_to_text(dict(model_type="trocr", vocab_size=_VOCAB, d_model=64, decoder_layers=2,
                                 decoder_attention_heads=4, decoder_ffn_dim=96, max_position_embeddings=64)),
    "pix2struct": _model("Pix2StructConfig", "Pix2StructForConditionalGeneration", _flattened_patches,
        text_config=dict(vocab_size=_VOCAB, hidden_size=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4),
        vision_config=dict(hidden_size=64, patch_embed_hidden_size=48, d_ff=96, d_kv=16, num_hidden_layers=2,
                           num_attention_heads=4, seq_len=16)),
    # contrastive and audio models of the third sweep
    "clip": _pair("CLIPConfig", "CLIPModel", text_config=dict(_TEXT, vocab_size=_VOCAB), vision_config=dict(_VIT, image_size=32),
                  projection_dim=32),
    "siglip": _pair("SiglipConfig", "SiglipModel", text_config=dict(_TEXT, vocab_size=_VOCAB),
                    vision_config=dict(_VIT, image_size=32)),
    "altclip": _pair("AltCLIPConfig", "AltCLIPModel", text_config=dict(_TEXT, vocab_size=_VOCAB, project_dim=32,
                                                                       max_position_embeddings=66),
                     vision_config=dict(_VIT, image_size=32), projection_dim=32),
    "clap": _model("ClapConfig", "ClapModel", lambda model: {
        "input_ids": _tokens(), "attention_mask": _mask(),
        "input_features": torch.randn(_BATCH, 1, 64, 16, generator=torch.Generator().manual_seed(3))},
        text_config=dict(_TEXT, vocab_size=_VOCAB, max_position_embeddings=66, projection_dim=32),
        audio_config=dict(spec_size=32, num_mel_bins=16, window_size=4, patch_size=4, patch_stride=[4, 4],
                          hidden_size=32, depths=[1, 1], num_attention_heads=[2, 4], patch_embeds_hidden_size=16,
                          projection_dim=32), projection_dim=32),
    "encodec": _model("EncodecConfig", "EncodecModel", lambda model: {
        "input_values": torch.randn(_BATCH, 1, 320, generator=torch.Generator().manual_seed(3))},
        hidden_size=32, num_filters=8, upsampling_ratios=[4, 2], codebook_size=16, num_lstm_layers=1,
        target_bandwidths=[8.0], sampling_rate=8000),
    "musicgen": _model("MusicgenConfig", "MusicgenForConditionalGeneration", lambda model: {
        "input_ids": _tokens(), "attention_mask": _mask(), "decoder_input_ids": _tokens(seed=4).repeat(2, 1) % 16},
        dict(_NO_CACHE), text_encoder=dict(_T5, model_type="t5", vocab_size=_VOCAB),
        audio_encoder=dict(model_type="encodec", hidden_size=32, num_filters=8, upsampling_ratios=[4, 2],
                           codebook_size=16, num_lstm_layers=1, target_bandwidths=[8.0], sampling_rate=8000),
        decoder=dict(model_type="musicgen_decoder", vocab_size=16, hidden_size=64, num_hidden_layers=2,
                     num_attention_heads=4, ffn_dim=96, num_codebooks=2, max_position_embeddings=64)),
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
