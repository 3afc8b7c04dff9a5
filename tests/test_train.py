import torch

from rmsweep import datasets, modeling, train

CONFIG = dict(model="gemma-2-2b-it", model_spec={"source": "tiny", "architecture": "gemma2"}, rm_type="bt",
              lr=1e-3, epochs=1, global_batch_size=32, micro_batch_size=16, warmup_steps=20, eval_every=16,
              max_length=128, seed=0, data_seed=0, regression_weights=[0.30, 0.74, 0.46, 0.47, -0.33])


def _fit(**overrides):
    reports, models = [], []

    def capture(model):
        models.append((model, {name: p.detach().clone() for name, p in model.named_parameters()}))
        return model

    train.fit_reward_model({**CONFIG, **overrides}, lambda metrics, checkpoint: reports.append((metrics, checkpoint)),
                           prepare_model=capture)
    return reports, models[0]


def test_training_changes_every_parameter_and_raises_validation_accuracy():
    reports, (model, initial) = _fit()
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p.detach(), initial[name])]
    assert unchanged == []
    accuracies = [metrics["val_accuracy"] for metrics, _ in reports]
    assert accuracies[-1] > accuracies[0]
    assert max(accuracies) >= 0.65
    assert reports[-1][0]["step"] == reports[-1][0]["total_steps"] == 2048 // 32
    # A checkpoint goes with every improvement and only then.
    best = float("-inf")
    for metrics, checkpoint in reports:
        assert (checkpoint is not None) == (metrics["val_accuracy"] > best)
        best = max(best, metrics["val_accuracy"])


def test_regression_training_learns_the_pairwise_order():
    reports, _ = _fit(rm_type="regression")
    assert max(metrics["val_accuracy"] for metrics, _ in reports) >= 0.65


def _gradients(model, rm_type, tokenized, micro_batches):
    model.zero_grad()
    for micro_batch in micro_batches:
        loss = train._micro_batch_loss(model, rm_type, tokenized, micro_batch, 0, "cpu") / len(micro_batches)
        loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_batch_8_equals_8_micro_batches_of_1():
    torch.manual_seed(0)
    tokenizer, model = modeling.load_reward_model(CONFIG["model_spec"], 1)
    pairs = datasets.tokenize_pairs(tokenizer, datasets.builtin()["train_pairs"][:8], 128)
    whole = _gradients(model, "bt", pairs, [list(range(8))])
    accumulated = _gradients(model, "bt", pairs, [[i] for i in range(8)])
    for name in whole:
        torch.testing.assert_close(whole[name], accumulated[name], rtol=1e-4, atol=1e-6)


def test_ranks_split_each_global_batch_exactly_once():
    steps = [list(datasets.rank_micro_batches(100, 8, 2, rank, 2, seed=0, epoch=0)) for rank in range(2)]
    assert len(steps[0]) == len(steps[1]) == 100 // 8
    for rank0, rank1 in zip(*steps):
        indices = [i for micro in rank0 + rank1 for i in micro]
        assert len(indices) == len(set(indices)) == 8
        assert all(len(micro) == 2 for micro in rank0 + rank1)


def test_ranks_holding_different_hyperparameters_are_refused():
    train.check_same_across_ranks([(1e-3, 2, 0), (1e-3, 2, 0)])
    try:
        train.check_same_across_ranks([(1e-3, 2, 0), (3e-3, 2, 0)])
    except RuntimeError as error:
        assert "disagree" in str(error)
    else:
        raise AssertionError("a rank with other hyperparameters was accepted")
