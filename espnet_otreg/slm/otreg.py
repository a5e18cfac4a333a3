r"""OTReg: optimal transport regularisation between speech and transcript embeddings.

For one utterance, ``z_1..z_N`` are the projector's speech embeddings (in the LLM's
input space) and ``e_1..e_M`` the LLM's input embeddings of the transcript tokens. With
a cost matrix ``C`` and uniform marginals ``a = 1/N``, ``b = 1/M``:

.. math::

    P^\star = \arg\min_{P \in U(a, b)} \langle C, P \rangle - \epsilon H(P), \qquad
    \mathcal{L}_{OT} = \sum_{ij} P^\star_{ij} C_{ij},

and the training loss is ``CE + lambda_ot * L_OT``. No labels beyond the transcript and
no parameters are added.

What the paper (arXiv 2508.08131) states: an entropic OT plan between the adapter's
speech embeddings and the LLM's embeddings of the transcript, its transport cost added
to the LM cross-entropy, no extra labels and no learnable parameters. The rest is ours,
each an option:

- Cost: the squared Euclidean distance (``cost="sqeuclidean"``, default, our reading of
  the paper's transport cost) or ``1 - cos`` (``cost="cosine"``, the similarity-based
  alternative).
- Marginals: uniform. Unbalanced marginals (``tau``, KL relaxation); None = balanced.
- Targets: de-duplicated transcript embeddings (``dedup``, a token id that occurs twice
  in a transcript is one target; our reading of the paper's "unique transcript
  embeddings") and the pad embedding as a "blank" anchor for speech frames with no
  token (``blank``); both on by default. The blank column gets the same uniform mass as
  a token.
- Gradient: the plan is treated as a constant (``grad="envelope"``, default: the
  gradient of the converged OT value, ``dL/dC = P*``, the OT library's ``envelope``
  contract) or differentiated through the unrolled Sinkhorn iterations
  (``grad="autodiff"``). The paper does not say; the envelope costs nothing extra.
- Transcript embeddings are detached: they are the target (frozen in the paper's setup
  anyway).
- Scale (our choice): the plan is solved on ``C / max(C)`` (per utterance, detached), so
  ``epsilon`` is relative to the largest cost whatever the embedding norms. The loss is
  ``<P*, C>`` on the unscaled ``C`` (``loss_scale="raw"``, default), whose size follows
  the embedding norms (a squared distance between LLM embeddings can be in the
  hundreds, so ``lambda_ot`` means a different weight for each LLM), or ``<P*, C /
  max(C)>`` (``loss_scale="normalized"``, in [0, 1] for every LLM).
"""

from dataclasses import dataclass
from typing import Optional

import torch

from espnet_otreg import ot
from espnet_otreg.ot import measures


@dataclass
class OTRegOutput:
    """Per utterance ``(B,)``: ``loss`` = <P, C>; ``entropy`` = -sum P log P of the plan
    normalised to mass 1; ``cosine`` = plan-weighted mean cosine between speech frames and
    their matched targets (sum P_ij cos(z_i, y_j) / sum P); ``converged`` Sinkhorn flag.
    ``plan`` ``(B, N, M')`` and ``target_mask`` ``(B, M')`` include the blank column."""

    loss: torch.Tensor
    entropy: torch.Tensor
    cosine: torch.Tensor
    converged: torch.Tensor
    plan: torch.Tensor
    target_mask: torch.Tensor


def first_occurrence_mask(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, M)`` True where a real token id occurs for the first time in its row."""
    same = (ids[:, :, None] == ids[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    earlier = torch.ones(ids.size(1), ids.size(1), dtype=torch.bool, device=ids.device).tril(-1)
    return mask & ~(same & earlier).any(-1)


def otreg_loss(
    speech: torch.Tensor,
    speech_mask: torch.Tensor,
    text: torch.Tensor,
    text_mask: torch.Tensor,
    text_ids: Optional[torch.Tensor] = None,
    blank: Optional[torch.Tensor] = None,
    cost: str = "sqeuclidean",
    epsilon: float = 0.1,
    tau: Optional[float] = None,
    grad: str = "envelope",
    max_iter: int = 100,
    tol: float = 1e-4,
    early_stop: bool = False,
    loss_scale: str = "raw",
) -> OTRegOutput:
    """OTReg loss of a padded batch.

    Args:
        speech: ``(B, N, D)`` projector outputs; speech_mask ``(B, N)`` bool.
        text: ``(B, M, D)`` LLM input embeddings of the transcripts; text_mask ``(B, M)``.
        text_ids: ``(B, M)`` token ids; given, repeated ids are merged (de-duplication).
        blank: ``(D,)`` embedding appended to every transcript as a blank anchor, or None.
        cost: ``"sqeuclidean"`` or ``"cosine"`` (``1 - cos``).
        epsilon: entropic regularisation relative to the largest cost of each pair.
        tau: KL marginal relaxation (unbalanced OT), None = balanced.
        grad: ``"envelope"`` (plan constant) or ``"autodiff"`` (through Sinkhorn).
        max_iter, tol: Sinkhorn iterations and marginal tolerance.
        early_stop: stop once all pairs converged (one host sync per 10 iterations);
            default False: exactly ``max_iter`` iterations, no host sync in training
            (``converged`` still says whether ``tol`` was reached).
        loss_scale: ``"raw"`` (``<P, C>``) or ``"normalized"`` (``<P, C / max C>``, the
            cost the plan is solved on); see the module docstring.
    """
    if cost not in ("sqeuclidean", "cosine"):
        raise ValueError(f"cost must be 'sqeuclidean' or 'cosine', got {cost!r}")
    if grad not in ("envelope", "autodiff"):
        raise ValueError(f"grad must be 'envelope' or 'autodiff', got {grad!r}")
    if loss_scale not in ("raw", "normalized"):
        raise ValueError(f"loss_scale must be 'raw' or 'normalized', got {loss_scale!r}")
    if speech.dtype not in (torch.float32, torch.float64):  # bf16/fp16 -> float32
        speech = speech.float()
    text = text.detach().to(speech.dtype)
    if text_ids is not None:
        text_mask = first_occurrence_mask(text_ids, text_mask)
    if blank is not None:
        B = text.size(0)
        text = torch.cat([text, blank.detach().to(text.dtype).expand(B, 1, -1)], 1)
        text_mask = torch.cat([text_mask, text_mask.new_ones(B, 1)], 1)
    fn = ot.sqeuclidean if cost == "sqeuclidean" else ot.cosine
    C = fn(speech, text, speech_mask, text_mask)
    scale = ot.max_cost_scale(C)
    res = ot.sinkhorn(
        C / scale,
        speech_mask,
        text_mask,
        epsilon=epsilon,
        tau=tau,
        max_iter=max_iter,
        tol=tol,
        early_stop=early_stop,
        grad=grad,
    )
    plan = res.plan  # constant under "envelope": d loss / d C = plan
    loss = (plan * (C if loss_scale == "raw" else C / scale)).sum((1, 2))
    with torch.no_grad():
        p = plan.detach()
        mass = p.sum((1, 2)).clamp_min(1e-12)
        entropy = measures.plan_entropy(p)
        cos = 1.0 - ot.cosine(speech.detach(), text, speech_mask, text_mask)
        cosine = (p * cos).sum((1, 2)) / mass
    return OTRegOutput(loss, entropy, cosine, res.converged, plan, text_mask)
