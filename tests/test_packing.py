"""Pairs sharing their prompt (`data.packing`, `model.masks`) get the two-sequence path's rewards and gradients."""
import numpy as np
import pytest
import torch

from rmsweep.config import ModelSpec
from rmsweep.data import batching, packing, tokenization
from rmsweep.model import masks, reward_model, tiny
from rmsweep.training import step
from tests.test_train import CONFIG, DATA

PAD = 0


def _random_pairs(seed: int, count: int = 6) -> list:
    """Pairs with one prompt of up to 100 tokens (past Gemma 2's tiny sliding window of 64) and two responses,
    plus a pair sharing no token (the fallback), so prompts and responses of one batch are padded differently."""
    rng = np.random.default_rng(seed)

    def tokens(most):
        return rng.integers(10, 50, size=int(rng.integers(1, most))).tolist()
    pairs = []
    for _ in range(count):
        prompt = tokens(100)
        pairs.append((prompt + tokens(40), prompt + tokens(40)))
    return pairs + [([11, 12, 13], [14, 15])]


def _bt_loss_and_gradients(model, pairs, layout, device="cpu"):
    """In fp32 on any device (step.forward would autocast to bf16 on a GPU)."""
    model.zero_grad()
    outputs = model(**step.model_inputs(pairs, PAD, device, layout))[:, 0]
    loss = -torch.nn.functional.logsigmoid(outputs[: len(pairs)] - outputs[len(pairs):]).mean()
    loss.backward()
    return outputs.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("architecture", list(tiny.ARCHITECTURES))
def test_shared_prompt_rows_give_the_rewards_and_gradients_of_two_sequences(architecture):
    torch.manual_seed(0)
    _, model = reward_model.load_reward_model(ModelSpec("tiny", architecture), "bt")
    pairs = _random_pairs(seed=1)
    two_rewards, two_gradients = _bt_loss_and_gradients(model, pairs, "padded")
    shared_rewards, shared_gradients = _bt_loss_and_gradients(model, pairs, "shared_prompt")
    torch.testing.assert_close(shared_rewards, two_rewards, rtol=1e-5, atol=1e-5)
    for name, gradient in two_gradients.items():
        torch.testing.assert_close(shared_gradients[name], gradient, rtol=1e-5, atol=1e-5, msg=name)


def test_gemma2_rows_need_its_sliding_window(monkeypatch):
    """The control for the test above: prompts longer than the window make the window matter."""
    torch.manual_seed(0)
    _, model = reward_model.load_reward_model(ModelSpec("tiny", "gemma2"), "bt")
    pairs = _random_pairs(seed=1)
    two_rewards, _ = _bt_loss_and_gradients(model, pairs, "padded")
    monkeypatch.setattr(masks, "_layer_kinds", lambda config: {"full_attention"})
    windowless, _ = _bt_loss_and_gradients(model, pairs, "shared_prompt")
    assert (windowless - two_rewards).abs().max() > 1e-3


@pytest.fixture
def uncompiled_flex_attention(monkeypatch):
    """FlexAttention and its block masks as PyTorch's reference implementation runs them, uncompiled: the same
    function of the same mask, without the 10-20 s a CPU compile takes (the GPU tests run the compiled kernels)."""
    from torch.nn.attention import flex_attention
    from transformers import masking_utils
    from transformers.integrations import flex_attention as transformers_flex

    def plain_create_block_mask(*args, _compile=False, **kwargs):
        return flex_attention.create_block_mask(*args, **kwargs)
    monkeypatch.setattr(transformers_flex, "compile_friendly_flex_attention",
                        lambda query, key, value, training=False, **kwargs: flex_attention.flex_attention(
                            query, key, value, **kwargs))
    monkeypatch.setattr(masking_utils, "create_block_mask", plain_create_block_mask)
    monkeypatch.setattr(masks, "_compiled_create_block_mask", lambda: flex_attention.create_block_mask)


@pytest.mark.parametrize("layout", ["packed_shared_prompt", "padding_free"])
@pytest.mark.parametrize("architecture", ["gemma2", "qwen2"])
def test_flex_attention_packed_rows_give_the_rewards_of_two_padded_sequences(uncompiled_flex_attention, layout,
                                                                             architecture):
    """One row, no padding: FlexAttention's block masks, ours keeping each rest to its pair's prompt, or
    transformers' from the position ids; Gemma 2 brings its sliding window and soft-capping. Forward only: PyTorch
    has no FlexAttention backward on CPUs (the GPU tests compare gradients)."""
    spec, pairs = ModelSpec("tiny", architecture), _random_pairs(seed=1)
    _, eager = reward_model.load_reward_model(spec, "bt", attention="eager")
    _, flex = reward_model.load_reward_model(spec, "bt", attention="flex_attention")
    assert reward_model.supports_padding_free(flex) and not reward_model.supports_padding_free(eager)
    with torch.no_grad():
        two_sequences = eager.eval()(**step.model_inputs(pairs, PAD, "cpu", "padded"))
        packed = flex.eval()(**step.model_inputs(pairs, PAD, "cpu", layout))
    torch.testing.assert_close(packed, two_sequences, rtol=1e-5, atol=1e-5)


def test_a_packed_row_holds_each_pairs_prompt_once_then_its_rests():
    pairs = [([1, 2, 3, 4], [1, 2, 5]), ([6, 7], [8, 9, 10])]  # the second shares no token: an empty prompt
    row = packing.pack_shared_prompts(pairs)
    assert row["input_ids"][0].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert row["position_ids"][0].tolist() == [0, 1, 2, 3, 2, 0, 1, 0, 1, 2]
    assert row["segments"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 1, 1, 2, 1, 1, 2, 2, 2]]
    assert row["last_tokens"].tolist() == [3, 6, 4, 9]  # chosen of each pair, then rejected


def test_pairs_share_their_prompt_once_and_the_fallback_gets_an_empty_one():
    pairs = _random_pairs(seed=2)
    batch = packing.share_prompts(pairs, PAD)
    prefixes = [packing.shared_prefix_length(c, r) for c, r in pairs]
    assert batch.prompt_lengths.tolist() == prefixes and prefixes[-1] == 0 and min(prefixes[:-1]) > 0
    computed = int(batch.prompt_lengths.sum() + batch.response_lengths.sum())
    assert computed == sum(len(c) + len(r) - p for (c, r), p in zip(pairs, prefixes))
    # Row i holds pair i's chosen rest, row n + i its rejected rest, each ending at its sequence's last token.
    for row, (sequence, prefix) in enumerate(zip([c for c, _ in pairs] + [r for _, r in pairs], prefixes * 2)):
        length = int(batch.response_lengths[row])
        assert batch.response_ids[row, :length].tolist() == sequence[prefix:]


def test_a_pair_whose_sides_differ_only_at_the_end_keeps_a_token_each():
    assert packing.shared_prefix_length([1, 2, 3], [1, 2, 3]) == 2
    assert packing.shared_prefix_length([1, 2], [1, 2, 3, 4]) == 1


@pytest.mark.parametrize("seed", range(10))
def test_token_budget_split_keeps_order_and_budget(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 30))
    shapes = np.stack([rng.integers(0, 300, count), rng.integers(1, 300, count), np.full(count, 2)], axis=1)
    budget = int(rng.integers(200, 3000))
    bounds = batching.token_budget_split(shapes, budget)
    assert [begin for begin, _ in bounds][1:] == [end for _, end in bounds][:-1]
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    for begin, end in bounds:
        assert batching.pass_tokens(shapes[begin:end]) <= budget or end - begin == 1
        # not cut early: the next example would not have fitted
        assert end == count or batching.pass_tokens(shapes[begin: end + 1]) > budget


def test_pass_tokens_count_what_a_shared_prompt_pass_computes():
    pairs = _random_pairs(seed=4)
    batch = packing.share_prompts(pairs, PAD)
    tokenized = tokenization.Tokenized(pairs)
    shapes = batching.pass_shapes(tokenized, batching.prompt_lengths(tokenized))
    assert batching.pass_tokens(shapes) == batch.prompt_ids.numel() + batch.response_ids.numel()
    padded = tokenization.pad([c for c, _ in pairs] + [r for _, r in pairs], PAD)[0]
    assert batching.pass_tokens(batching.pass_shapes(tokenized, np.zeros(len(pairs), int))) == padded.numel()


@pytest.mark.parametrize("layout", ["shared_prompt", "padding_free"])
def test_token_budget_steps_hold_the_same_examples_and_gradient(layout):
    torch.manual_seed(0)
    tokenizer, model = reward_model.load_reward_model(CONFIG.model_spec, "bt")
    pairs = tokenization.tokenize_pairs(tokenizer, DATA["bt"].train[:32], 128)
    if layout == "shared_prompt":
        prompts = batching.prompt_lengths(pairs)
        lengths, shapes, cost = batching.unit_lengths(pairs, prompts), batching.pass_shapes(pairs, prompts), None
        budget = 300
    else:  # a packed row computes each pair's real tokens, both sides whole
        lengths = shapes = batching.unit_lengths(pairs, np.zeros(len(pairs.sequences), dtype=int))
        cost, budget = batching.packed_tokens, 200
    by_examples = next(batching.rank_micro_batches(32, 16, 4, 0, 1, seed=0, epoch=0))
    by_tokens = next(batching.rank_micro_batches(32, 16, 4, 0, 1, seed=0, epoch=0, lengths=lengths,
                                                 token_budget=budget, shapes=shapes,
                                                 **({"pass_cost": cost} if cost else {})))
    assert sorted(sum(by_tokens, [])) == sorted(sum(by_examples, []))
    assert [len(micro) for micro in by_tokens] != [len(micro) for micro in by_examples]
    if layout == "padding_free":
        packed_rows = [step.model_inputs([pairs.sequences[i] for i in micro], PAD, "cpu", layout)["input_ids"]
                       for micro in by_tokens]
        assert all(row.shape[1] <= budget or len(micro) == 1 for row, micro in zip(packed_rows, by_tokens))
        assert sum(row.shape[1] for row in packed_rows) == sum(lengths[sum(by_tokens, [])])

    def step_gradient(micro_batches, layout):
        model.zero_grad()
        for micro_batch in micro_batches:  # weighted by its share of the step's examples, as the loop does
            loss = step.micro_batch_loss(model, CONFIG, pairs, micro_batch, PAD, "cpu", layout)
            (loss * len(micro_batch) / 16).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}
    expected = step_gradient(by_examples, "padded")
    for name, gradient in step_gradient(by_tokens, layout).items():
        torch.testing.assert_close(gradient, expected[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (the device machine runs it)")
@pytest.mark.parametrize("architecture", list(tiny.ARCHITECTURES))
def test_on_a_gpu_shared_prompt_rows_give_the_rewards_of_two_sequences_in_bf16(architecture):
    _, model = reward_model.load_reward_model(ModelSpec("tiny", architecture), "bt")
    model = model.to("cuda").eval()
    pairs = _random_pairs(seed=3)
    with torch.no_grad():
        padded = step.forward(model, pairs, PAD, "cuda", "padded")
        shared = step.forward(model, pairs, PAD, "cuda", "shared_prompt")
    torch.testing.assert_close(shared, padded, atol=2e-2, rtol=2e-2)  # bf16 keeps ~3 significant digits


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (the device machine runs it)")
@pytest.mark.parametrize("layout", ["padding_free", "packed_shared_prompt"])
@pytest.mark.parametrize("architecture", ["gemma2", "qwen2"])  # test_modeling checks every one's forward
def test_on_a_gpu_flex_attention_packed_pairs_give_the_rewards_and_gradients_of_padded_ones(architecture, layout):
    """FlexAttention trains on GPUs only; Gemma 2 brings the sliding window and soft-capping."""
    spec, pairs = ModelSpec("tiny", architecture), _random_pairs(seed=2)
    _, padded_model = reward_model.load_reward_model(spec, "bt")
    _, flex_model = reward_model.load_reward_model(spec, "bt", attention="flex_attention")
    padded_rewards, padded_gradients = _bt_loss_and_gradients(padded_model.to("cuda"), pairs, "padded", "cuda")
    packed_rewards, packed_gradients = _bt_loss_and_gradients(flex_model.to("cuda"), pairs, layout, "cuda")
    torch.testing.assert_close(packed_rewards, padded_rewards, rtol=1e-4, atol=1e-4)
    for name, gradient in padded_gradients.items():
        torch.testing.assert_close(packed_gradients[name], gradient, rtol=1e-3, atol=1e-4, msg=name)
