"""Typed configuration, built once and passed down unchanged.

- `ModelSpec`: where one base model's weights come from (a tiny twin, a hub id, a local directory).
- `TrainingSettings`: the fixed part of the recipe, from a search space's `training:` section.
- `TrainConfig`: everything one trial's training loop reads (what `train_loop_per_worker` gets).
- `SweepConfig`: everything the searcher, scheduler, aggregator and report read; `sweep.json` is its JSON.

Each field's `help` is its documentation. Constructing one with an unknown or missing field raises TypeError;
a value outside its choices raises ValueError, where the object is built.
"""
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

RM_TYPES = ("bt", "regression", "bnrm")
BT_VARIANTS = ("plain", "margin", "scaled")
STRATEGIES = ("ddp", "fsdp")
PRECISIONS = ("bf16-autocast", "bf16")
AUTO = "auto"
# transformers' attention implementations a trial may ask for; auto: the one transformers picks for the model.
ATTENTIONS = (AUTO, "eager", "sdpa", "flex_attention", "flash_attention_2")
# Nemotron-4-340B's published attribute weights (helpfulness, correctness, coherence, complexity, verbosity): how a
# regression RM's five outputs become one reward for validation during training.
NEMOTRON_WEIGHTS = (0.3, 0.74, 0.46, 0.47, -0.33)


def _help(text: str, default=MISSING, **kwargs):
    """A field documented by its one-line help; without a default, it must be given."""
    return field(default=default, metadata={"help": text}, **kwargs)


def _choose(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def _on_off_auto(name: str, value) -> None:
    _choose(name, value, (True, False, AUTO))


@dataclass(frozen=True)
class ModelSpec:
    """Where a base model's weights come from."""
    source: str = _help("'tiny' (a random-weight twin), a hub id, or a local checkpoint directory")
    architecture: str = _help("the registry's architecture key (gemma2, llama, qwen2, ...) or a candidate's "
                              "model_type: a tiny twin's class")
    twin_seed: int = _help("seed of a tiny twin's weights (from the model's name: twins of one architecture differ)", 0)
    trust_remote_code: bool = _help("let the repository's own modeling code run (--trust-remote-code)", False)
    sizes: tuple = _help("(key, value) overrides of a tiny twin's config: width, layers (the benchmarks)", ())
    revision: str | None = _help("a hub id's revision (branch, tag or commit); None: the default branch", None)
    twin_of: str | None = _help("a tiny twin of a candidate: the folder or hub id whose config it shrinks "
                                "(model/tiny.py shrink); None: a registry architecture's twin", None)
    chat_template: bool = _help("the base model's tokenizer has a chat template; False: texts use the plain "
                                "format (data/tokenization.py PLAIN_CHAT_TEMPLATE)", True)

    @property
    def is_tiny(self) -> bool:
        return self.source == "tiny"

    @classmethod
    def from_record(cls, record: dict) -> "ModelSpec":
        """Back from its JSON form (a checkpoint's rmsweep_meta.json), where tuples became lists."""
        return cls(**{**record, "sizes": tuple(map(tuple, record.get("sizes", ())))})


@dataclass(frozen=True)
class TrainingSettings:
    """The recipe's fixed settings: a search space's `training:` section."""
    global_batch_size: int = _help("examples per optimizer step, summed over the trial's workers", 64)
    micro_batch_size: int = _help("examples per forward pass and worker; accumulation fills the global batch", 8)
    warmup_steps: int = _help("steps of linear warmup, then the lr stays constant", 20)
    eval_every: int = _help("optimizer steps between validation evaluations (and checkpoints, ASHA rungs)", 20)
    max_length: int = _help("tokens per text; longer ones lose tokens from the left (the prompt's start)", 2048)

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ValueError(f"training.{item.name} must be a positive integer, got {value!r}")


TRAINING_FIELDS = tuple(item.name for item in fields(TrainingSettings))


@dataclass(frozen=True)
class TrainConfig:
    """One trial: a base model, its sampled lr and epochs, the recipe, and where its shared files live."""
    model: str = _help("the base model's name (ledger, checkpoints, messages)")
    model_spec: ModelSpec = _help("where its weights come from")
    lr: float = _help("peak learning rate (AdamW), sampled by the searcher")
    epochs: int = _help("passes over the training data, sampled by the searcher")
    training: TrainingSettings = _help("batch, warmup, evaluation interval, max length",
                                       default_factory=TrainingSettings)
    rm_type: str = _help("bt (Bradley-Terry), regression (5 attribute heads) or bnrm (Bayesian head)", "bt")
    bt_variant: str = _help("bt/bnrm loss: plain, margin or scaled by the pair's preference strength", "plain")
    reward_centering: float = _help("bt/bnrm: add this x mean((r_chosen + r_rejected)^2) to the loss", 0.0)
    regression_weights: tuple = _help("regression: attribute weights for validation accuracy", NEMOTRON_WEIGHTS)
    seed: int = _help("seeds the head's init, data order and BNRM noise", 0)
    strategy: str = _help("ddp (each worker holds the model) or fsdp (each holds a shard)", "ddp")
    attention: str = _help("the base model's attention implementation (ATTENTIONS); flex_attention (GPUs only: "
                           "PyTorch has no backward for it on CPUs) and flash_attention_2 run packed rows per "
                           "sequence; auto: transformers' choice for the model", AUTO)
    padding_free: bool | str = _help("pack a micro-batch's sequences in one row; auto: where attention "
                                     "runs per packed sequence (flex_attention, flash-attention)", AUTO)
    shared_prompt: bool | str = _help("compute a pair's prompt once for both responses, where the attention takes "
                                      "custom masks (eager, SDPA) and gradient checkpointing is off; auto: so on "
                                      "CPUs (measured slower on a GPU); on: fail where the attention takes none",
                                      AUTO)
    tokens_per_micro_batch: int | None = _help("micro-batches of as many examples as a forward pass of at most "
                                               "this many tokens (padding included; a packed row has "
                                               "none) holds, instead of "
                                               "micro_batch_size examples; None: by examples", None)
    precision: str = _help("on a GPU: bf16-autocast (fp32 weights and AdamW state) or bf16 (bf16 weights)",
                           "bf16-autocast")
    compile: bool = _help("torch.compile the model (dynamic shapes)", False)
    liger: bool = _help("Liger kernels (liger-kernel package) in the model's norms, MLP and rotary embeddings", False)
    length_grouping: bool = _help("sort each step's examples by length and split where padding is least", True)
    gradient_checkpointing: bool | str = _help("recompute activations in backward; auto: from the first step "
                                               "that runs out of memory without it", AUTO)
    token_cache: str | None = _help("folder (path or URI) of tokenized splits shared by trials; None: no cache",
                                    None)
    data_fingerprints: tuple = _help("(split, digest) of the train and validation records: the cache key", ())
    out_of_memory_dir: str | None = _help("folder where a model that ran out of memory without checkpointing "
                                          "leaves a marker, so its later trials start with it on", None)

    def __post_init__(self):
        _choose("rm_type", self.rm_type, RM_TYPES)
        _choose("bt_variant", self.bt_variant, BT_VARIANTS)
        _choose("strategy", self.strategy, STRATEGIES)
        _choose("attention", self.attention, ATTENTIONS)
        _on_off_auto("padding_free", self.padding_free)
        _on_off_auto("shared_prompt", self.shared_prompt)
        _on_off_auto("gradient_checkpointing", self.gradient_checkpointing)
        _choose("precision", self.precision, PRECISIONS)
        if self.tokens_per_micro_batch is not None and not self.tokens_per_micro_batch > 0:
            raise ValueError(f"tokens_per_micro_batch must be positive, got {self.tokens_per_micro_batch!r}")
        if not (self.lr > 0 and isinstance(self.epochs, int) and self.epochs > 0):
            raise ValueError(f"lr and epochs must be positive, got lr={self.lr!r}, epochs={self.epochs!r}")
        if self.training.global_batch_size % self.training.micro_batch_size:
            raise ValueError("training.global_batch_size must be a multiple of training.micro_batch_size")

    def replace(self, **changes) -> "TrainConfig":
        """A copy with `changes`; the recipe's fields (eval_every, max_length, ...) may be named directly."""
        recipe = {name: changes.pop(name) for name in list(changes) if name in TRAINING_FIELDS}
        if recipe:
            changes["training"] = replace(self.training, **recipe)
        return replace(self, **changes)

    def fingerprint(self, split: str) -> str:
        return dict(self.data_fingerprints).get(split, "")

    def checkpoint_meta(self) -> dict:
        """What a checkpoint's rmsweep_meta.json records of the trial."""
        return {"model": self.model, "model_spec": asdict(self.model_spec), "rm_type": self.rm_type,
                "lr": self.lr, "epochs": self.epochs, "bt_variant": self.bt_variant,
                "reward_centering": self.reward_centering, "regression_weights": list(self.regression_weights),
                "strategy": self.strategy}


SAMPLERS = ("tpe", "grid", "gp", "random")
KEEP_CHECKPOINTS = ("best", "all", "none")


@dataclass(frozen=True)
class SweepConfig:
    """One sweep, validated: what the searcher, scheduler, trials, aggregator and report read. `sweep.json`
    records it (`record()`); `--resume` checks the fields in RESUME_FIELDS against that record."""
    name: str = _help("the run's name: its folder under the storage")
    run_dir: str = _help("the run directory (path or URI)")
    family: str | None = _help("the registry family swept, if one was named")
    models: dict = _help("base model name -> ModelSpec")
    facts: dict = _help("base model name -> data.candidates.Candidate: family, stage, parameters, size group, "
                        "chat template (published for registry models, read from the checkpoint for others)")
    params_b: dict = _help("base model name -> parameters in billions as trained (a tiny twin's are ~0)")
    space: object = _help("the search space (sweep.spaces.SearchSpace): lr, epochs, recipe, ASHA, data")
    placements: dict = _help("base model name -> sweep.placement.Placement: its trials' worker group")
    max_concurrent_trials: int = _help("trials running at once: as many of the largest as the cluster holds")
    rm_type: str = _help("bt, regression or bnrm", "bt")
    bt_variant: str = _help("bt/bnrm loss: plain, margin or scaled", "plain")
    reward_centering: float = _help("bt/bnrm: reward-centering coefficient", 0.0)
    regression_weights: str = _help("regression: 'search' or a published vector's name, for the benchmarks",
                                    "search")
    validation_weights: tuple = _help("regression: the vector validation uses during training", NEMOTRON_WEIGHTS)
    scale: str = _help("tiny (random-weight twins, built-in data) or full (real checkpoints)", "tiny")
    seed: int = _help("seeds samplers, model init and data order", 0)
    data_seed: int = _help("seeds the data itself: the built-in corpus's draw, a training mix's shuffle", 0)
    sampler: str = _help("tpe, gp or random (Optuna's, per base model), or grid (every point of a list-valued "
                         "space)", "tpe")
    samples_per_model: int = _help("trials per base model (without a budget)", 4)
    transfer: bool = _help("sweep models one after another, smallest first, each model's first trial at the lr "
                           "predicted by the models finished before it (sweep/transfer.py)", False)
    budget_steps: int | None = _help("budget-aware sweep: trial-steps to spend in all; None: off", None)
    priors: dict | None = _help("budget-aware sweep: base model -> predicted RewardBench score", None)
    triage: dict | None = _help("--triage: the candidates' ranking (predicted scores, intervals, which feature "
                                "values), the ones swept and pinned (sweep/triage.py record); None: no triage", None)
    benchmarks: tuple = _help("benchmarks the best checkpoints are scored on; the first is the headline",
                              ("rewardbench", "rewardbench2"))
    keep_checkpoints: str = _help("best, all or none: checkpoints left once trials finish", "best")
    max_failures: int = _help("restarts of a trial whose worker dies, each from its latest evaluation", 3)
    attention: str = _help("attention implementation of every trial's model (see TrainConfig)", AUTO)
    padding_free: bool | str = _help("True, False or auto (see TrainConfig)", AUTO)
    shared_prompt: bool | str = _help("True, False or auto (see TrainConfig)", AUTO)
    tokens_per_micro_batch: int | None = _help("tokens per forward pass (see TrainConfig); None: by examples",
                                               None)
    precision: str = _help("bf16-autocast or bf16 (see TrainConfig)", "bf16-autocast")
    compile: bool = _help("torch.compile each trial's model", False)
    liger: bool = _help("Liger kernels in each trial's model (see TrainConfig)", False)
    gradient_checkpointing: bool | str = _help("True, False or auto (see TrainConfig)", AUTO)
    token_cache: str | None = _help("folder of tokenized splits shared by trials and later sweeps", None)
    train_examples: int = _help("training rows after loading and mixing (steps per epoch follow from it)", 0)
    data_fingerprints: tuple = _help("(split, digest) of the train and validation records", ())
    data_accounts: tuple = _help("one line per data source: what was read and kept", ())
    model_shapes: dict = _help("base model name -> (layers, width) from its config, for memory estimates",
                               default_factory=dict)

    def __post_init__(self):
        _choose("rm_type", self.rm_type, RM_TYPES)
        _choose("bt_variant", self.bt_variant, BT_VARIANTS)
        _choose("sampler", self.sampler, SAMPLERS)
        _choose("attention", self.attention, ATTENTIONS)
        _choose("keep_checkpoints", self.keep_checkpoints, KEEP_CHECKPOINTS)
        _choose("scale", self.scale, ("tiny", "full"))

    @property
    def expected_trials(self) -> int | None:
        """Trials the sweep will run in all; None for a budget-aware sweep, where the budget decides."""
        return None if self.budget_steps else len(self.models) * self.samples_per_model

    @property
    def training(self) -> TrainingSettings:
        return self.space.training

    def families(self) -> dict:
        """Base model name -> its family label, for the models that have one."""
        return {name: fact.entry.family for name, fact in self.facts.items() if fact.entry.family}

    @property
    def steps_per_epoch(self) -> int:
        return self.train_examples // self.training.global_batch_size

    def trial_config(self, model: str, lr: float, epochs: int, out_of_memory_dir: str | None) -> TrainConfig:
        placement = self.placements[model]
        return TrainConfig(
            model=model, model_spec=self.models[model], lr=lr, epochs=epochs, training=self.training,
            rm_type=self.rm_type, bt_variant=self.bt_variant, reward_centering=self.reward_centering,
            regression_weights=self.validation_weights, seed=self.seed, strategy=placement.strategy,
            attention=self.attention, padding_free=self.padding_free, shared_prompt=self.shared_prompt,
            tokens_per_micro_batch=self.tokens_per_micro_batch, precision=self.precision, compile=self.compile,
            liger=self.liger,
            token_cache=self.token_cache, data_fingerprints=self.data_fingerprints,
            out_of_memory_dir=out_of_memory_dir,
            # On where the placement turned it on; else as asked, where auto turns it on once a step runs out.
            gradient_checkpointing=placement.gradient_checkpointing or self.gradient_checkpointing,
        )

    def record(self) -> dict:
        """The JSON of sweep.json (before the run adds versions and times)."""
        record = asdict(self)
        record["space"] = self.space.describe()
        return record


# What must not change between a sweep and its --resume (the data's fingerprints included).
RESUME_FIELDS = ("family", "rm_type", "bt_variant", "reward_centering", "regression_weights", "scale", "seed",
                 "models", "sampler", "samples_per_model", "space", "data_fingerprints", "budget_steps",
                 "transfer")
