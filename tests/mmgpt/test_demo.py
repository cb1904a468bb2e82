"""The gradio demo, end to end: a tiny model served on a free loopback port, driven through
``gradio_client`` (the headless-Chromium check is in ``test_demo_browser.py``).

The tiny model is random, so its answers are junk; :func:`readable_model` keeps only the
letters in its output embedding so that greedy answers are visible letters, and every test
compares what the app shows with what ``model.chat`` gives for the same input.
"""

from __future__ import annotations

import json
import re
import string
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import gradio_client
import httpx
import pytest
import soundfile as sf

from mmgpt.demo.app import build_app, launch
from mmgpt.demo.examples import make_examples
from mmgpt.demo.session import ModelRunner, Settings
from mmgpt.errors import ConfigError, InvalidMediaError
from tests.conftest import expected, free_port, make_image, make_wave, readable_model

ROOT = Path(__file__).resolve().parents[2]
MAX_PIXELS = 128 * 128
MAX_SECONDS = 2.0
TOKENS = 8


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    paths = {}
    for i in range(3):
        make_image(i, size=48).save(d / f"img{i}.png")
        sf.write(d / f"clip{i}.wav", make_wave(0.5 + 0.25 * i, 300 + 200 * i, seed=i), 16000)
        paths[f"img{i}"], paths[f"clip{i}"] = str(d / f"img{i}.png"), str(d / f"clip{i}.wav")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    make_image(9, size=200).save(d / "big.png")  # 40,000 pixels > MAX_PIXELS
    sf.write(d / "long.wav", make_wave(3.0), 16000)  # 3 s > MAX_SECONDS
    paths.update({k: str(d / n) for k, n in (("corrupt_png", "corrupt.png"), ("corrupt_wav", "corrupt.wav"),
                                             ("big", "big.png"), ("long", "long.wav"))})
    return paths


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(model, app, url, examples dir): the demo on a free loopback port for this module."""
    model = readable_model()
    examples = tmp_path_factory.mktemp("examples")
    app = build_app(model, examples_dir=examples, max_pixels=MAX_PIXELS, max_audio_seconds=MAX_SECONDS,
                    queue_size=16, concurrency=1)
    url = launch(app, port=free_port(), block=False, quiet=True)
    yield model, app, url, examples
    app.close()


@pytest.fixture(scope="module")
def client(served):
    return gradio_client.Client(served[2], verbose=False)


def ask(client, image=None, audio=None, text="", tokens=TOKENS, temperature=0.0, top_p=1.0):
    f = gradio_client.handle_file
    return client.predict(f(image) if image else None, f(audio) if audio else None, text, tokens, temperature,
                          top_p, api_name="/answer")


# ----------------------------------------------------------------------------- one-shot requests


def test_answer_with_image_audio_and_text(served, client, media):
    model = served[0]
    got = ask(client, media["img0"], media["clip0"], "How many shapes and beeps?")
    want = expected(model, image=media["img0"], audio=media["clip0"], text="How many shapes and beeps?")
    assert want and set(want) <= set(string.ascii_lowercase)
    assert got == want


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_media_without_text_is_captioned(served, client, media, kind):
    path = media["img1"] if kind == "image" else media["clip1"]
    got = ask(client, **{kind: path})
    assert got == served[0].caption(**{kind: path}, max_new_tokens=TOKENS)


def test_text_only_and_nothing_at_all(served, client):
    assert ask(client, text="hello") == expected(served[0], text="hello")
    with pytest.raises(gradio_client.exceptions.AppError, match="type a message"):
        ask(client, text="   ")


@pytest.mark.parametrize(("key", "kind", "message"), [
    ("corrupt_png", "image", "cannot be decoded"),
    ("corrupt_wav", "audio", "cannot be decoded|truncated|empty"),
    ("big", "image", "over this demo's cap of 16,384"),
    ("long", "audio", "over this demo's cap of 2 s"),
])
def test_bad_upload_gets_a_readable_error_and_the_next_request_works(served, client, media, key, kind, message):
    with pytest.raises(gradio_client.exceptions.AppError, match=message) as info:
        ask(client, text="what is this?", **{kind: media[key]})
    assert Path(media[key]).name in str(info.value)
    assert "/gradio/" not in str(info.value)  # upload paths are shortened to the file name
    assert ask(client, media["img2"], None, "and now?") == expected(served[0], image=media["img2"], text="and now?")


def test_text_and_history_are_capped_on_the_server(served, client):
    """An API client skips the browser's text box: the server checks the length itself."""
    from mmgpt.demo.app import MAX_HISTORY_MESSAGES, MAX_TEXT_CHARS

    with pytest.raises(gradio_client.exceptions.AppError, match="3,000 characters long; the demo takes at most 2,000"):
        ask(client, text="x" * 3000)
    assert ask(client, text="hello") == expected(served[0], text="hello")
    assert MAX_TEXT_CHARS == 2000 and MAX_HISTORY_MESSAGES == 64


def test_a_conversation_keeps_only_its_last_exchanges(served, monkeypatch):
    import mmgpt.demo.app as app

    monkeypatch.setattr(app, "MAX_HISTORY_MESSAGES", 2)  # one exchange (the server runs in this process)
    c = gradio_client.Client(served[2], verbose=False)
    said = []
    for text in ("one", "two", "three"):
        chat, *_ = c.predict(None, None, text, TOKENS, 0.0, 1.0, api_name="/chat")
        said.append(chat[-1]["content"][0]["text"])
    history = [{"role": "user", "content": [{"type": "text", "text": "two"}]},
               {"role": "assistant", "content": [{"type": "text", "text": said[1]}]}]
    assert said[2] == expected(served[0], text="three", history=history)  # "one" was dropped
    assert len(chat) == 4  # the page keeps twice as many


def test_concurrent_requests_all_get_their_own_answers(served, media):
    model = served[0]
    jobs = [(media[f"img{i % 3}"], media[f"clip{(i + 1) % 3}"], f"question {i}?") for i in range(6)]
    want = [expected(model, image=im, audio=au, text=q) for im, au, q in jobs]
    assert len(set(want)) > 1  # otherwise a mix-up between requests would go unnoticed

    def run(job):
        return ask(gradio_client.Client(served[2], verbose=False), *job)

    with ThreadPoolExecutor(len(jobs)) as pool:
        assert list(pool.map(run, jobs)) == want


def test_one_runner_serves_threads_one_generation_at_a_time(served, media):
    """The lock, without gradio's queue in front: threads calling one runner get their own answers."""
    model = served[0]
    runner = ModelRunner(model)
    jobs = [(media[f"img{i % 3}"], media[f"clip{i % 2}"], f"q{i}") for i in range(6)]
    want = [expected(model, image=im, audio=au, text=q) for im, au, q in jobs]
    messages = [[{"role": "user", "content": [{"type": "image", "image": im}, {"type": "audio", "audio": au},
                                              {"type": "text", "text": q}]}] for im, au, q in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        assert list(pool.map(lambda m: runner.answer(m, Settings(TOKENS)), messages)) == want


def test_sampling_settings_reach_the_model(served, client, media):
    greedy = ask(client, media["img0"], None, "colour?", tokens=4)
    assert len(greedy) == 4
    assert len(ask(client, media["img0"], None, "colour?", tokens=2)) == 2
    sampled = ask(client, media["img0"], None, "colour?", tokens=4, temperature=1.5, top_p=0.9)
    assert sampled != greedy  # nearly uniform over ~270 tokens: equal by chance with odds ~1e-9
    with pytest.raises(gradio_client.exceptions.AppError, match="top_p"):
        ask(client, media["img0"], None, "colour?", top_p=0.0)


# ----------------------------------------------------------------------------- the interactive chat


def test_chat_streams_and_keeps_the_history(served, media):
    model = served[0]
    c = gradio_client.Client(served[2], verbose=False)  # its own session: its own history
    f = gradio_client.handle_file
    job = c.submit(f(media["img0"]), None, "How many shapes?", TOKENS, 0.0, 1.0, api_name="/chat")
    chat, *_ = job.result()
    first = expected(model, image=media["img0"], text="How many shapes?")
    assert [m["role"] for m in chat] == ["user", "assistant"]
    assert chat[0]["content"][0]["type"] == "file" and chat[0]["content"][1]["text"] == "How many shapes?"
    assert chat[1]["content"][0]["text"] == first
    assert job.outputs()[0][1:] == ("", None, None)  # the composer is cleared once the turn is taken
    partial = [o[0][-1]["content"][0]["text"] for o in job.outputs() if o[0] and o[0][-1]["role"] == "assistant"]
    assert len(partial) >= 3 and all(first.startswith(p) for p in partial[1:])  # streamed, growing

    chat, *_ = c.predict(None, f(media["clip1"]), "How many beeps?", TOKENS, 0.0, 1.0, api_name="/chat")
    history = [{"role": "user", "content": [{"type": "image", "image": media["img0"]},
                                            {"type": "text", "text": "How many shapes?"}]},
               {"role": "assistant", "content": [{"type": "text", "text": first}]}]
    second = expected(model, audio=media["clip1"], text="How many beeps?", history=history)
    assert [m["role"] for m in chat] == ["user", "assistant"] * 2
    assert chat[3]["content"][0]["text"] == second


def test_chat_bad_file_shows_an_error_in_the_chat_and_goes_on(served, media):
    c = gradio_client.Client(served[2], verbose=False)
    f = gradio_client.handle_file
    chat, *_ = c.predict(f(media["corrupt_png"]), None, "hm?", TOKENS, 0.0, 1.0, api_name="/chat")
    assert [m["role"] for m in chat] == ["user", "assistant"]
    assert chat[0]["content"][0]["text"] == "hm? · corrupt.png"  # what was tried, not the file itself
    assert chat[1]["content"][0]["text"].startswith("⚠️ image corrupt.png cannot be decoded")
    assert chat[1]["metadata"]["title"] == "Could not answer"
    chat, *_ = c.predict(None, f(media["clip0"]), "beeps?", TOKENS, 0.0, 1.0, api_name="/chat")
    assert chat[-1]["content"][0]["text"] == expected(served[0], audio=media["clip0"], text="beeps?")


def test_caption_buttons(served, media):
    c = gradio_client.Client(served[2], verbose=False)
    f = gradio_client.handle_file
    job = c.submit(f(media["img1"]), TOKENS, 0.0, 1.0, api_name="/caption_image")
    chat, *_ = job.result()
    assert chat[-1]["content"][0]["text"] == served[0].caption(image=media["img1"], max_new_tokens=TOKENS)
    assert chat[0]["content"][-1]["text"] == "Describe the image."
    assert job.outputs()[0][2] is None  # the image is taken from the composer
    chat, *_ = c.predict(f(media["clip1"]), TOKENS, 0.0, 1.0, api_name="/caption_audio")
    assert len(chat) == 4  # the caption joined the chat
    assert chat[-1]["content"][0]["text"] == served[0].caption(audio=media["clip1"], max_new_tokens=TOKENS)
    chat, *_ = c.predict(None, TOKENS, 0.0, 1.0, api_name="/caption_audio")
    assert "attach a clip" in chat[-1]["content"][0]["text"]


# ----------------------------------------------------------------------------- safety and set-up


def test_served_on_loopback_with_a_bounded_queue(served):
    _, app, url, _ = served
    assert url.startswith("http://127.0.0.1:")
    assert app._queue.max_size == 16
    model_events = [fn for fn in app.fns.values() if fn.api_name in ("chat", "caption_image", "caption_audio", "answer")]
    assert len(model_events) == 4
    assert {(fn.concurrency_id, fn.concurrency_limit, fn.preprocess) for fn in model_events} == {("model", 1, False)}


def test_only_the_cache_and_the_examples_are_served(served):
    url, examples = served[2], served[3]
    example = next(Path(examples).rglob("*.png"))
    assert httpx.get(f"{url}gradio_api/file={example}").status_code == 200
    for path in (ROOT / "README.md", ROOT / "pyproject.toml", Path("/etc/hostname")):
        assert httpx.get(f"{url}gradio_api/file={path}").status_code == 403
    # A handler is never given a server file that was not uploaded.
    r = httpx.post(f"{url}gradio_api/call/answer", json={"data": [
        {"path": str(ROOT / "README.md"), "meta": {"_type": "gradio.FileData"}}, None, "x", 4, 0, 1]})
    events = httpx.get(f"{url}gradio_api/call/answer/{r.json()['event_id']}", timeout=60).text
    assert "event: error" in events and "complete" not in events


def test_examples_are_held_out_shapestones_items(served):
    lines = [json.loads(x) for x in (served[3] / "gen.jsonl").read_text().splitlines()]
    assert lines and all(r["meta"]["split"] == "gen" for r in lines)
    again = make_examples(served[3] / "again")
    assert [e["label"] for e in again] == ["image + clip question", "image question", "clip question",
                                          "image caption", "clip caption"]
    assert again[0]["image"] and again[0]["audio"] and again[1]["audio"] is None and again[2]["image"] is None


def test_caps_are_read_from_the_header_before_decoding(tmp_path):
    """A PNG header claiming 5000 x 5000 pixels is refused without reading any pixel."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5000, 5000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)  # no pixel data at all
    runner = ModelRunner(readable_model(), max_pixels=MAX_PIXELS)
    with pytest.raises(InvalidMediaError, match=re.escape("5000x5000 = 25,000,000 pixels, over this demo's cap")):
        runner.check_media("image", str(tmp_path / "bomb.png"))


def test_settings_validate():
    assert Settings(8, 0.0, 1.0).generate_kwargs() == {"max_new_tokens": 8, "do_sample": False}
    assert Settings(8, 0.7, 0.9).generate_kwargs()["do_sample"] is True
    for bad in ((0, 0, 1), (8, -1, 1), (8, 1, 0), (8, 1, 1.5), (None, 0, 1), ("many", 0, 1)):
        with pytest.raises(ConfigError):
            Settings(*bad)


def test_old_turns_are_dropped_to_fit_the_context(media):
    runner = ModelRunner(readable_model())
    turn = {"role": "user", "content": [{"type": "audio", "audio": media["clip2"]}, {"type": "text", "text": "x"}]}
    reply = {"role": "assistant", "content": [{"type": "text", "text": "y"}]}
    messages, dropped = runner.fit([turn, reply] * 6 + [turn], max_new_tokens=64)
    assert dropped > 0 and messages[-1] is turn and len(messages) == 13 - 2 * dropped
    assert runner.answer([turn, reply] * 6 + [turn], Settings(TOKENS))  # still answers


def test_demo_cli_binds_loopback_and_explains_a_missing_model(tmp_path, monkeypatch, capsys):
    from mmgpt import cli
    from mmgpt.demo import app as demo_app

    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo"]) == 1
    assert "make quickstart" in capsys.readouterr().err
    readable_model().save_pretrained(tmp_path / "ckpt")
    calls = []
    monkeypatch.setattr(demo_app, "launch", lambda app, **kw: calls.append((app, kw)))
    assert cli.main(["demo", str(tmp_path / "ckpt"), "--port", "7999", "--examples-dir", str(tmp_path / "ex")]) == 0
    app, kw = calls[0]
    assert isinstance(app, gr.Blocks) and kw["host"] == "127.0.0.1" and kw["port"] == 7999
    app.close()


def test_recipe_script_starts_the_same_app(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_demo", ROOT / "recipes" / "demo.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    calls = []
    monkeypatch.setattr(recipe, "load_checkpoint", lambda path: calls.append(path) or readable_model())
    monkeypatch.setattr(recipe, "launch", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr(recipe, "build_app", lambda model, **kw: build_app(model, examples_dir=tmp_path, **kw))
    assert recipe.main(["--port", "8123"]) == 0
    assert calls[0] == "runs/quickstart/final"
    app, kw = calls[1]
    assert isinstance(app, gr.Blocks) and kw == {"host": "127.0.0.1", "port": 8123, "quiet": True}
    app.close()
    monkeypatch.undo()
    assert recipe.main(["no/such/model"]) == 1
