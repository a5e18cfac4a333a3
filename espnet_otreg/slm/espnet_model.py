"""ESPnetSLMModel: speech encoder -> projector -> frozen causal LLM, with OTReg.

Training step for a batch (no Python loop over utterances):

1. ``z = projector(encoder(speech))``: speech embeddings in the LLM's input space.
2. Input sequence per utterance, left-padded to the batch's longest:
   ``[prompt_pre] [z] [prompt_post] [transcript] [eos]`` (see ``espnet_otreg.slm.prompt``);
   cross-entropy on transcript tokens and eos only (mean over those tokens).
3. OTReg (phase 2, ``lambda_ot > 0``): ``espnet_otreg.slm.otreg.otreg_loss`` between ``z``
   and the LLM input embeddings of the transcript tokens.
4. "Base + CTC" baseline (phase 2, ``ctc_weight > 0``): CTC on ``z`` through the LLM's own
   (frozen) output head over its vocabulary, blank = the pad token. The paper's CTC
   head is not described; reusing the LM head adds no parameters (our choice).

``loss = CE + lambda_ot * L_OT + ctc_weight * L_CTC``.

Phases (:class:`espnet_otreg.slm.phase.PhasePlan`, which ``SLMTask`` reads too):
``phase: 1`` is CE only and trains the projector only; ``phase: 2`` adds OTReg / CTC,
LoRA if configured and the encoder if ``freeze_encoder: false``, initialised from phase
1 with ``--init_param``.

Sequence assembly and the length checks are pure functions over lengths
(:mod:`espnet_otreg.slm.sequence`); decoding is :mod:`espnet_otreg.slm.decode`.

Checkpoints: frozen pretrained weights (the LLM, an HF speech encoder) are left out of
``state_dict()`` (they come back from their name/path when the model is built) unless
``save_frozen_pretrained``; trainable ones (LoRA adapters, a fine-tuned encoder) are
kept. Loading accepts state dicts with or without them.

Bad utterances are skipped and counted in the stats, never silently: empty transcript
(``skip_empty``), fewer encoder frames than one projector step (``skip_short``), prompt
+ speech + transcript longer than the LLM's context (``skip_long``); each is logged with
its utterance id.
"""

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from espnet_otreg.ot import lengths_to_mask
from espnet_otreg.slm import decode
from espnet_otreg.slm.frozen import FrozenPretrainedPolicy
from espnet_otreg.slm.hf import context_length
from espnet_otreg.slm.otreg import OTRegOutput, otreg_loss
from espnet_otreg.slm.phase import PhasePlan
from espnet_otreg.slm.sequence import (
    SKIP_REASONS, length_check, plan_layout, speech_rows, token_ids,
)
from espnet_otreg.slm.stats_model import frontend_feats


#: The stats each loss writes, declared once: the empty-batch step writes the same keys
#: (NaN), since under DDP a rank whose keys differ pairs its all-gathers wrongly and hangs.
CE_STATS = ("loss_ce", "acc")
OT_STATS = ("loss_ot", "ot_entropy", "ot_cos", "ot_converged", "ot_ce_ratio")
CTC_STATS = ("loss_ctc", "ctc_infeasible")


class ESPnetSLMModel(FrozenPretrainedPolicy, AbsESPnetModel):
    """Speech-LLM for ASR with optional OTReg and CTC regularisers.

    Args:
        encoder: ESPnet ``AbsEncoder`` (e.g. :class:`~espnet_otreg.slm.encoder.HFWhisperEncoder`).
        projector: :class:`~espnet_otreg.slm.projector.FrameStackProjector`.
        llm: Hugging Face causal LM (optionally peft-wrapped).
        eos_token_id / pad_token_id: from the LLM's tokenizer.
        frontend, specaug, normalize: optional ESPnet modules before the encoder.
        phase: 1 or 2 (module docstring).
        lambda_ot: OTReg weight (0.3: our default; the value is not confirmed from
            arXiv 2508.08131); 0 = the base SLM.
        ctc_weight: auxiliary CTC weight ("Base + CTC"); 0 = off.
        freeze_encoder: keep the encoder (and frontend) fixed in phase 2 too.
        ot_cost, ot_epsilon, ot_tau, ot_grad, ot_dedup, ot_blank, ot_max_iter, ot_tol,
        ot_early_stop, ot_loss_scale:
            see :func:`espnet_otreg.slm.otreg.otreg_loss` (``loss_scale``: ``raw`` or
            ``normalized``, so that ``lambda_ot`` means the same whatever the
            embedding norms).
        ot_stats: with ``lambda_ot = 0`` still solve the OT problem (no gradient) to
            report ``loss_ot`` / ``ot_cos`` for the base system's modality gap.
        pretrained_prefixes: submodules loaded from pretrained files (kept out of
            checkpoints while frozen); None: the LLM and the encoder's
            ``pretrained_submodule`` if it has one (the HF Whisper encoder does).
        save_frozen_pretrained: keep them in checkpoints anyway.
        max_new_tokens: decoding length limit.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        projector: torch.nn.Module,
        llm: torch.nn.Module,
        eos_token_id: int,
        pad_token_id: int,
        frontend: Optional[torch.nn.Module] = None,
        specaug: Optional[torch.nn.Module] = None,
        normalize: Optional[torch.nn.Module] = None,
        phase: int = 2,
        lambda_ot: float = 0.3,
        ctc_weight: float = 0.0,
        freeze_encoder: bool = True,
        ot_cost: str = "sqeuclidean",
        ot_epsilon: float = 0.1,
        ot_tau: Optional[float] = None,
        ot_grad: str = "envelope",
        ot_dedup: bool = True,
        ot_blank: bool = True,
        ot_max_iter: int = 100,
        ot_tol: float = 1e-4,
        ot_early_stop: bool = False,
        ot_loss_scale: str = "raw",
        ot_stats: bool = True,
        pretrained_prefixes: Optional[Sequence[str]] = None,
        save_frozen_pretrained: bool = False,
        max_new_tokens: int = 256,
    ):
        super().__init__()
        self.phase_plan = PhasePlan(phase, freeze_encoder)
        if lambda_ot < 0 or ctc_weight < 0:
            raise ValueError(
                f"lambda_ot and ctc_weight must be >= 0, got {lambda_ot}, {ctc_weight}"
            )
        self.frontend, self.specaug, self.normalize = frontend, specaug, normalize
        self.encoder, self.projector, self.llm = encoder, projector, llm
        self.eos_token_id, self.pad_token_id = int(eos_token_id), int(pad_token_id)
        self.lambda_ot = self.phase_plan.loss_weight(lambda_ot)
        self.ctc_weight = self.phase_plan.loss_weight(ctc_weight)
        self.ot_conf = dict(
            cost=ot_cost, epsilon=ot_epsilon, tau=ot_tau, grad=ot_grad,
            max_iter=ot_max_iter, tol=ot_tol, early_stop=ot_early_stop,
            loss_scale=ot_loss_scale,
        )
        self.ot_dedup, self.ot_blank = ot_dedup, ot_blank
        self.ot_stats = ot_stats
        self.max_context = context_length(llm)
        self.max_new_tokens = max_new_tokens
        if pretrained_prefixes is None:
            pretrained_prefixes = ["llm."]
            sub = getattr(encoder, "pretrained_submodule", None)
            if sub:
                pretrained_prefixes.append(f"encoder.{sub}.")
        self.pretrained_prefixes = tuple(pretrained_prefixes)
        self.save_frozen_pretrained = save_frozen_pretrained

        if self.phase_plan.projector_only:
            for name, p in self.named_parameters():
                p.requires_grad_(name.startswith("projector."))
        else:
            for m in (frontend, normalize, encoder):
                if m is not None:
                    m.requires_grad_(not self.phase_plan.encoder_frozen)
        self.install_frozen_policy()  # checkpoints and dtype: espnet_otreg.slm.frozen

    def train(self, mode: bool = True):
        """Frozen submodules stay in eval mode (no dropout in fixed feature extractors)."""
        super().train(mode)
        if mode:
            for m in (self.frontend, self.normalize, self.encoder, self.llm):
                if m is not None and not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self

    # ----------------------------------------------------------------- speech side
    def collect_feats(self, speech, speech_lengths, **kwargs) -> Dict[str, torch.Tensor]:
        return frontend_feats(self.frontend, speech, speech_lengths)

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        """Speech ``(B, T[, D])`` -> projector outputs ``(B, N, D_llm)`` float32, lengths."""
        trainable = any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
            if self.frontend is not None:
                feats, lens = self.frontend(speech, speech_lengths)
            else:
                feats, lens = speech, speech_lengths
            if self.specaug is not None and self.training:
                feats, lens = self.specaug(feats, lens)
            if self.normalize is not None:
                feats, lens = self.normalize(feats, lens)
            enc, enc_lens, _ = self.encoder(feats, lens)
        z, z_lens = self.projector(enc.float(), enc_lens)
        return z, z_lens

    # ----------------------------------------------------------------- sequences
    def assemble(
        self,
        prompt_pre: torch.Tensor,
        prompt_pre_lengths: torch.Tensor,
        z: torch.Tensor,
        z_lens: torch.Tensor,
        prompt_post: torch.Tensor,
        prompt_post_lengths: torch.Tensor,
        text: Optional[torch.Tensor] = None,
        text_lengths: Optional[torch.Tensor] = None,
    ):
        """Left-padded LLM inputs ``[pre][z][post]([text][eos])``
        (:mod:`espnet_otreg.slm.sequence`).

        Returns inputs_embeds ``(B, L, D)``, attention_mask ``(B, L)``, position_ids
        ``(B, L)`` (0 on padding, as ``generate`` makes them) and labels ``(B, L)``
        (token ids on transcript and eos, -100 elsewhere; None without text).
        """
        if (text is None) != (text_lengths is None):
            raise ValueError("assemble: give text and text_lengths together, or neither")
        layout = plan_layout(prompt_pre_lengths, z_lens, prompt_post_lengths, text_lengths)
        ids, labels = token_ids(layout, prompt_pre, prompt_post, self.pad_token_id,
                                self.eos_token_id, text)
        embeds = self.llm.get_input_embeddings()(ids)
        speech = speech_rows(layout, z).to(embeds.dtype)
        embeds = torch.where(layout.in_speech[:, :, None], speech, embeds)
        return embeds, layout.real.long(), layout.position.clamp_min(0), labels

    def check_batch(
        self, z_lens, text_lengths, pre_lens, post_lens, utt_id=None, extra_tokens: int = 0
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], List[Optional[str]]]:
        """Which utterances of a batch the model can use (:data:`SKIP_REASONS`).

        ``text_lengths`` None (decoding): no transcript, so none is empty and none adds
        to the length; ``extra_tokens`` reserves positions (1 for the first generated
        token). Returns a bool ``(B,)`` valid mask, the count per reason (the stats) and
        per utterance None or the reason it is skipped; each skip is logged with its id.
        """
        valid, masks, total = length_check(
            pre_lens, z_lens, post_lens, text_lengths, self.max_context, extra_tokens
        )
        reasons: List[Optional[str]] = [None] * z_lens.size(0)
        if not bool(valid.all()):
            for key, bad in masks.items():
                for i in bad.nonzero().flatten().tolist():
                    reasons[i] = SKIP_REASONS[key]
                    detail = (
                        f": {int(total[i])} positions > LLM context {self.max_context}"
                        if key == "skip_long" else ""
                    )
                    name = utt_id[i] if utt_id is not None else f"#{i}"
                    logging.warning(f"utterance {name}: skipped ({reasons[i]}{detail})")
        return valid, {k: v.sum().float() for k, v in masks.items()}, reasons

    # ----------------------------------------------------------------- training
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        prompt_pre: torch.Tensor,
        prompt_pre_lengths: torch.Tensor,
        prompt_post: torch.Tensor,
        prompt_post_lengths: torch.Tensor,
        utt_id: Optional[List[str]] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, Optional[torch.Tensor]], torch.Tensor]:
        z, z_lens = self.encode(speech, speech_lengths)
        valid, stats, _ = self.check_batch(
            z_lens, text_lengths, prompt_pre_lengths, prompt_post_lengths, utt_id
        )
        if not bool(valid.all()):
            keep = valid.nonzero().flatten()
            z, z_lens = z[keep], z_lens[keep]
            text, text_lengths = text[keep], text_lengths[keep]
            prompt_pre, prompt_pre_lengths = prompt_pre[keep], prompt_pre_lengths[keep]
            prompt_post, prompt_post_lengths = prompt_post[keep], prompt_post_lengths[keep]
        n = z.size(0)
        if n == 0:  # nothing to learn from: a zero loss that keeps the graph
            # Every trainable parameter in it (LoRA included): DDP expects a gradient
            # for each of them at every step.
            loss = z.sum() * 0.0 + sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
            # The same keys as every other step, valued NaN ("no value here"), not None:
            # under DDP ESPnet's trainer drops None stats and then all-gathers each
            # remaining key in turn, so a rank with fewer keys pairs its collectives
            # with the wrong keys of the other ranks and the job hangs. NaN is what
            # ESPnet's recursive_sum averages out across ranks (nanmean), and what its
            # reporter leaves out of the epoch's mean in a single process.
            nan = torch.full((), float("nan"), device=loss.device)
            stats.update({k: nan for k in self.loss_stat_keys()}, loss=loss.detach())
            return force_gatherable((loss, stats, torch.tensor(1.0)), loss.device)
        z = z[:, : int(z_lens.max())]
        text = text[:, : int(text_lengths.max())]

        embeds, attn, pos, labels = self.assemble(
            prompt_pre, prompt_pre_lengths, z, z_lens, prompt_post, prompt_post_lengths,
            text, text_lengths,
        )
        k = text.size(1) + 1  # logits for the positions that predict transcript + eos
        out = self.llm(
            inputs_embeds=embeds, attention_mask=attn, position_ids=pos,
            logits_to_keep=k + 1, use_cache=False,
        )
        logits = out.logits[:, :-1].float()
        target = labels[:, -k:]
        loss_ce = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100
        )
        with torch.no_grad():
            real = target != -100
            acc = ((logits.argmax(-1) == target) & real).sum() / real.sum()
        loss = loss_ce
        stats.update(zip(CE_STATS, (loss_ce.detach(), acc)))

        if self.lambda_ot > 0 or self.ot_stats:
            loss_ot, stats_ot = self.ot_loss(z, z_lens, text, text_lengths)
            stats.update(stats_ot)
            stats[OT_STATS[-1]] = loss_ot.detach() / loss_ce.detach().clamp_min(1e-8)  # ot_ce_ratio
            if self.lambda_ot > 0:
                loss = loss + self.lambda_ot * loss_ot

        if self.ctc_weight > 0:
            loss_ctc, infeasible = self.ctc_loss(z, z_lens, text, text_lengths)
            loss = loss + self.ctc_weight * loss_ctc
            stats.update(zip(CTC_STATS, (loss_ctc.detach(), infeasible)))
        stats["loss"] = loss.detach()
        return force_gatherable((loss, stats, torch.tensor(float(n))), loss.device)

    def loss_stat_keys(self) -> Tuple[str, ...]:
        """The stats the losses of this model write at every step (each loss declares
        its own: CE_STATS, OT_STATS, CTC_STATS); an empty batch writes the same keys."""
        keys = CE_STATS
        if self.lambda_ot > 0 or self.ot_stats:
            keys += OT_STATS
        if self.ctc_weight > 0:
            keys += CTC_STATS
        return keys

    def otreg(self, z, z_lens, text, text_lengths) -> OTRegOutput:
        """OTReg of a batch with the model's OT options, per utterance (the loss and
        ``modality_gap`` both use it): ``z`` against the LLM input embeddings of
        ``text``, de-duplicated and with the blank anchor if configured."""
        emb = self.llm.get_input_embeddings()
        return otreg_loss(
            z, lengths_to_mask(z_lens, z.size(1)),
            emb(text.clamp_min(0)), lengths_to_mask(text_lengths, text.size(1)),
            text_ids=text if self.ot_dedup else None,
            blank=emb.weight[self.pad_token_id] if self.ot_blank else None,
            **self.ot_conf,
        )

    def ot_loss(self, z, z_lens, text, text_lengths):
        """OTReg loss (mean over utterances) and its stats; no graph when lambda_ot = 0."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.lambda_ot > 0):
            res = self.otreg(z, z_lens, text, text_lengths)
            loss_ot = res.loss.mean()
        stats = dict(zip(OT_STATS, (
            loss_ot.detach(), res.entropy.mean(), res.cosine.mean(),
            res.converged.float().mean())))
        return loss_ot, stats

    def ctc_loss(self, z, z_lens, text, text_lengths):
        """CTC over the LLM vocabulary through its output head; blank = pad token."""
        head = self.llm.get_output_embeddings()
        logp = head(z.to(head.weight.dtype)).float().log_softmax(-1)
        loss = F.ctc_loss(
            logp.transpose(0, 1), text.clamp_min(0), z_lens, text_lengths,
            blank=self.pad_token_id, reduction="none", zero_infinity=True,
        )
        infeasible = (text_lengths > z_lens).sum().float()
        return loss.sum() / z.size(0), infeasible

    # ----------------------------------------------------------------- decoding
    generate = decode.generate  # greedy or beam decoding of a batch (its signature, docs)
