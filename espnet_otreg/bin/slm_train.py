#!/usr/bin/env python3
"""Train the OTReg speech-LLM with ESPnet's trainer (``SLMTask``).

Same CLI as ``espnet2.bin.asr_train`` (``--config``, ``--collect_stats``,
``--resume``, ``--ngpu``, ``--use_amp``, ``--init_param``, ...) plus the SLM keys in
``espnet_otreg.tasks.slm``. Data keys: ``speech`` (sound), ``text`` (text), optional
``lang`` (utt2lang, text)::

    python -m espnet_otreg.bin.slm_train --config conf/train_slm_phase1.yaml \\
        --train_data_path_and_name_and_type dump/raw/train/wav.scp,speech,sound \\
        --train_data_path_and_name_and_type dump/raw/train/text,text,text \\
        --train_data_path_and_name_and_type dump/raw/train/utt2lang,lang,text \\
        --valid_data_path_and_name_and_type ... \\
        --train_shape_file exp/slm_stats/train/speech_shape \\
        --valid_shape_file exp/slm_stats/valid/speech_shape --output_dir exp/slm_phase1

Phase 2 (the paper's stage 2: add OTReg, LoRA if chosen) starts from phase 1's weights::

    python -m espnet_otreg.bin.slm_train --config conf/train_slm_phase2.yaml \\
        --init_param exp/slm_phase1/valid.acc.ave.pth ... --output_dir exp/slm_phase2

(``init_param: [path]`` in the YAML works too.) Phase-1 checkpoints hold the projector
only; the frozen LLM and Whisper weights are rebuilt from their names/paths.
"""

from espnet_otreg.tasks.slm import SLMTask


def get_parser():
    return SLMTask.get_parser()


def main(cmd=None):
    SLMTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
