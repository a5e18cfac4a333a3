"""Prompt template and the ESPnet preprocessor that tokenises transcripts and prompts.

The template is one string with ``{speech}`` (where the speech embeddings go, exactly
once) and optionally ``{lang}`` (the language name). For an utterance the model's input
is::

    [tokens of the text before {speech}] [speech embeddings] [tokens of the text after]
    [transcript tokens] [eos]

and the cross-entropy covers the transcript tokens and eos only. The paper states a
prompt "with the language and the task" without its wording; the default below is ours.
For chat-tuned LLMs put the chat markup in the template (see docs/slm.md).
"""

import functools
import logging
from typing import Dict, Optional, Tuple

import numpy as np
from espnet2.train.preprocessor import AbsPreprocessor

from espnet_otreg.data.fleurs import LANGUAGE_NAMES

DEFAULT_TEMPLATE = "Transcribe the following {lang} speech.\n{speech}\nTranscript:\n"

# Bare ISO codes (CoVoST-2 style "en", "de") map through the FLEURS table's prefixes.
ISO_LANGUAGES = {}
for _code, _name in LANGUAGE_NAMES.items():
    ISO_LANGUAGES.setdefault(_code.split("_")[0], _name)
ISO_LANGUAGES.update({"zh": "Mandarin Chinese", "cmn": "Mandarin Chinese"})


def language_name(code: str, extra: Optional[Dict[str, str]] = None) -> Optional[str]:
    """Language name for a FLEURS code (``en_us``), an ISO code (``en``) or a name
    given in ``extra``; None when unknown."""
    if extra and code in extra:
        return extra[code]
    return LANGUAGE_NAMES.get(code) or ISO_LANGUAGES.get(code.split("_")[0].lower())


class PromptTemplate:
    """Splits a template at ``{speech}`` and renders the two text parts for a language."""

    def __init__(self, template: str = DEFAULT_TEMPLATE):
        if template.count("{speech}") != 1:
            raise ValueError(f"prompt template needs exactly one {{speech}}, got {template!r}")
        self.before, self.after = template.split("{speech}")

    def render(self, lang_name: str) -> Tuple[str, str]:
        return self.before.replace("{lang}", lang_name), self.after.replace("{lang}", lang_name)


class SLMPreprocessor(AbsPreprocessor):
    """ESPnet preprocessor for the SLM task.

    In: ``speech`` (waveform), ``text`` (raw transcript, optional at inference), ``lang``
    (language code from utt2lang, optional). Out: ``speech``; ``text`` = transcript token
    ids (no special tokens); ``prompt_pre`` / ``prompt_post`` = token ids of the template
    before / after ``{speech}`` (``prompt_pre`` with the tokenizer's special prefix such as
    BOS, if it adds one). An empty transcript is kept as zero tokens and logged; the model
    skips and counts it.

    Args:
        tokenizer: name or path of the LLM's tokenizer.
        prompt_template: see :class:`PromptTemplate`.
        default_lang: language code used when the data has no ``lang``.
        lang_names: extra ``code -> name`` entries; an unknown code is used verbatim in
            the prompt (with a warning, once per code).
    """

    def __init__(
        self,
        train: bool,
        tokenizer: str,
        prompt_template: str = DEFAULT_TEMPLATE,
        default_lang: str = "en_us",
        lang_names: Optional[Dict[str, str]] = None,
        speech_name: str = "speech",
        text_name: str = "text",
        lang_name: str = "lang",
        tokenizer_revision: Optional[str] = None,
    ):
        super().__init__(train)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer, revision=tokenizer_revision)
        self.template = PromptTemplate(prompt_template)
        self.default_lang = default_lang
        self.lang_names = dict(lang_names or {})
        self.speech_name, self.text_name, self.lang_name = speech_name, text_name, lang_name
        self._warned = set()

    def _ids(self, text: str, special: bool) -> np.ndarray:
        ids = self.tokenizer(text, add_special_tokens=special)["input_ids"]
        return np.asarray(ids, dtype=np.int64)

    @functools.lru_cache(maxsize=1024)
    def prompt_ids(self, lang: str) -> Tuple[np.ndarray, np.ndarray]:
        name = language_name(lang, self.lang_names)
        if name is None:
            if lang not in self._warned:
                logging.warning(f"unknown language code {lang!r}: used verbatim in the prompt")
                self._warned.add(lang)
            name = lang
        before, after = self.template.render(name)
        return self._ids(before, True), self._ids(after, False)

    def __call__(self, uid: str, data: Dict[str, object]) -> Dict[str, np.ndarray]:
        out = {}
        if self.speech_name in data:
            out[self.speech_name] = data[self.speech_name]
        lang = data.get(self.lang_name, self.default_lang)
        lang = lang.strip() if isinstance(lang, str) else self.default_lang
        pre, post = self.prompt_ids(lang or self.default_lang)
        out["prompt_pre"], out["prompt_post"] = pre.copy(), post.copy()
        if self.text_name in data:
            text = data[self.text_name].strip()
            out[self.text_name] = self._ids(text, False)
            if out[self.text_name].size == 0:
                logging.warning(f"utterance {uid}: empty transcript (skipped in the loss)")
        return out
