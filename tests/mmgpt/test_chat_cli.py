"""``mmgpt chat``: the terminal chat driven through standard input."""

from __future__ import annotations

import io
import string
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from mmgpt import cli
from mmgpt.chat import ANSWER_PREFIX, chat_loop
from mmgpt.cli import common as cli_common
from mmgpt.demo.session import ModelRunner, Settings
from tests.conftest import make_image, make_wave, readable_model

ROOT = Path(__file__).resolve().parents[2]
TINY = "tiny"  # the shipped preset
TOKENS = 8


@pytest.fixture(scope="module")
def model():
    return readable_model(seed=0)  # a seed whose answers depend on the history (checked below)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("chat_media")
    make_image(0, size=48).save(d / "shapes.png")
    sf.write(d / "beeps.wav", make_wave(0.75, 440.0), 16000)
    (d / "broken.png").write_bytes(b"not an image at all")
    return {"image": str(d / "shapes.png"), "audio": str(d / "beeps.wav"), "broken": str(d / "broken.png")}


def user(text, image=None, audio=None):
    content = [{"type": k, k: v} for k, v in (("image", image), ("audio", audio)) if v is not None]
    return {"role": "user", "content": [*content, {"type": "text", "text": text}]}


def answers(stdout: str) -> list[str]:
    return [line[len(ANSWER_PREFIX):] for line in stdout.splitlines() if line.startswith(ANSWER_PREFIX)]


def test_chat_through_stdin_answers_two_turns_with_an_image_and_a_clip(model, media, monkeypatch, capsys):
    script = f"/image {media['image']}\nHow many shapes?\n/audio {media['audio']}\nAnd how many beeps?\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    monkeypatch.setattr(cli_common, "load_checkpoint", lambda path: model)
    assert cli.main(["chat", "any/checkpoint", "--max-new-tokens", str(TOKENS)]) == 0
    out = capsys.readouterr()
    got = answers(out.out)
    first = model.chat([user("How many shapes?", image=media["image"])], max_new_tokens=TOKENS)
    history = [user("How many shapes?", image=media["image"]),
               {"role": "assistant", "content": [{"type": "text", "text": first}]},
               user("And how many beeps?", audio=media["audio"])]
    second = model.chat(history, max_new_tokens=TOKENS)
    assert got == [first, second] and first and set(first + second) <= set(string.ascii_lowercase)
    assert second != model.chat(history[2:], max_new_tokens=TOKENS)  # so the history was kept and used
    assert "image attached" in out.err and "audio attached" in out.err


def test_history_media_errors_reset_and_quit(model, media):
    runner = ModelRunner(model, max_audio_seconds=0.5)
    out, err = io.StringIO(), io.StringIO()
    lines = [
        f"/image {media['broken']}",  # corrupt: error, nothing attached
        "/image /no/such/file.png",
        "/video clip.mp4",  # unknown command
        f"/audio {media['audio']}",  # 0.75 s > the 0.5 s cap
        f"/image '{media['image']}'",  # quoted path
        f"/audio {ROOT / 'README.md'}",
        "",  # Enter with only the image attached: a caption
        "and then?",
        "/reset",
        "after the reset",
        "/quit",
        "never read",
    ]
    history = chat_loop(runner, Settings(TOKENS), lines, out, err)
    e = err.getvalue()
    assert "broken.png cannot be decoded" in e and "not found" in e and "unknown command /video" in e
    assert "over this demo's cap of 0.5 s" in e and "README.md cannot be decoded" in e
    caption = model.caption(image=media["image"], max_new_tokens=TOKENS)
    assert answers(out.getvalue())[0] == caption
    assert len(answers(out.getvalue())) == 3
    assert history == [user("after the reset"),
                       {"role": "assistant", "content": [{"type": "text", "text": answers(out.getvalue())[2]}]}]
    assert "history cleared" in e


def test_both_media_need_a_question(model, media):
    out, err = io.StringIO(), io.StringIO()
    history = chat_loop(ModelRunner(model), Settings(TOKENS),
                        [f"/image {media['image']}", f"/audio {media['audio']}", "", "Same count?"], out, err)
    assert "type a question" in err.getvalue()
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert [p["type"] for p in history[0]["content"]] == ["image", "audio", "text"]


def test_terminal_control_characters_are_not_printed():
    class Stub:
        modalities = ("image", "audio")

        def stream(self, messages, settings):
            yield from ("\x1b[2J", "red\r", "\tok\n", "\x07")

    out = io.StringIO()
    chat_loop(Stub(), Settings(), ["hi"], out, io.StringIO())  # type: ignore[arg-type]
    assert out.getvalue() == ANSWER_PREFIX + "[2Jred\tok\n\n"


def test_chat_command_as_a_new_user_runs_it(tmp_path, media):
    """The installed entry point, a saved checkpoint, commands piped into a real process."""
    from mmgpt.model import MMGPT

    MMGPT.from_config(TINY).save_pretrained(tmp_path / "ckpt")
    script = f"/image {media['image']}\nHow many shapes?\n/audio {media['audio']}\nHow many beeps?\n/quit\n"
    proc = subprocess.run([sys.executable, "-m", "mmgpt.cli", "chat", str(tmp_path / "ckpt"), "--max-new-tokens", "4"],
                          input=script, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(ANSWER_PREFIX) == 2
    assert "error" not in proc.stderr.lower()


def test_a_missing_model_says_how_to_make_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    assert cli.main(["chat"]) == 1
    assert "no model at runs/quickstart/final. Run `make quickstart`" in capsys.readouterr().err
