"""Data preflight: ``mmgpt data check`` (:mod:`.check`), ``mmgpt data inspect`` (:mod:`.inspection`)
and the ``mmgpt data`` command line (:mod:`.cli`). Built on the core: it runs a model's processor."""
