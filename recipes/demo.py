"""Start the gradio demo on a trained model: the same app as `mmgpt demo`, as a script to copy and edit.

    python recipes/demo.py                                  # runs/quickstart/final, http://127.0.0.1:7860
    python recipes/demo.py runs/my_run/final --port 8000
    python recipes/demo.py --host 0.0.0.0                   # reachable from the network: there is no login

Make the default model first with `make quickstart`. Everything the app does lives in
mmgpt/demo/app.py (`build_app`, `launch`); this file only picks the model and the settings.
"""

from __future__ import annotations

import argparse
import sys

from mmgpt.cli.common import DEFAULT_CHECKPOINT, load_checkpoint
from mmgpt.demo import build_app, launch
from mmgpt.errors import MMGPTError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", nargs="?", default=DEFAULT_CHECKPOINT)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    a = p.parse_args(argv)
    try:
        model = load_checkpoint(a.checkpoint)
    except MMGPTError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    app = build_app(
        model,
        max_file_size="10mb",  # uploads, checked by gradio
        max_pixels=16_000_000,  # images, checked from the header before decoding
        max_audio_seconds=30.0,  # clips, likewise
        queue_size=32,  # requests waiting; more are told the queue is full
        concurrency=1,  # model requests at once (generation is serialised anyway)
    )
    print(f"serving {a.checkpoint} at http://{a.host}:{a.port} (Ctrl+C to stop)", flush=True)
    launch(app, host=a.host, port=a.port, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
