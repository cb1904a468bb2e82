"""Serving: requests/s of ``mmgpt serve`` with 16 concurrent clients, batched vs one at a time.

Both sides serve the same randomly initialised model (the quickstart preset; ``tiny`` with
``--quick``) over HTTP on loopback: ``batched`` runs waiting requests in one generate (up to 16,
a 10 ms window), ``one_at_a_time`` with ``max_batch=1``. A measured unit is 16 concurrent
chat requests, each an image and a question, greedy, 16 new tokens at most, sent with httpx
from 16 threads and all answered.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from mmgpt.bench.peers import preset_path
from mmgpt.bench.timing import Settings, SideFactory

CONCURRENT, TOKENS = 16, 16


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _requests(n: int, size: int) -> list[dict]:
    import numpy as np
    from PIL import Image

    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        out.append({"model": "bench", "max_tokens": TOKENS, "temperature": 0, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": f"What is in picture {i}?"}]}]})
    return out


def sides(settings: Settings) -> dict[str, SideFactory]:
    """``batched`` and ``one_at_a_time``: 16 concurrent requests each."""
    import httpx
    import torch
    import uvicorn

    from mmgpt.model import MMGPT
    from mmgpt.serve import Limits, build_app

    torch.manual_seed(settings.seed)
    model = MMGPT.from_config(str(preset_path("tiny" if settings.quick else "quickstart"))).eval()
    bodies = _requests(CONCURRENT, model.config.vision.img_size)

    def make(max_batch: int):
        def factory():
            app = build_app(model, "bench", max_batch=max_batch, batch_window_ms=10,
                            limits=Limits(max_tokens=TOKENS, queue_size=4 * CONCURRENT))
            port = _port()
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            threading.Thread(target=server.run, daemon=True).start()
            while not server.started:
                time.sleep(0.01)
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
            pool = ThreadPoolExecutor(CONCURRENT)

            def one(body: dict) -> int:
                r = client.post("/v1/chat/completions", json=body)
                r.raise_for_status()
                return r.json()["usage"]["completion_tokens"]

            def step() -> dict[str, float]:
                t0 = time.perf_counter()
                tokens = sum(pool.map(one, bodies))
                return {"requests_per_s": CONCURRENT / (time.perf_counter() - t0), "tokens": float(tokens)}

            info = {"concurrent": CONCURRENT, "max_tokens": TOKENS, "max_batch": max_batch,
                    "preset": "tiny" if settings.quick else "quickstart"}
            return step, info

        return factory

    return {"batched": make(CONCURRENT), "one_at_a_time": make(1)}
