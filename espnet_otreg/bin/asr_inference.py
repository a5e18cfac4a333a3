"""Decode with an ASR model, GM-OT included: the stock ``espnet2.bin.asr_inference`` CLI.

GM-OT's inference is the acoustic encoder + CTC alone (the teacher, the adapter and
the coupling are training-only), so this is ESPnet's own decoder with our model class
registered. CTC greedy: ``--ctc_weight 1.0 --beam_size 1``; CTC prefix beam search:
``--ctc_weight 1.0 --beam_size 10``. Output in ``<output_dir>/1best_recog/text``.
"""

import espnet_otreg


def main(cmd=None):
    espnet_otreg.register()
    from espnet2.bin.asr_inference import main as stock_main

    stock_main(cmd)


if __name__ == "__main__":
    main()
