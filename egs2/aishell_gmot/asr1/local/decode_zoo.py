#!/usr/bin/env python3
"""Decode with a model from the model zoo route, as a user of stock ESPnet would:
``Speech2Text.from_pretrained(<zip, or Hub name>)``, in a process where espnet_otreg is
blocked from importing (``--block_espnet_otreg true``, the default): the export must
need nothing of ours.

    python local/decode_zoo.py --model exp/asr_x/asr_model_export_ctc.zip \\
        --wav_scp dump/raw/test/wav.scp --keys 10 --config conf/decode_ctc_greedy.yaml \\
        --out exp/asr_x/zoo_check/text [--cachedir exp/asr_x/zoo_cache]

``--cachedir``: where espnet_model_zoo unpacks the zip (its default is its own
package directory); the loading code is the same ``ModelDownloader`` that
``from_pretrained`` calls.
"""

import argparse
import inspect
import os
import sys
from pathlib import Path

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", required=True, help="packed zip, or a Hub name")
p.add_argument("--wav_scp", type=Path, required=True)
p.add_argument("--keys", type=int, default=0, help="first N utterances (0: all)")
p.add_argument("--config", type=Path, default=None, help="decoding config (yaml)")
p.add_argument("--out", type=Path, required=True)
p.add_argument("--cachedir", type=Path, default=None)
p.add_argument("--block_espnet_otreg", default="true", choices=["true", "false"])
a = p.parse_args()
if a.block_espnet_otreg == "true":
    if os.environ.get("ESPNET_OTREG_AUTOLOAD") != "0":
        # An installed espnet_otreg hooks every interpreter's start-up (setup.py): start
        # again without it, as a user who never installed the plugin.
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  dict(os.environ, ESPNET_OTREG_AUTOLOAD="0"))
    sys.modules["espnet_otreg"] = None  # any import of it now raises ImportError

import soundfile  # noqa: E402
import yaml  # noqa: E402
from espnet2.bin.asr_inference import Speech2Text  # noqa: E402

opts = yaml.safe_load(a.config.read_text()) if a.config else {}
known = inspect.signature(Speech2Text.__init__).parameters
opts = {k: v for k, v in (opts or {}).items() if k in known}
if a.cachedir is None:
    s2t = Speech2Text.from_pretrained(a.model, **opts)
else:
    from espnet_model_zoo.downloader import ModelDownloader

    s2t = Speech2Text(**ModelDownloader(a.cachedir).download_and_unpack(a.model), **opts)
lines = [l.split(maxsplit=1) for l in a.wav_scp.read_text(encoding="utf-8").splitlines() if l.strip()]
if a.keys:
    lines = lines[: a.keys]
out = []
for utt, path in lines:
    try:
        speech, rate = soundfile.read(path)
    except Exception as e:  # noqa: BLE001
        sys.exit(f"decode_zoo: error: utterance {utt!r}: cannot read {path}: {e}")
    text = s2t(speech)[0][0]
    out.append(f"{utt} {text}".rstrip())
a.out.parent.mkdir(parents=True, exist_ok=True)
a.out.write_text("\n".join(out) + "\n", encoding="utf-8")
print(f"decode_zoo: {len(out)} utterances -> {a.out}")
