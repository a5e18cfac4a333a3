"""SLMTask: the ESPnet task that builds :class:`~espnet_otreg.slm.espnet_model.ESPnetSLMModel`.

Everything ESPnet's ``AbsTask`` gives comes with it: ``--collect_stats``, ``--resume``,
``--init_param`` (phase 2 from phase 1), ``--ngpu`` with DDP, ``--use_amp``,
checkpoint averaging, ``--use_deepspeed`` (generic in ``AbsTask`` for the default
trainer; not tested here, needs the ``deepspeed`` package).

YAML keys (besides ESPnet's training options)::

    frontend: null            # ESPnet frontend (e.g. default) or null for raw audio
    encoder: hf_whisper       # or any ESPnet encoder (conformer, e_branchformer, ...)
    encoder_conf: {model_name_or_path: openai/whisper-large-v3, pad_to_30s: true}
    projector_conf: {stack: 5, hidden_size: 2048}
    llm_conf: {model_name_or_path: Qwen/Qwen2.5-1.5B-Instruct, dtype: auto,
               lora: null, gradient_checkpointing: false}
    prompt_conf: {prompt_template: "...{lang}...{speech}...", default_lang: en_us}
    model_conf: {phase: 2, lambda_ot: 0.3, ctc_weight: 0.0, ot_cost: sqeuclidean, ...}

Data keys: ``speech`` (sound), ``text`` (text), optional ``lang`` (utt2lang, text).
"""

import argparse
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.tasks import asr as asr_task
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import int_or_none, str2bool

from espnet_otreg.slm.encoder import HFWhisperEncoder
from espnet_otreg.slm.espnet_model import ESPnetSLMModel
from espnet_otreg.slm.phase import PhasePlan
from espnet_otreg.slm.stats_model import SLMStatsModel
from espnet_otreg.slm.llm import load_llm
from espnet_otreg.slm.projector import FrameStackProjector
from espnet_otreg.slm.prompt import DEFAULT_TEMPLATE, SLMPreprocessor

frontend_choices = ClassChoices(
    name="frontend",
    classes=dict(asr_task.frontend_choices.classes),
    type_check=AbsFrontend,
    default=None,
    optional=True,
)
specaug_choices = ClassChoices(
    name="specaug",
    classes=dict(asr_task.specaug_choices.classes),
    type_check=AbsSpecAug,
    default=None,
    optional=True,
)
normalize_choices = ClassChoices(
    name="normalize",
    classes=dict(asr_task.normalize_choices.classes),
    type_check=AbsNormalize,
    default=None,
    optional=True,
)
encoder_choices = ClassChoices(
    name="encoder",
    classes=dict(asr_task.encoder_choices.classes, hf_whisper=HFWhisperEncoder),
    type_check=AbsEncoder,
    default="hf_whisper",
)

DEFAULT_LLM_CONF = dict(
    model_name_or_path="Qwen/Qwen2.5-1.5B-Instruct",
    dtype="auto",
    freeze=True,
    lora=None,
    gradient_checkpointing=False,
    attn_implementation=None,
)
DEFAULT_PROMPT_CONF = dict(prompt_template=DEFAULT_TEMPLATE, default_lang="en_us", lang_names=None)


def _model_defaults() -> Dict:
    conf = get_default_kwargs(ESPnetSLMModel)
    for key in ("eos_token_id", "pad_token_id", "pretrained_prefixes", "frontend", "specaug",
                "normalize"):
        conf.pop(key, None)
    return conf


class SLMTask(AbsTask):
    num_optimizers: int = 1
    class_choices_list = [frontend_choices, specaug_choices, normalize_choices, encoder_choices]
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument(
            "--input_size",
            type=int_or_none,
            default=None,
            help="Feature dimension when frontend is none and the encoder is an ESPnet one",
        )
        group.add_argument(
            "--llm_conf",
            action=NestedDictAction,
            default=dict(DEFAULT_LLM_CONF),
            help="Keyword arguments of espnet_otreg.slm.llm.load_llm (LLM name/path, "
            "dtype, freeze, lora, gradient_checkpointing)",
        )
        group.add_argument(
            "--projector_conf",
            action=NestedDictAction,
            default=get_default_kwargs(FrameStackProjector),
            help="Keyword arguments of FrameStackProjector (stack, hidden_size, ...)",
        )
        group.add_argument(
            "--prompt_conf",
            action=NestedDictAction,
            default=dict(DEFAULT_PROMPT_CONF),
            help="prompt_template (with {speech} and {lang}), default_lang, lang_names",
        )
        group.add_argument(
            "--model_conf",
            action=NestedDictAction,
            default=_model_defaults(),
            help="Keyword arguments of ESPnetSLMModel (phase, lambda_ot, ctc_weight, ot_*)",
        )
        group = parser.add_argument_group(description="Preprocess related")
        group.add_argument(
            "--use_preprocessor", type=str2bool, default=True, help="Tokenise text and prompts"
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.array]], Dict[str, np.ndarray]]]:
        if not args.use_preprocessor:
            return None
        llm_conf = dict(DEFAULT_LLM_CONF, **(args.llm_conf or {}))
        prompt_conf = dict(DEFAULT_PROMPT_CONF, **(args.prompt_conf or {}))
        return SLMPreprocessor(train, tokenizer=llm_conf["model_name_or_path"],
                               tokenizer_revision=llm_conf.get("revision"), **prompt_conf)

    @classmethod
    def required_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("speech",) if inference else ("speech", "text")

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("lang", "text") if inference else ("lang",)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> AbsESPnetModel:
        """The SLM; with ``--collect_stats true`` only its frontend (no LLM/encoder load)."""
        from transformers import AutoTokenizer

        if getattr(args, "collect_stats", False):
            name = getattr(args, "frontend", None)
            frontend = None
            if name is not None:
                frontend = frontend_choices.get_class(name)(**(args.frontend_conf or {}))
            return SLMStatsModel(frontend)

        model_conf = dict(_model_defaults(), **(args.model_conf or {}))
        # What this phase trains decides how the pretrained parts are loaded (LoRA or
        # not, an HF encoder's frozen flag and load dtype); the model reads the same plan.
        plan = PhasePlan(int(model_conf.get("phase", 2)), model_conf.get("freeze_encoder", True))
        llm_conf = plan.llm_conf(dict(DEFAULT_LLM_CONF, **(args.llm_conf or {})))
        llm = load_llm(**llm_conf)
        if llm_conf.get("config") is not None:  # a random LM of a given shape: no tokenizer
            eos, pad, source = llm.config.eos_token_id, llm.config.pad_token_id, "config"
        else:
            tokenizer = AutoTokenizer.from_pretrained(
                llm_conf["model_name_or_path"], revision=llm_conf.get("revision")
            )
            eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
            source = f"tokenizer of {llm_conf['model_name_or_path']}"
        if eos is None:
            raise ValueError(f"{source} has no eos token")
        pad = eos if pad is None else pad

        def build(choices, input_size=None, **extra):
            name = getattr(args, choices.name, None)
            if name is None:
                return None
            conf = dict(getattr(args, choices.name + "_conf", None) or {}, **extra)
            if input_size is not None:
                conf["input_size"] = input_size
            return choices.get_class(name)(**conf)

        frontend = build(frontend_choices)
        input_size = frontend.output_size() if frontend is not None else (args.input_size or 1)
        specaug = build(specaug_choices)
        normalize = build(normalize_choices)
        encoder_cls = encoder_choices.get_class(args.encoder)
        extra = {}
        if getattr(encoder_cls, "pretrained_submodule", None):  # takes a freeze flag
            extra["freeze"] = plan.encoder_frozen
        encoder = build(encoder_choices, input_size=input_size, **extra)
        llm_dim = llm.get_input_embeddings().weight.shape[1]
        projector = FrameStackProjector(
            encoder.output_size(), llm_dim, **(args.projector_conf or {})
        )
        return ESPnetSLMModel(
            encoder=encoder,
            projector=projector,
            llm=llm,
            eos_token_id=eos,
            pad_token_id=pad,
            frontend=frontend,
            specaug=specaug,
            normalize=normalize,
            **model_conf,
        )
