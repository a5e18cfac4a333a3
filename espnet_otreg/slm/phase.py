"""What each training phase of the speech-LLM trains: one plan that ``SLMTask`` (before
it loads the pretrained parts) and ``ESPnetSLMModel`` (when it sets ``requires_grad``
and its loss weights) both read.

A two-phase schedule, our reading of arXiv 2508.08131 ("phase" because "stage" means
recipe stages):

- phase 1: cross-entropy only; only the projector trains (LLM, encoder frozen, no LoRA);
- phase 2: adds OTReg / CTC, LoRA adapters if configured, and the encoder unless
  ``freeze_encoder``; it starts from phase 1 with ``--init_param``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict


@dataclass(frozen=True)
class PhasePlan:
    phase: int = 2
    freeze_encoder: bool = True

    def __post_init__(self):
        if self.phase not in (1, 2):
            raise ValueError(f"phase must be 1 or 2, got {self.phase!r}")

    @property
    def projector_only(self) -> bool:
        """Phase 1 trains the projector and nothing else."""
        return self.phase == 1

    @property
    def encoder_frozen(self) -> bool:
        return self.phase == 1 or bool(self.freeze_encoder)

    def loss_weight(self, weight: float) -> float:
        """A regulariser's weight in this phase: phase 1 is CE only whatever the config
        says (the paper's stage 1)."""
        return float(weight) if self.phase == 2 else 0.0

    def llm_conf(self, llm_conf: Dict) -> Dict:
        """``load_llm`` keywords for this phase: LoRA adapters come in phase 2 only."""
        if self.phase == 1 and llm_conf.get("lora"):
            logging.info("phase 1 trains the projector only: LoRA is added in phase 2")
            return dict(llm_conf, lora=None)
        return llm_conf
