"""GMOTASRTask: ESPnet's ASRTask, plus the GM-OT model and its ``teacher_feats`` data.

Everything else (arguments, choices, preprocessing, collate, trainer, DDP, resume) is
the stock :class:`espnet2.tasks.asr.ASRTask`, so a recipe calls
``python -m espnet_otreg.bin.asr_train`` exactly where it would call
``python -m espnet2.bin.asr_train``.
"""

from __future__ import annotations

from typing import Tuple

from espnet2.tasks.asr import ASRTask

from espnet_otreg import register

register()  # model: gmot among the stock model choices (idempotent)


class GMOTASRTask(ASRTask):
    """ASR task whose data may carry cached teacher features (``teacher_feats``)."""

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return super().optional_data_names(train, inference) + ("teacher_feats",)
