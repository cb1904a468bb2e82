"""``mmgpt bench``: mmgpt measured against transformers' Llava in the same run, and its own speed-ups.

One module per measurement, each exposing ``sides(settings, ...)`` (named factories of step
functions) for :func:`mmgpt.bench.timing.alternate`:

- :mod:`.train_step`  train step vs ``LlavaForConditionalGeneration`` at equal size (fp32, bf16)
- :mod:`.generation`  prefill latency and decode tokens/s through each model's ``generate``
- :mod:`.packing`     useful tokens/s packed vs padded vs length-grouped
- :mod:`.cache`       stage-1 epoch with the frozen-feature cache vs encoding on the fly
- :mod:`.audio`       batched log-mel vs librosa per clip
- :mod:`.mfu`         model FLOPs utilisation of the ``small`` preset against the measured matmul peak

:mod:`.peers` builds the equal-size pair, :mod:`.worker` runs one measurement per child process,
:mod:`.report` turns results into ratios, targets, a table, JSON and the BENCHMARKS.md section,
:mod:`.cli` is the command.
"""
