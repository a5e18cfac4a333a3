#!/usr/bin/env python3
"""Stage 15 check: the exported stock model's hypotheses equal ours on the same utterances.

Usage: compare_hyps.py <export hyps text> <reference hyps text (a superset)>
Exits 1 and names the utterances when any hypothesis differs.
"""
import sys

from espnet_otreg.data.datadir import read_kv

exported = read_kv(sys.argv[1], allow_empty_value=True)
ours = read_kv(sys.argv[2], allow_empty_value=True)
diff = [u for u in exported if exported[u] != ours.get(u)]
if diff:
    for u in diff[:10]:
        print(f"  {u}: export {exported[u]!r} vs ours {ours.get(u)!r}", file=sys.stderr)
    sys.exit(f"ERROR: the exported model decodes {len(diff)} of {len(exported)} utterances "
             "differently")
print(f"export check: {len(exported)} utterances decoded identically by stock ESPnet")
