"""``mmgpt demo [CHECKPOINT]``: start the gradio demo in the browser (127.0.0.1:7860 by default)."""

from __future__ import annotations

import argparse

from mmgpt.demo.session import DEFAULT_MAX_AUDIO_SECONDS, DEFAULT_MAX_PIXELS
from mmgpt.errors import MMGPTError


def add_cli(p: argparse.ArgumentParser) -> None:
    """Add the ``demo`` options to ``p`` and set its ``run`` function.

    Args:
        p: the ``mmgpt demo`` subparser.
    """
    from mmgpt.cli.common import checkpoint_arg

    p.description = ("Start the gradio demo: chat about an image and a clip, caption them, with examples "
                     "from held-out ShapesTones items. Serves on 127.0.0.1 (this machine only) by default.")
    checkpoint_arg(p, optional=True)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 = every "
                   "interface: the demo has no login)")
    p.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    p.add_argument("--max-file-size", default="10mb", help="largest upload (default 10mb)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="largest image, width x height (default %(default)s)")
    p.add_argument("--max-audio-seconds", type=float, default=DEFAULT_MAX_AUDIO_SECONDS,
                   help="longest clip in seconds (default %(default)s)")
    p.add_argument("--queue-size", type=int, default=32, help="requests waiting at most (default 32)")
    p.add_argument("--concurrency", type=int, default=1, help="model requests handled at once (default 1)")
    p.add_argument("--examples-dir", default=None, help="where example items are written (default: temp dir)")
    p.add_argument("--device", default=None, help="torch device (default cuda when available, else cpu)")

    def run(a: argparse.Namespace) -> int:
        from mmgpt.cli.common import load_checkpoint

        try:
            from mmgpt.demo.app import build_app, launch
        except ImportError as e:
            raise MMGPTError(f"the demo needs gradio ({e}); install it with `pip install -e '.[demo]'`") from e
        model = load_checkpoint(a.checkpoint)
        model.to(_device(a.device))
        app = build_app(model, examples_dir=a.examples_dir, max_file_size=a.max_file_size,
                        max_pixels=a.max_pixels, max_audio_seconds=a.max_audio_seconds,
                        queue_size=a.queue_size, concurrency=a.concurrency, title=f"mmgpt · {a.checkpoint}")
        print(f"mmgpt demo: serving {a.checkpoint} at http://{a.host}:{a.port} (Ctrl+C to stop)", flush=True)
        launch(app, host=a.host, port=a.port, quiet=True)
        return 0

    p.set_defaults(run=run)


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")
