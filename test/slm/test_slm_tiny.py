"""espnet_otreg.slm.tiny: offline, deterministic, loadable through from_pretrained."""

import hashlib

from espnet_otreg.slm.tiny import build_tiny_llm, build_tiny_whisper

TEXTS = ["hello world", "bonjour le monde", "Transcribe the following English speech."]


def digest(root):
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_builders_are_deterministic_and_load(tmp_path):
    for d in ("a", "b"):
        build_tiny_llm(tmp_path / d / "llm", TEXTS, max_position_embeddings=64)
        build_tiny_whisper(tmp_path / d / "whisper")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")

    from transformers import AutoModelForCausalLM, AutoTokenizer, WhisperModel

    tok = AutoTokenizer.from_pretrained(tmp_path / "a" / "llm")
    ids = tok("bonjour le monde, héllo!", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "bonjour le monde, héllo!"  # byte-level: no unknown tokens
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    llm = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "llm")
    assert llm.config.max_position_embeddings == 64
    assert llm.config.vocab_size == len(tok)
    whisper = WhisperModel.from_pretrained(tmp_path / "a" / "whisper")
    assert whisper.config.d_model == 32
