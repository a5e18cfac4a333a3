"""Train an ASR model, GM-OT included: the stock ``espnet2.bin.asr_train`` CLI.

Example (a recipe's stage 11; ``model: gmot`` in the YAML)::

    python -m espnet_otreg.bin.asr_train --config conf/train_asr_gmot.yaml \\
        --train_data_path_and_name_and_type dump/raw/train_sp/wav.scp,speech,sound \\
        --train_data_path_and_name_and_type dump/raw/train_sp/text,text,text \\
        --train_data_path_and_name_and_type dump/teacher/train_sp/feats.scp,teacher_feats,kaldi_ark \\
        ... (valid sets, shape files, token list, output dir, --ngpu: as stock ESPnet)

``--collect_stats true``, ``--resume true``, ``--ngpu N`` and
``--multiprocessing_distributed true`` behave as in stock ESPnet.
"""

from espnet_otreg.tasks.asr import GMOTASRTask


def main(cmd=None):
    GMOTASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
