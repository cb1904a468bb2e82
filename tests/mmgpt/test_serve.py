"""``mmgpt serve``: the OpenAI-compatible server, talked to with the official ``openai`` client.

Answers equal the model's own (``model.chat``), streamed pieces join into the same answer,
concurrent requests are batched and each still gets its own answer, every error has its
OpenAI status and body, and the server keeps serving after each."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
import uvicorn

from mmgpt.serve import Limits, build_app
from tests.conftest import free_port, make_image, make_wave, readable_model

KEY, TOKENS = "sk-mmgpt-test", 8


def start(app) -> tuple[str, uvicorn.Server]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}/v1", server


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(model, app, base url, media folder) on a free loopback port."""
    model = readable_model()
    folder = tmp_path_factory.mktemp("media")
    make_image(1, size=48).save(folder / "local.png")
    app = build_app(model, "tiny", api_key=KEY, media_folder=folder, max_batch=16, batch_window_ms=50,
                    limits=Limits(max_body_bytes=2**20, max_pixels=128 * 128, max_audio_seconds=2.0, max_tokens=16,
                                  queue_size=64))
    url, server = start(app)
    yield model, app, url, folder
    server.should_exit = True


@pytest.fixture()
def client(served):
    return openai.OpenAI(base_url=served[2], api_key=KEY, max_retries=0)


def png_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def wav_b64(wave: np.ndarray) -> str:
    buf = io.BytesIO()
    sf.write(buf, wave, 16000, format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


def ask(client, content, **kw):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}],
                                          max_tokens=kw.pop("max_tokens", TOKENS), temperature=0, **kw)


def own(model, parts) -> str:
    return model.chat([{"role": "user", "content": parts}], max_new_tokens=TOKENS)


def test_text_image_and_audio_answers_equal_the_models_own(served, client):
    model = served[0]
    r = ask(client, "hello there")
    assert r.choices[0].message.content == own(model, [{"type": "text", "text": "hello there"}])
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == TOKENS
    prompt = model.processor([{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
                             add_generation_prompt=True)
    assert r.usage.prompt_tokens == len(prompt.input_ids)

    image = make_image(3, size=40)
    r = ask(client, [{"type": "image_url", "image_url": {"url": png_url(image)}}, {"type": "text", "text": "what?"}])
    assert r.choices[0].message.content == own(model, [{"type": "image", "image": image},
                                                       {"type": "text", "text": "what?"}])
    wave = make_wave(0.75, 500)
    r = ask(client, [{"type": "input_audio", "input_audio": {"data": wav_b64(wave), "format": "wav"}},
                     {"type": "text", "text": "and this?"}])
    decoded = sf.read(io.BytesIO(base64.b64decode(wav_b64(wave))), dtype="float32")[0]
    assert r.choices[0].message.content == own(model, [{"type": "audio", "audio": decoded},
                                                       {"type": "text", "text": "and this?"}])
    local = ask(client, [{"type": "image_url", "image_url": {"url": "local.png"}}, {"type": "text", "text": "what?"}])
    from PIL import Image

    with Image.open(served[3] / "local.png") as im:
        assert local.choices[0].message.content == own(model, [{"type": "image", "image": im.convert("RGB")},
                                                               {"type": "text", "text": "what?"}])


def test_a_streamed_answer_joins_into_the_answer_and_stop_strings_cut(served, client):
    whole = ask(client, "tell me").choices[0].message.content
    pieces = [c.choices[0].delta.content or "" for c in ask(client, "tell me", stream=True)]
    assert "".join(pieces) == whole and len([p for p in pieces if p]) > 1
    stop = whole[3:5]
    r = ask(client, "tell me", stop=[stop])
    assert r.choices[0].message.content == whole[: whole.index(stop)] and r.choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in ask(client, "tell me", stream=True, stop=stop)) == \
        whole[: whole.index(stop)]


def test_default_max_tokens_fits_the_context_and_a_closed_stream_stops_generating(served, client):
    from mmgpt.generation import stream_answer

    model = served[0]
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], temperature=0)
    assert r.choices[0].message.content  # no max_tokens: the server's own cap, within the context
    pieces = stream_answer(model, [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                           max_new_tokens=100)
    next(pieces), next(pieces)
    pieces.close()  # a stop string, or a client gone
    assert not [t for t in threading.enumerate() if t.name == "mmgpt-generate"]


def test_models_and_health(served):
    url = served[2]
    assert httpx.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}
    models = openai.OpenAI(base_url=url, api_key=KEY).models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_each_error_has_its_status_and_the_server_goes_on(served, client, monkeypatch):
    model, _, url, _ = served
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
    bad = [  # (content or kwargs, message)
        ([{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(
            b"\x89PNG\r\n\x1a\n not an image").decode()}}], "cannot be decoded"),
        ([{"type": "image_url", "image_url": {"url": png_url(make_image(0, size=200))}}], "pixels"),
        ([{"type": "image_url", "image_url": {"url": "../../etc/passwd"}}], "outside the server's media folder"),
        ([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}], "fetches no URLs"),
        ([{"type": "input_audio", "input_audio": {"data": wav_b64(make_wave(3.0)), "format": "wav"}}], "max_seconds"),
        ([{"type": "input_audio", "input_audio": {"data": "!!", "format": "wav"}}], "not valid base64"),
        ([{"type": "video_url", "video_url": {"url": "x"}}], "unsupported part 'video_url'"),
    ]
    for content, message in bad:
        with pytest.raises(openai.BadRequestError, match=message) as info:
            ask(client, content)
        assert info.value.body["message"] and info.value.status_code == 400
    with pytest.raises(openai.BadRequestError, match="max_tokens must be an integer from 1 to 16"):
        ask(client, "hi", max_tokens=17)
    with pytest.raises(openai.BadRequestError, match="only n=1"):
        ask(client, "hi", n=2)
    with pytest.raises(openai.BadRequestError, match="non-empty string"):
        ask(client, "hi", stop=[""])
    many = [{"type": "image_url", "image_url": {"url": png_url(make_image(i, size=8))}} for i in range(17)]
    with pytest.raises(openai.BadRequestError, match="17 images and clips; the server takes at most 16"):
        ask(client, many)
    with pytest.raises(openai.APIStatusError, match="over the 1,048,576-byte limit") as info:
        ask(client, "x" * (2**20 + 10))
    assert info.value.status_code == 413

    def broken(*a, **kw):
        raise RuntimeError("a bug in the model")

    monkeypatch.setattr("mmgpt.generation.generate_ids", broken)
    with pytest.raises(openai.InternalServerError) as info:
        ask(client, "hi")
    assert "a bug" not in str(info.value) and "Traceback" not in str(info.value)
    monkeypatch.undo()
    assert ask(client, "hi").choices[0].message.content == own(model, [{"type": "text", "text": "hi"}])


def test_a_full_queue_is_429_and_the_server_goes_on(served):
    model = served[0]
    app = build_app(model, "tiny", max_batch=1, batch_window_ms=0, limits=Limits(queue_size=1, max_tokens=16))
    url, server = start(app)
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)

    def one(i):
        try:
            return ask(client, f"question {i}", max_tokens=16).choices[0].message.content
        except openai.RateLimitError as e:
            assert e.status_code == 429 and "requests waiting" in str(e)
            return None

    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(one, range(12)))
    assert None in got and any(g is not None for g in got)
    assert one(99) is not None  # still serving
    server.should_exit = True


def test_32_concurrent_requests_are_batched_and_each_gets_its_own_answer(served, client):
    model, app = served[0], served[1]
    prompts = [f"question number {i} about shapes" for i in range(32)]
    alone = [own(model, [{"type": "text", "text": p}]) for p in prompts]
    app.state.batcher.batches.clear()
    with ThreadPoolExecutor(32) as pool:
        got = list(pool.map(lambda p: ask(client, p).choices[0].message.content, prompts))
    assert got == alone
    sizes = app.state.batcher.batches
    assert sum(sizes) == 32 and max(sizes) > 1, sizes
