"""The SLM's input layout and length checks as pure functions over lengths, and the
phase plan."""

import pytest
import torch

from espnet_otreg.slm.phase import PhasePlan
from espnet_otreg.slm.sequence import (
    gather_rows, length_check, plan_layout, speech_rows, token_ids,
)

PAD, EOS = 0, 9


def _lens(*v):
    return torch.tensor(v)


def test_layout_segments_are_right_aligned_and_in_order():
    # utterance 0: pre 2, speech 3, post 1, text 2 (+eos) = 9; utterance 1: 1+1+2+0+1 = 5
    lay = plan_layout(_lens(2, 1), _lens(3, 1), _lens(1, 2), _lens(2, 0))
    assert lay.position.shape == (2, 9)
    assert lay.position[1].tolist() == [-4, -3, -2, -1, 0, 1, 2, 3, 4]
    assert lay.real.sum(1).tolist() == [9, 5]
    masks = [lay.in_prompt_pre, lay.in_speech, lay.in_prompt_post, lay.in_text, lay.is_eos]
    # every real position is in exactly one segment; padding in none
    assert torch.equal(torch.stack(masks).sum(0), lay.real.long())
    seg = torch.stack(masks).long().argmax(0)  # segment index per position
    assert seg[0].tolist() == [0, 0, 1, 1, 1, 2, 3, 3, 4]
    assert seg[1][lay.real[1]].tolist() == [0, 1, 2, 2, 4]  # an empty text: eos only


def test_token_ids_and_labels():
    lay = plan_layout(_lens(2, 1), _lens(3, 1), _lens(1, 2), _lens(2, 1))
    pre = torch.tensor([[1, 2], [3, -1]])          # -1: collate padding
    post = torch.tensor([[4, -1], [5, 6]])
    text = torch.tensor([[7, 8], [7, -1]])
    ids, labels = token_ids(lay, pre, post, PAD, EOS, text)
    assert ids[0].tolist() == [1, 2, PAD, PAD, PAD, 4, 7, 8, EOS]
    row1 = ids[1][lay.real[1]].tolist()
    assert row1 == [3, PAD, 5, 6, 7, EOS]
    assert labels[0].tolist() == [-100] * 6 + [7, 8, EOS]
    assert labels[1][lay.real[1]].tolist() == [-100] * 4 + [7, EOS]
    assert (labels[~lay.real] == -100).all()


def test_decoding_layout_has_no_text_or_labels():
    lay = plan_layout(_lens(1), _lens(2), _lens(1))
    ids, labels = token_ids(lay, torch.tensor([[1]]), torch.tensor([[4]]), PAD, EOS)
    assert labels is None and ids.tolist() == [[1, PAD, PAD, 4]]
    assert not lay.in_text.any() and lay.in_speech.tolist() == [[False, True, True, False]]
    assert not lay.is_eos.any()


def test_speech_rows_put_each_frame_at_its_position():
    lay = plan_layout(_lens(1, 2), _lens(2, 1), _lens(0, 0))
    z = torch.arange(2 * 2 * 3, dtype=torch.float).reshape(2, 2, 3)
    rows = speech_rows(lay, z)
    assert rows.shape == (2, 3, 3)
    assert torch.equal(rows[lay.in_speech], torch.cat([z[0, :2], z[1, :1]]))


def test_gather_rows_clamps_and_handles_empty():
    x = torch.tensor([[5, 6, -1]])
    assert gather_rows(x, torch.tensor([[0, 2, 7, -3]])).tolist() == [[5, 0, 0, 5]]
    assert gather_rows(torch.zeros(1, 0, dtype=torch.long), torch.tensor([[0, 1]])).tolist() == [[0, 0]]


def test_length_check_gives_one_reason_each():
    # empty+short -> empty; short; too long; fine
    valid, masks, total = length_check(
        _lens(2, 2, 2, 2), _lens(0, 0, 5, 3), _lens(1, 1, 1, 1), _lens(0, 3, 4, 2),
        max_context=12,
    )
    assert valid.tolist() == [False, False, False, True]
    assert masks["skip_empty"].tolist() == [True, False, False, False]
    assert masks["skip_short"].tolist() == [False, True, False, False]
    assert masks["skip_long"].tolist() == [False, False, True, False]
    assert total.tolist() == [4, 7, 13, 9]
    # decoding: no transcript, one position reserved
    valid, masks, total = length_check(_lens(2, 2), _lens(8, 9), _lens(1, 1), None, 12, extra_tokens=1)
    assert valid.tolist() == [True, False] and total.tolist() == [12, 13]
    assert not masks["skip_empty"].any() and masks["skip_long"].tolist() == [False, True]


def test_phase_plan():
    one, two = PhasePlan(1, freeze_encoder=False), PhasePlan(2, freeze_encoder=False)
    assert one.projector_only and one.encoder_frozen and one.loss_weight(0.3) == 0.0
    assert not two.projector_only and not two.encoder_frozen and two.loss_weight(0.3) == 0.3
    assert PhasePlan(2).encoder_frozen
    conf = {"model_name_or_path": "x", "lora": {"r": 4}}
    assert one.llm_conf(conf)["lora"] is None and two.llm_conf(conf) is conf
    with pytest.raises(ValueError, match="phase must be 1 or 2, got 3"):
        PhasePlan(3)
