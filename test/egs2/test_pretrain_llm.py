"""egs2/fleurs_otreg/asr1/local/pretrain_llm.py at toy size: a character-level Qwen2
with a pad token of its own, held-out perplexity per domain against a unigram model,
and an SLM built on it through SLMTask (the OTReg blank is the pad embedding)."""

import json
from pathlib import Path

import pytest
import torch
from recipe_helpers import load_local

RECIPE = Path(__file__).resolve().parents[2] / "egs2/fleurs_otreg/asr1"
TRAIN = ["今天天气很好", "我们去公园散步", "这家店的菜很好吃", "服务态度非常好", "价格有点贵"] * 8
HELD_IN = ["今天的菜很好吃", "我们去店里"]
HELD_OUT = ["你叫什么名字", "我不知道"]


def _write(path: Path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    mod = load_local(RECIPE, "pretrain_llm")
    text = _write(tmp / "train.txt", TRAIN)
    held = [f"review={_write(tmp / 'in.txt', HELD_IN)}", f"dialogue={_write(tmp / 'out.txt', HELD_OUT)}"]
    common = ["--text", str(text), "--hidden_size", "32", "--num_layers", "1", "--num_heads",
              "2", "--batch_size", "8", "--context", "64", "--extra_chars", "Transcript: "]
    for h in held:
        common += ["--heldout", h]
    mod.main(common + ["--out", str(tmp / "trained"), "--epochs", "20", "--lr", "1e-2"])
    mod.main(common + ["--out", str(tmp / "untrained"), "--epochs", "0"])
    return mod, tmp


def test_saved_lm_loads_with_its_own_pad_token(lms):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, tmp = lms
    tok = AutoTokenizer.from_pretrained(tmp / "trained")
    model = AutoModelForCausalLM.from_pretrained(tmp / "trained")
    assert tok.pad_token_id != tok.eos_token_id and tok.pad_token == "<|pad|>"
    assert model.config.pad_token_id == tok.pad_token_id
    ids = tok("今天天气很好", add_special_tokens=False)["input_ids"]
    assert len(ids) == 6 and tok.decode(ids) == "今天天气很好"
    assert tok.decode(tok("Transcript: ", add_special_tokens=False)["input_ids"]) == "Transcript: "
    assert tok.decode(tok("龍", add_special_tokens=False)["input_ids"]) == "龍"  # bytes: no unk


def test_perplexity_per_domain_against_unigram(lms):
    _, tmp = lms
    trained = json.loads((tmp / "trained/pretrain.json").read_text(encoding="utf-8"))
    untrained = json.loads((tmp / "untrained/pretrain.json").read_text(encoding="utf-8"))
    assert set(trained["final"]["heldout"]) == {"review", "dialogue"}
    assert len(trained["history"]) == 20 and untrained["final"]["epoch"] == 0
    r, u = trained["final"]["heldout"]["review"], untrained["final"]["heldout"]["review"]
    # training text learnt: below the untrained LM and below the unigram model in-domain
    assert r["ppl"] < u["ppl"] and r["ppl"] < r["unigram_ppl"]
    assert r["unigram_ppl"] == pytest.approx(u["unigram_ppl"])  # same positions, same model
    assert r["tokens"] == sum(len(s) for s in HELD_IN)  # characters + eos, minus the first


def test_a_heldout_sentence_in_the_training_text_stops_it(lms, tmp_path):
    mod, _ = lms
    text = _write(tmp_path / "t.txt", TRAIN)
    held = _write(tmp_path / "h.txt", [TRAIN[0]])
    with pytest.raises(SystemExit, match="held-out set 'x'.*in the training text"):
        mod.main(["--text", str(text), "--heldout", f"x={held}", "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_slm_builds_on_it_with_the_pad_blank(lms, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slm"))
    from slm_helpers import task_args

    from espnet_otreg.slm.tiny import build_tiny_whisper
    from espnet_otreg.tasks.slm import SLMTask

    _, tmp = lms
    whisper = build_tiny_whisper(tmp_path / "whisper")
    model = SLMTask.build_model(task_args(tmp / "trained", whisper, phase=2, lambda_ot=0.3))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp / "trained")
    assert model.pad_token_id == tok.pad_token_id != model.eos_token_id
    # the OTReg blank anchor is the pad embedding, a row of its own (not eos's)
    import espnet_otreg.slm.espnet_model as em

    seen = {}

    def spy(*args, blank=None, **kw):
        seen["blank"] = blank
        raise StopIteration  # enough: the anchor is what we wanted to see

    W = model.llm.get_input_embeddings().weight
    z, lens = torch.randn(1, 4, W.shape[1]), torch.tensor([4])
    text = torch.tensor([[tok.convert_tokens_to_ids(tok.tokenize("今")[0])]])
    orig, em.otreg_loss = em.otreg_loss, spy
    try:
        with pytest.raises(StopIteration):
            model.otreg(z, lens, text, torch.tensor([1]))
    finally:
        em.otreg_loss = orig
    assert torch.equal(seen["blank"], W[tok.pad_token_id])
    assert not torch.equal(seen["blank"], W[tok.eos_token_id])


def test_reading_examples(lms, tmp_path):
    """--reading_fraction: SLM-shaped examples whose rendering of the sentence (homophones,
    repeats, pad blanks) sits where the speech goes; loss on the sentence and eos only;
    held-out reading perplexity recorded next to the plain one."""
    from transformers import AutoTokenizer

    mod, tmp = lms
    tok = AutoTokenizer.from_pretrained(tmp / "trained")
    reader = mod.Reader(tok, "Transcript: {speech} = ", substitute=1.0, repeat=(1, 2),
                        blanks=(2, 3), max_chars=64)
    # 店 and 点 are both "dian": homophones of each other
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert reader.homophones[ids("店")[0]] == ids("点")
    gen = torch.Generator().manual_seed(0)
    x, y = reader.example("店好", gen)
    before, after = ids("Transcript: "), ids(" = ")
    body = x[len(before) : len(x) - len(after) - 3]
    assert x[: len(before)] == before and x[-3:] == ids("店好") + [tok.eos_token_id]
    assert y == [-100] * (len(x) - 3) + x[-3:]  # loss on the sentence and eos only
    # 店 always replaced (substitute 1.0) by 点; 好 has no homophone here and stays
    chars = [t for t in body if t != tok.pad_token_id]
    assert set(chars) == set(ids("点好"))
    assert 2 * 2 <= body.count(tok.pad_token_id) <= 2 * 3
    ids_, labels, mask = mod.batch([(x, y), ([5, 6], [5, 6])], tok.pad_token_id)
    assert mask.sum(1).tolist() == [len(x), 2]  # blanks inside are attended, padding not
    assert labels[1].tolist()[:2] == [5, 6] and (labels[1, 2:] == -100).all()

    # an epoch's batches: every sentence once, reading or plain, rows of similar length together
    sents = TRAIN[:10]
    enc = mod.encode(tok, sents, 64)
    batches = mod.reading_batches(reader, sents, enc, list(range(10)), 0.5, 4, gen, bucket=2)
    assert [len(b) for b in sorted(batches, key=len)] == [2, 4, 4]
    rows = [r for b in batches for r in b]
    assert sorted(tuple(t for t in y if t != -100)[:-1] for _, y in rows) == sorted(
        tuple(ids(s)) for s in sents)
    assert any(len(x) > len(y) - y.count(-100) + 1 for x, y in rows)  # some read, some plain
    text = _write(tmp_path / "train.txt", TRAIN)
    held = _write(tmp_path / "held.txt", HELD_IN)
    mod.main(["--text", str(text), "--heldout", f"review={held}",
              "--hidden_size", "32", "--num_layers", "1", "--num_heads", "2", "--batch_size", "8",
              "--context", "128", "--epochs", "4", "--lr", "1e-2", "--reading_fraction", "0.5",
              "--out", str(tmp_path / "reading")])
    info = json.loads((tmp_path / "reading/pretrain.json").read_text(encoding="utf-8"))
    r = info["final"]["heldout"]["review"]
    assert r["reading_ppl"] > 1.0 and r["ppl"] > 1.0 and info["reading_fraction"] == 0.5
    # the prompt's characters are tokens of their own
    rt = AutoTokenizer.from_pretrained(tmp_path / "reading")
    assert len(rt("语音文字：", add_special_tokens=False)["input_ids"]) == 5
    for bad in (["--reading_fraction", "1.5"], ["--reading_repeat", "0,2"],
                ["--reading_blanks", "3"]):
        with pytest.raises(SystemExit):
            mod.main(["--text", str(text), "--out", str(tmp_path / "x")] + bad)
