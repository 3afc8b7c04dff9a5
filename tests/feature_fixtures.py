"""Models and data for measuring features offline: local copies of each benchmark (a few rows in the hub schema,
our own text) and small random-weight causal LMs."""
from pathlib import Path

from transformers import AutoConfig, AutoModelForCausalLM

from rmsweep.model.tiny import tiny_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "features"


def causal_lm_folder(folder: Path, model_type: str, chat_template: bool) -> Path:
    """A small random-weight causal LM with the tiny tokenizer, long enough positions for IFEval's generations."""
    tokenizer = tiny_tokenizer()
    config = AutoConfig.for_model(model_type, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                  vocab_size=len(tokenizer), max_position_embeddings=4096,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    if not chat_template:
        tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    return folder
