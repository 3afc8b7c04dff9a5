"""A reward head for architectures transformers gives no sequence-classification class: the causal LM's backbone
(its AutoModel) with a linear head on the last hidden state, built as transformers builds its own (the generic
`GenericForSequenceClassification` over the architecture's PreTrainedModel) and registered with
AutoModelForSequenceClassification, so loading, saving and a checkpoint's reload go through the usual calls.
"""
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedModel
from transformers.modeling_layers import GenericForSequenceClassification
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_MAPPING_NAMES,
)

from rmsweep.data.candidates import LINEAR_HEAD, SEQUENCE_CLASSIFICATION


class UnsupportedArchitecture(ValueError):
    """An architecture with neither a sequence-classification nor a causal-LM class in transformers."""


def head_route(model_type: str) -> str:
    """How a reward head goes on a model of this architecture."""
    if model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        return SEQUENCE_CLASSIFICATION
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type in MODEL_MAPPING_NAMES:
        return LINEAR_HEAD
    raise UnsupportedArchitecture(f"architecture {model_type!r} has neither a sequence-classification nor a "
                                  "causal-LM class in the installed transformers")


def register_head(config) -> None:
    """Make AutoModelForSequenceClassification build (and load) `config`'s architecture: a no-op where
    transformers has the class; else a linear head on the backbone, registered for this config class."""
    if head_route(config.model_type) == SEQUENCE_CLASSIFICATION:
        return
    causal_lm = AutoModelForCausalLM._model_mapping[type(config)]
    pretrained = next(base for base in causal_lm.__mro__[1:]
                      if issubclass(base, PreTrainedModel) and base is not PreTrainedModel)
    name = causal_lm.__name__.removesuffix("ForCausalLM") + "ForSequenceClassification"
    # The backbone's attribute keeps the causal LM's prefix, so its checkpoint's weights load into it.
    model_class = type(name, (GenericForSequenceClassification, pretrained),
                       {"base_model_prefix": pretrained.base_model_prefix})
    AutoModelForSequenceClassification.register(type(config), model_class, exist_ok=True)
