"""Few-shot prompts: exact token layout, examples never from the query, seeded and similar selection."""

from __future__ import annotations

import pytest

from mmgpt.datasets.readers import read_jsonl
from mmgpt.datasets.schema import Sample
from mmgpt.errors import ConfigError
from mmgpt.eval.fewshot import ExampleSelector, MediaEmbedder, build_prompt
from mmgpt.eval.tasks import EvalItem, collect_items, sample_items
from tests.conftest import make_image, make_wave


def qa_item(media: dict, question: str, answer: str, source: str) -> EvalItem:
    messages = [{"role": "user", "content": [media, {"type": "text", "text": question}]},
                {"role": "assistant", "content": answer}]
    (item,) = sample_items(Sample.from_messages(messages, source=source))
    return item


@pytest.fixture
def three_items():
    image_ex = qa_item({"type": "image", "image": make_image(seed=1)}, "What colour is it?", "red", "ex1")
    audio_ex = qa_item({"type": "audio", "audio": (make_wave(0.5), 16000)}, "How many beeps?", "two", "ex2")
    query = qa_item({"type": "image", "image": make_image(seed=2)}, "What shape is it?", "hexagon", "q")
    return image_ex, audio_ex, query


def test_chat_prompt_exact_layout_k2(tiny_model, three_items):
    image_ex, audio_ex, query = three_items
    assert (image_ex.task, audio_ex.task, query.task) == ("image_qa", "audio_qa", "image_qa")
    proc, tok = tiny_model.processor, tiny_model.tokenizer
    enc = proc(build_prompt(query, [image_ex, audio_ex], "chat"), add_generation_prompt=True)
    img = "<|image_start|>" + "<|image_pad|>" * 4 + "<|image_end|>"  # 4 tokens per 32 px image
    aud = "<|audio_start|>" + "<|audio_pad|>" * 13 + "<|audio_end|>"  # 13 tokens per 0.5 s clip
    expected = (
        f"<|im_start|>user\n{img} What colour is it?<|im_end|>\n<|im_start|>assistant\n red<|im_end|>\n"
        f"<|im_start|>user\n{aud} How many beeps?<|im_end|>\n<|im_start|>assistant\n two<|im_end|>\n"
        f"<|im_start|>user\n{img} What shape is it?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok.decode(enc.input_ids.tolist(), skip_special_tokens=False) == expected
    assert tok(expected, add_special_tokens=False)["input_ids"] == enc.input_ids.tolist()
    assert len(enc.media["image"]) == 2 and len(enc.media["audio"]) == 1  # example image, query image; example clip
    # the query's answer appears nowhere in its own prompt
    assert "hexagon" not in expected


def test_completion_prompt_exact_layout_k2(tiny_model, three_items):
    image_ex, audio_ex, query = three_items
    prompt = build_prompt(query, [image_ex, audio_ex], "completion")
    assert not prompt.is_chat
    enc = tiny_model.processor(prompt)
    img = "<|image_start|>" + "<|image_pad|>" * 4 + "<|image_end|>"
    aud = "<|audio_start|>" + "<|audio_pad|>" * 13 + "<|audio_end|>"
    expected = (f"{img} Question: What colour is it? Answer: red\n{aud} Question: How many beeps? Answer: two\n"
                f"{img} Question: What shape is it? Answer:")  # text parts get the tiny BPE's prefix space
    text = tiny_model.tokenizer.decode(enc.input_ids.tolist(), skip_special_tokens=False)
    assert text == expected + "<|endoftext|>"  # the completion predictor drops this last token


def test_zero_shot_prompt_is_the_query(three_items):
    *_, query = three_items
    prompt = build_prompt(query, [], "chat")
    assert [t.role for t in prompt.turns] == ["user"]
    assert prompt.turns[0].segments == query.query.turns[0].segments
    with pytest.raises(ConfigError):
        build_prompt(query, [], "prose")


def test_examples_never_include_the_query(shapestones_test):
    items = collect_items(read_jsonl(shapestones_test))
    for task, pool in items.items():
        for select_seed in (0, 1):
            selector = ExampleSelector(pool, "random", seed=select_seed)
            for query in pool:
                examples = selector.choose(query, 4)
                assert len({e.source for e in examples}) == len(examples)
                for ex in examples:
                    assert ex.sample_source != query.sample_source, task
                    assert not ex.media_keys & query.media_keys, task
                    assert ex.meta["scene"] != query.meta["scene"], task  # same scene = same picture/clip


def test_random_selection_is_seeded_per_query(shapestones_test):
    pool = collect_items(read_jsonl(shapestones_test))["image_qa"]
    a = [[e.source for e in ExampleSelector(pool, "random", seed=0).choose(q, 2)] for q in pool]
    b = [[e.source for e in ExampleSelector(pool, "random", seed=0).choose(q, 2)] for q in pool]
    c = [[e.source for e in ExampleSelector(pool, "random", seed=1).choose(q, 2)] for q in pool]
    assert a == b and a != c
    assert ExampleSelector(pool, "random").choose(pool[0], 0) == []


def test_similar_selection_finds_the_same_picture_under_another_name(tiny_model, tmp_path):
    def saved(seed: int, name: str) -> dict:
        make_image(seed=seed).save(tmp_path / name)
        return {"type": "image", "image": str(tmp_path / name)}

    query = qa_item(saved(7, "query.png"), "What is it?", "x", "q")
    twin = qa_item(saved(7, "copy.png"), "What is it?", "y", "twin")  # same pixels, another file
    others = [qa_item(saved(s, f"o{s}.png"), "What is it?", "z", f"o{s}") for s in range(3)]
    pool = [*others, query, twin]
    embedder = MediaEmbedder(tiny_model)
    chosen = ExampleSelector(pool, "similar", embedder=embedder).choose(query, 2)
    assert chosen[-1].source == "twin"  # most similar sits last, next to the query
    assert all(e.source != "q" for e in chosen)
    cached = len(embedder.cache)
    ExampleSelector(pool, "similar", embedder=embedder).choose(query, 2)
    assert len(embedder.cache) == cached == 5  # support media embedded once
    with pytest.raises(ConfigError):
        ExampleSelector(pool, "similar")


def test_random_examples_do_not_depend_on_the_data_folder():
    from mmgpt.eval.fewshot import _seed_for

    assert _seed_for(0, "/tmp/a/test.jsonl:3") == _seed_for(0, "/data/b/test.jsonl:3")
    assert _seed_for(0, "/tmp/a/test.jsonl:3") != _seed_for(0, "/tmp/a/test.jsonl:4")
    assert _seed_for(0, "/tmp/a/test.jsonl:3") != _seed_for(1, "/tmp/a/test.jsonl:3")
