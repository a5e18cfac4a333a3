#!/usr/bin/env python3
"""Stage 1: FLEURS (and an optional cross-domain test set) -> data/{train,dev,test,...}.

Without --fleurs_dir, FLEURS is downloaded from the Hugging Face Hub into
--download_dir (parquet conversion by default; see espnet_otreg.data.hf_parquet) and
read from there. With --fleurs_dir, a local copy in the FLEURS layout is read
(espnet_otreg.data.fleurs). Resumable: completed languages are not fetched again.
"""

import argparse
import logging
import sys

from espnet_otreg.data.fleurs import SPLITS, FleursDataError, parse_langs, prepare_split


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--langs", default="default", help="'default', 'all', or codes (en_us,fr_fr ...)")
    p.add_argument("--fleurs_dir", default="", help="local FLEURS copy; empty: download")
    p.add_argument("--download_dir", default="downloads/fleurs")
    p.add_argument("--fleurs_source", default="parquet", choices=["parquet", "archive"])
    p.add_argument("--hf_cache_dir", default=None)
    p.add_argument("--data_dir", default="data")
    p.add_argument("--transcript", default="raw", choices=["raw", "normalized"])
    p.add_argument("--on_error", default="raise", choices=["raise", "skip"])
    p.add_argument("--max_utts_per_lang", type=int, default=0, help="0: all (debugging aid)")
    p.add_argument("--cross_dir", default="", help="Common Voice copy for the cross-domain test")
    p.add_argument("--covost_dir", default="", help="CoVoST-2 tsvs (test split); optional")
    p.add_argument("--cross_name", default="test_covost2")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        langs = parse_langs(a.langs)
        src = a.fleurs_dir
        if not src:
            from espnet_otreg.data.hf_parquet import download_fleurs

            download_fleurs(a.download_dir, langs, SPLITS, source=a.fleurs_source,
                            cache_dir=a.hf_cache_dir)
            src = a.download_dir
        for split in SPLITS:
            prepare_split(src, langs, split, f"{a.data_dir}/{split}", transcript=a.transcript,
                          on_error=a.on_error, max_utts_per_lang=a.max_utts_per_lang or None)
        if a.cross_dir:
            from espnet_otreg.data.common_voice import prepare_cross_domain

            prepare_cross_domain(a.cross_dir, langs, f"{a.data_dir}/{a.cross_name}",
                                 covost_dir=a.covost_dir or None, on_error=a.on_error,
                                 max_utts_per_lang=a.max_utts_per_lang or None)
    except FleursDataError as e:
        sys.exit(f"data_prep.py: error: {e}")


if __name__ == "__main__":
    main()
