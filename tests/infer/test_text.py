"""TokenStream / TextStream: ragged batches equal single calls (GPT and RNN), stop strings,
several samples, streaming pieces add up to the final text, char vocabulary check."""
from __future__ import annotations

import pytest
import torch

from stoker.data.tokenizers import CharTokenizer
from stoker.errors import UserError
from stoker.infer import TextStream, TokenStream, complete
from stoker.infer.generate import generate
from stoker.models import GPTConfig, RNNConfig, build_model

TOK = CharTokenizer("abcdefghijklmnopqrstuvwxyz .\n")


def _models():
    torch.manual_seed(0)
    v = TOK.vocab_size
    yield build_model(GPTConfig(vocab_size=v, n_layers=2, dim=32, n_heads=4, max_seq_len=16))
    torch.manual_seed(0)
    yield build_model(RNNConfig(vocab_size=v, dim=16, n_layers=2, cell="gru"))


@pytest.mark.parametrize("model", list(_models()), ids=["gpt", "rnn"])
def test_ragged_batch_equals_single_calls(model) -> None:
    prompts = [[3, 4, 5], [6], [7, 8, 9, 10, 11, 12], [4, 4]]
    ts = TokenStream(model, prompts, 14, temperature=0)
    for _ in ts.steps():
        pass
    for i, p in enumerate(prompts):
        alone = generate(model, torch.tensor([p]), 14, temperature=0)[0, len(p):].tolist()
        assert ts.continuation(i) == alone, i  # includes running past the GPT's context


def test_stream_pieces_add_up_and_stop_strings_end_rows() -> None:
    model = next(_models())
    full = complete(model, TOK, ["ab", "c"], max_new_tokens=30, temperature=0,
                    stop_at_eos=False)
    target = full[0].text
    assert len(target) == 30
    stop = target[5:8]  # appears in the text: the row must end right before it
    ts = TextStream(model, TOK, ["ab", "c"], max_new_tokens=30, temperature=0,
                    stop=[stop], stop_at_eos=False)
    pieces: dict[int, str] = {0: "", 1: ""}
    for row, piece in ts:
        pieces[row] += piece
    done = ts.completions
    first = target.find(stop)
    assert done[0].text == target[:first] and done[0].finish == "stop"
    assert pieces[0] == done[0].text and pieces[1] == done[1].text
    assert stop not in pieces[0]


def test_num_samples_differ_and_are_reproducible() -> None:
    model = next(_models())
    a = complete(model, TOK, ["ab"], max_new_tokens=20, temperature=1.0, num_samples=3, seed=1)
    b = complete(model, TOK, ["ab"], max_new_tokens=20, temperature=1.0, num_samples=3, seed=1)
    assert [c.text for c in a] == [c.text for c in b]
    assert [c.sample for c in a] == [0, 1, 2] and len({c.text for c in a}) > 1


def test_prompt_characters_outside_the_vocabulary_are_named() -> None:
    model = next(_models())
    with pytest.raises(UserError, match=r"'Z', 'é'"):
        complete(model, TOK, ["abZ é"], max_new_tokens=3)


def test_bad_options() -> None:
    model = next(_models())
    with pytest.raises(UserError, match="top_p"):
        complete(model, TOK, ["a"], top_p=1.5)
    with pytest.raises(UserError, match="temperature"):
        complete(model, TOK, ["a"], temperature=-1)
    with pytest.raises(UserError, match="num_samples"):
        complete(model, TOK, ["a"], num_samples=0)
    with pytest.raises(UserError, match="stop string"):
        complete(model, TOK, ["a"], stop=[""])
