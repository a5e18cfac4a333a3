"""Whisper-style normaliser and WER/CER scoring (espnet_otreg.data.text_norm)."""

import pytest

from espnet_otreg.data import text_norm as tn


def test_normalize_punctuation_case_brackets():
    assert tn.normalize("Hello, World!  (laughs) [noise] <unk> It's OK.") == "hello world it s ok"


def test_normalize_keeps_combining_marks_by_default():
    hindi = "हिन्दी भाषा"
    assert tn.normalize(hindi) == hindi  # vowel signs kept: two words stay two words
    # Whisper's exact behaviour splits at marks (documented opt-in).
    assert len(tn.normalize(hindi, keep_marks=False).split()) > 2


def test_nfkc_and_whitespace():
    assert tn.normalize("ｆｕｌｌ\u3000width\ttabs\n") == "full width tabs"


@pytest.mark.parametrize(
    "lang,cer", [("cmn_hans_cn", True), ("ja_jp", True), ("th_th", True), ("yue_hant_hk", True),
                 ("en_us", False), ("km_kh", True), ("ko_kr", False), ("my_mm", True)]
)
def test_uses_cer(lang, cer):
    assert tn.uses_cer(lang) is cer


def test_wer_counts():
    c = tn.error_counts(["the cat sat", "a b"], ["the bat sat down", ""], "en_us")
    # utt1: 1 sub + 1 ins; utt2: 2 del
    assert (c.substitutions, c.deletions, c.insertions, c.n_ref) == (1, 2, 1, 5)
    assert c.rate == pytest.approx(80.0)
    assert c.n_empty_hyp == 1


def test_cer_for_spaceless_language():
    c = tn.error_counts(["我爱北京。"], ["我 爱 背景"], "cmn_hans_cn")
    assert c.n_ref == 4 and c.substitutions == 2 and c.rate == pytest.approx(50.0)


def test_punctuation_differences_do_not_count():
    assert tn.error_rate(["Yes, it's fine."], ["yes it's fine"], "en_us") == 0.0


def test_empty_reference_is_an_error():
    with pytest.raises(ValueError, match="empty after normalisation"):
        tn.error_counts(["  ...  "], ["x"], "en_us")


def test_length_mismatch():
    with pytest.raises(ValueError, match="2 references but 1"):
        tn.error_counts(["a", "b"], ["a"], "en_us")


def test_cer_counts_grapheme_clusters_for_scripts_without_spaces():
    """Thai/Lao/Burmese/Khmer: a consonant with its vowel or tone sign is one unit."""
    from espnet_otreg.data.text_norm import units

    assert units("กิน ข้าว", "th_th") == ["กิ", "น", "ข้", "า", "ว"]  # 7 code points, 5 clusters
    assert tn.error_rate(["กินข้าว"], ["กันข้าว"], "th_th") == 20.0  # one substitution of 5
    assert len(units("ខ្មែរ", "km_kh")) < len("ខ្មែរ")
    assert units("我爱 北京", "cmn_hans_cn") == ["我", "爱", "北", "京"]  # Han: clusters = chars
