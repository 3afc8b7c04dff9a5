"""Tiny twins: each registry architecture built from a small config with random weights, offline; and the twin of
any candidate's config (`shrink`): the same architecture, its sizes set to COMMON's.

The tokenizer is a word-level one built here over the built-in corpus's vocabulary, with a chat
template, so the same chat-formatting path runs for tiny and real models.
"""
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, PreTrainedTokenizerFast

from rmsweep.data.builtin_corpus import VOCABULARY

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>", "<user>", "<assistant>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<{{ message['role'] }}> {{ message['content'] }} {% endfor %}"
    "{{ eos_token }}"
)

# Shared by every architecture: 2 layers, width 64: small enough to train on one CPU core, large enough to learn
# the built-in task.
COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=256, tie_word_embeddings=False)

# model_type in transformers, and what that architecture needs beyond COMMON.
ARCHITECTURES = {
    "gemma": ("gemma", {}),
    "gemma2": ("gemma2", dict(query_pre_attn_scalar=16, sliding_window=64)),
    "llama": ("llama", {}),
    "mistral": ("mistral", dict(sliding_window=None)),
    "qwen2": ("qwen2", {}),
    "phi3": ("phi3", {}),
    # Phi-3-small ships its own modeling code (trust_remote_code); transformers has no class for it, so its
    # tiny twin is the nearest native one.
    "phi3small": ("phi3", {}),
    "stablelm": ("stablelm", dict(num_key_value_heads=4)),
    "nemotron": ("nemotron", {}),
}


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + VOCABULARY)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>",
        chat_template=CHAT_TEMPLATE, padding_side="right",
    )


def tiny_config(architecture: str, tokenizer: PreTrainedTokenizerFast, num_labels: int, **sizes):
    """`sizes` override COMMON's (the benchmarks use a wider, deeper model)."""
    model_type, extra = ARCHITECTURES[architecture]
    return AutoConfig.for_model(
        model_type, **{**COMMON, **extra, **sizes}, vocab_size=len(tokenizer), num_labels=num_labels,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def shrink(config, tokenizer: PreTrainedTokenizerFast, num_labels: int):
    """The twin of a candidate's config: its architecture (the text model of a multimodal one) with every field
    kept but the sizes, which become COMMON's; sliding windows at most a quarter of the twin's positions (so the
    built-in corpus's texts meet them) and per-layer lists cut to the twin's layers."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    fields = {key: value for key, value in text.to_dict().items()
              if key not in ("quantization_config", "architectures", "auto_map", "torch_dtype", "dtype", "id2label",
                                 "label2id")}
    fields.update(COMMON, vocab_size=len(tokenizer), num_labels=num_labels, pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    layers = COMMON["num_hidden_layers"]
    for key, value in list(fields.items()):
        if isinstance(value, list) and len(value) == text.num_hidden_layers:
            fields[key] = value[:layers]
    if fields.get("sliding_window"):
        fields["sliding_window"] = min(fields["sliding_window"], COMMON["max_position_embeddings"] // 4)
    if "max_window_layers" in fields:
        fields["max_window_layers"] = min(fields["max_window_layers"], layers)
    model_type = fields.pop("model_type")
    return AutoConfig.for_model(model_type, **fields)
