"""The policy for a model's frozen pretrained parts (the LLM, a pretrained encoder).

One place for what happens to submodules that were loaded from pretrained files and
are not trained:

- checkpoints: their weights are left out of the state dict (a 1.5B-parameter LLM is
  not copied into every epoch's ``.pth``; they come back from their own files), and a
  load that lacks them is not an error; trainable parts under them (LoRA adapters, a
  fine-tuned encoder) are saved as usual. ``save_frozen_pretrained`` keeps them all.
- dtype: ``model.to(dtype=...)`` moves them (device) but keeps the dtype they were
  loaded in. ESPnet's trainer calls ``model.to(dtype=train_dtype, device=...)``
  (float32 by default) after building the model, which would undo ``dtype: auto``
  (bf16) of a frozen LLM.

A model mixes :class:`FrozenPretrainedPolicy` in, sets ``pretrained_prefixes`` and
``save_frozen_pretrained`` and calls :meth:`FrozenPretrainedPolicy.install_frozen_policy`
once built.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch


def to_target(*args, **kwargs) -> Tuple[Optional[torch.device], Optional[torch.dtype], bool]:
    """``(device, dtype, non_blocking)`` of a ``Module.to(...)`` call, in each of its
    documented forms: ``to(device, dtype, non_blocking)``, ``to(dtype)``,
    ``to(tensor)`` and the keywords ``device``, ``dtype``, ``non_blocking``, ``tensor``."""
    device, dtype = kwargs.get("device"), kwargs.get("dtype")
    non_blocking = kwargs.get("non_blocking", False)
    if kwargs.get("tensor") is not None:
        args = (kwargs["tensor"],) + args
    for a in args:
        if isinstance(a, torch.Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, bool):
            non_blocking = a
        elif a is not None:
            device = a
    return (None if device is None else torch.device(device)), dtype, bool(non_blocking)


class FrozenPretrainedPolicy:
    """Mixin for a ``torch.nn.Module``: the checkpoint and dtype policy above."""

    pretrained_prefixes: Tuple[str, ...] = ()
    save_frozen_pretrained: bool = False

    def install_frozen_policy(self) -> None:
        self._register_state_dict_hook(FrozenPretrainedPolicy._drop_frozen_pretrained)
        self.register_load_state_dict_post_hook(FrozenPretrainedPolicy._allow_missing_frozen)

    def frozen_pretrained_names(self) -> set:
        """Parameter and buffer names under ``pretrained_prefixes`` that do not train."""
        # remove_duplicate=False: tied weights (lm_head = embed_tokens) under every name
        params = list(self.named_parameters(remove_duplicate=False))
        trainable = {n for n, p in params if p.requires_grad}
        names = [n for n, _ in params] + [n for n, _ in self.named_buffers(remove_duplicate=False)]
        return {n for n in names if n.startswith(self.pretrained_prefixes) and n not in trainable}

    @staticmethod
    def _drop_frozen_pretrained(module, state_dict, prefix, local_metadata):
        if module.save_frozen_pretrained:
            return state_dict
        for name in module.frozen_pretrained_names():
            state_dict.pop(prefix + name, None)
        return state_dict

    @staticmethod
    def _allow_missing_frozen(module, incompatible_keys):
        frozen = module.frozen_pretrained_names()
        missing = incompatible_keys.missing_keys
        for key in list(missing):
            parts = key.split(".")
            if any(".".join(parts[i:]) in frozen for i in range(len(parts))):
                missing.remove(key)

    def to(self, *args, **kwargs):
        """Like ``Module.to``, but a dtype leaves the pretrained submodules alone."""
        device, dtype, non_blocking = to_target(*args, **kwargs)
        if dtype is None:
            return super().to(*args, **kwargs)
        if device is not None:
            super().to(device=device, non_blocking=non_blocking)
        keep = [self.get_submodule(p.rstrip(".")) for p in self.pretrained_prefixes]

        def convert(t):
            return t.to(dtype, non_blocking=non_blocking) if t.is_floating_point() else t

        def cast(module):
            if any(module is k for k in keep):
                return
            module._apply(convert, recurse=False)
            for child in module.children():
                cast(child)

        cast(self)
        return self
