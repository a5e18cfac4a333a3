"""espnet_otreg.data.pinyin: toneless syllables per character and the syllable error rate."""

import pytest

from espnet_otreg.data.pinyin import syllable_counts, syllable_error_rate, syllables


def test_one_toneless_syllable_per_character():
    assert syllables("我们归来") == ["wo", "men", "gui", "lai"]
    # a polyphone is read in its phrase: 银行 hang, 行走 xing
    assert syllables("银行")[1] == "hang" and syllables("行走")[0] == "xing"


def test_a_reference_without_a_reading_names_the_utterance():
    with pytest.raises(ValueError, match=r"utt7: no pinyin for 'ab'"):
        syllables("我ab们", "utt7")


def test_a_hypothesis_keeps_what_has_no_reading_as_its_own_token():
    assert syllables("我 a们", "u", strict=False) == ["wo", "<a>", "men"]


def test_a_homophone_is_no_error_and_a_wrong_syllable_is():
    assert syllable_error_rate([("u1", "我们归来", "我们规来")]) == 0.0
    c = syllable_counts([("u1", "我们归来", "你们规来"), ("u2", "归来", "归")])
    assert (c.sub, c.dele, c.ins, c.n_ref) == (1, 1, 0, 6)
    assert syllable_error_rate([("u1", "我们归来", "你们规来"), ("u2", "归来", "归")]) == pytest.approx(100 * 2 / 6)
    # a hypothesis in Latin letters matches no syllable, even one spelled the same
    assert syllable_error_rate([("u", "啊", "a")]) == 100.0
