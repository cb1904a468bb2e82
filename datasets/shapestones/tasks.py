"""Turn one scene into JSONL records: captions, QA, cross-modal QA, chats and documents.

A *scene record* is the dict of :func:`.world.sample_scene` plus ``index`` (scene id),
``split``, ``image_path`` and ``audio_path`` (relative to the JSONL file). Each builder returns
one JSON-ready record: ``{"messages": [...], "meta": {...}}`` for chats (single- or multi-turn)
or ``{"document": [...], "meta": {...}}`` for role-less documents.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmgpt.errors import ConfigError

from .text import (
    AUDIO_CAPTION_PROMPTS,
    IMAGE_CAPTION_PROMPTS,
    askable_image_attributes,
    audio_caption,
    audio_question,
    comparison_sentence,
    crossmodal_question,
    image_caption,
    image_question,
)
from .world import AUDIO_ATTRIBUTES, CROSSMODAL_KINDS

TASKS: tuple[str, ...] = (
    "image_caption", "audio_caption", "image_qa", "audio_qa", "crossmodal_qa", "chat", "document",
    "fewshot", "new_words", "recall",
)
COMPARISON_PROB = 0.3  # chance that a document with a picture and a sound compares them
#: the single-item tasks a ``fewshot`` chat strings together (what the eval's few-shot prompts hold)
FEWSHOT_TASKS: tuple[str, ...] = ("image_caption", "audio_caption", "image_qa", "audio_qa", "crossmodal_qa")
MAX_SHOTS = 4
#: sound attributes the ``new_words`` task names with invented words
NEW_WORD_ATTRIBUTES: tuple[str, ...] = ("pitch", "waveform", "duration", "loudness")
NEW_WORD_QUESTIONS = ("In the new words, what is the {a} of this sound called?",
                      "Which new word names the {a} of this sound?", "Name the {a} of the sound with the new words.")
#: sounds per ``recall`` document (fewest, most)
RECALL_ITEMS = (6, 12)
_CONSONANTS, _VOWELS = "bdgkmnptvz", "aeiou"


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _image(scene: dict) -> dict:
    return {"type": "image", "image": scene["image_path"]}


def _audio(scene: dict) -> dict:
    return {"type": "audio", "audio": scene["audio_path"]}


def _single(user: list[dict], answer: str, meta: dict) -> dict:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": [_text(answer)]}]
    return {"messages": messages, "meta": {**meta, "answer": answer}}


def _base_meta(scene: dict, task: str, image: bool, audio: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"task": task, "scene": scene["index"], "split": scene["split"]}
    if image:
        meta["image"] = scene["image"]
    if audio:
        meta["audio"] = scene["audio"]
    return meta


def _choice(rng: np.random.Generator, items: tuple | list):
    return items[int(rng.integers(len(items)))]


def _attribute_cycle(rng: np.random.Generator, attributes: tuple[str, ...], k: int) -> list[str]:
    """``k`` attributes, all different while ``k`` allows (a shuffled cycle)."""
    order = [attributes[i] for i in rng.permutation(len(attributes))]
    return [order[i % len(order)] for i in range(k)]


def image_caption_record(scene: dict, rng: np.random.Generator) -> dict:
    """Image + caption prompt → canonical image caption."""
    meta = _base_meta(scene, "image_caption", image=True, audio=False)
    return _single([_image(scene), _text(_choice(rng, IMAGE_CAPTION_PROMPTS))], image_caption(scene["image"]), meta)


def audio_caption_record(scene: dict, rng: np.random.Generator) -> dict:
    """Clip + caption prompt → canonical audio caption."""
    meta = _base_meta(scene, "audio_caption", image=False, audio=True)
    return _single([_audio(scene), _text(_choice(rng, AUDIO_CAPTION_PROMPTS))], audio_caption(scene["audio"]), meta)


def image_qa_records(scene: dict, rng: np.random.Generator, k: int) -> list[dict]:
    """``k`` image questions on different attributes (while there are enough)."""
    records = []
    for attribute in _attribute_cycle(rng, askable_image_attributes(scene["image"]), k):
        question, answer = image_question(scene["image"], attribute, rng)
        meta = {**_base_meta(scene, "image_qa", image=True, audio=False), "attribute": attribute}
        records.append(_single([_image(scene), _text(question)], answer, meta))
    return records


def audio_qa_records(scene: dict, rng: np.random.Generator, k: int) -> list[dict]:
    """``k`` audio questions on different attributes (while there are enough)."""
    records = []
    for attribute in _attribute_cycle(rng, AUDIO_ATTRIBUTES, k):
        question, answer = audio_question(scene["audio"], attribute, rng)
        meta = {**_base_meta(scene, "audio_qa", image=False, audio=True), "attribute": attribute}
        records.append(_single([_audio(scene), _text(question)], answer, meta))
    return records


def _crossmodal(scene: dict, rng: np.random.Generator, planned: bool) -> tuple[str, str, dict]:
    """The scene's planned (yes/no balanced) cross-modal question, or another kind."""
    plan = scene["crossmodal"]
    kind, colour = plan["kind"], plan["colour"]
    if not planned:
        kind = _choice(rng, tuple(k for k in CROSSMODAL_KINDS if k != plan["kind"]))
        colour = _choice(rng, scene["image"])["colour"] if kind == "colour_equal" else None
    question, answer = crossmodal_question(scene["image"], scene["audio"], kind, rng, colour)
    extra = {"kind": kind} | ({"colour": colour} if colour is not None else {})
    return question, answer, extra


def crossmodal_qa_records(scene: dict, rng: np.random.Generator, k: int) -> list[dict]:
    """``k`` questions needing both image and clip; the first is the scene's balanced plan."""
    records = []
    for i in range(k):
        question, answer, extra = _crossmodal(scene, rng, planned=i == 0)
        meta = {**_base_meta(scene, "crossmodal_qa", image=True, audio=True), "attribute": "crossmodal", **extra}
        records.append(_single([_image(scene), _audio(scene), _text(question)], answer, meta))
    return records


def chat_record(scene: dict, rng: np.random.Generator) -> dict:
    """A 2–4 turn chat about one image and one clip mixing image, audio and cross-modal QA.

    The first user turn carries the image and the clip; every modality appears once before
    any repeats, and no attribute is asked twice.
    """
    n_turns = int(rng.integers(2, 5))
    extra = _choice(rng, ("image", "audio"))
    kinds = [("image", "audio", "crossmodal")[int(i)] for i in rng.permutation(3)] + [extra]
    image_attrs = _attribute_cycle(rng, askable_image_attributes(scene["image"]), 2)
    audio_attrs = _attribute_cycle(rng, AUDIO_ATTRIBUTES, 2)
    messages, attributes, answers = [], [], []
    for turn, kind in enumerate(kinds[:n_turns]):
        if kind == "image":
            attribute = image_attrs.pop(0)
            question, answer = image_question(scene["image"], attribute, rng)
        elif kind == "audio":
            attribute = audio_attrs.pop(0)
            question, answer = audio_question(scene["audio"], attribute, rng)
        else:
            attribute = "crossmodal"
            question, answer, _ = _crossmodal(scene, rng, planned=True)
        content = ([_image(scene), _audio(scene)] if turn == 0 else []) + [_text(question)]
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": [_text(answer)]}]
        attributes.append(attribute)
        answers.append(answer)
    meta = {**_base_meta(scene, "chat", image=True, audio=True), "attributes": attributes, "answers": answers}
    return {"messages": messages, "meta": meta}


def document_record(scene: dict, rng: np.random.Generator, history: list[dict]) -> dict:
    """An interleaved document of 2–4 pictures and sounds, each followed by its caption.

    The scene's own image and clip are always in it; extra media come from earlier scenes
    of the same split (``history``), never the same item twice.

    Args:
        scene: the current scene record.
        rng: picks the number, choice and order of media and the optional comparison.
        history: earlier scene records of the split.

    Returns:
        ``{"document": [parts], "meta": {...}}`` with ``meta["image"]`` a list of object lists
        (one per picture, in order), ``meta["audio"]`` a list of truths, ``meta["media"]`` the
        media kinds in order and ``meta["scenes"]`` their scene ids.
    """
    items = [("image", scene), ("audio", scene)]
    n_extra = min(int(rng.integers(0, 3)), 2 * len(history))
    if n_extra:
        picks = rng.choice(2 * len(history), size=n_extra, replace=False)
        items += [(("image", "audio")[int(p) % 2], history[int(p) // 2]) for p in picks]
    items = [items[i] for i in rng.permutation(len(items))]
    parts: list[dict] = []
    sentences: list[str] = []  # text waiting to be flushed before the next media part
    pictures, sounds = [], []
    for kind, src in items:
        if kind == "image":
            pictures.append(src)
            sentences.append(f"Picture {len(pictures)}:")
            parts += [_text(" ".join(sentences)), _image(src)]
            sentences = [f"It shows {image_caption(src['image'])}"]
        else:
            sounds.append(src)
            sentences.append(f"Sound {len(sounds)}:")
            parts += [_text(" ".join(sentences)), _audio(src)]
            sentences = [f"It is {audio_caption(src['audio'])}"]
    if rng.random() < COMPARISON_PROB:
        i, j = int(rng.integers(len(pictures))), int(rng.integers(len(sounds)))
        single = len(pictures) == 1 and len(sounds) == 1
        picture, sound = ("The picture", "the sound") if single else (f"Picture {i + 1}", f"sound {j + 1}")
        sentences.append(comparison_sentence(len(pictures[i]["image"]), sounds[j]["audio"]["beeps"], picture, sound))
    parts.append(_text(" ".join(sentences)))
    meta = {
        "task": "document", "scene": scene["index"], "split": scene["split"],
        "image": [p["image"] for p in pictures], "audio": [s["audio"] for s in sounds],
        "media": [kind for kind, _ in items], "scenes": [src["index"] for _, src in items],
    }
    return {"document": parts, "meta": meta}


def _one(task: str, scene: dict, rng: np.random.Generator) -> dict:
    """One single-turn record of a :data:`FEWSHOT_TASKS` task."""
    if task == "image_caption":
        return image_caption_record(scene, rng)
    if task == "audio_caption":
        return audio_caption_record(scene, rng)
    build = {"image_qa": image_qa_records, "audio_qa": audio_qa_records, "crossmodal_qa": crossmodal_qa_records}[task]
    return build(scene, rng, 1)[0]


def fewshot_record(scene: dict, rng: np.random.Generator, history: list[dict]) -> dict | None:
    """1–4 solved items of one task from earlier scenes, then the scene's own item, as one chat.

    The layout of the evaluation's few-shot chat prompts (:mod:`mmgpt.eval.fewshot`): each
    example's user turn and answer, then the query; every answer is trained, so each is a
    prediction after the examples before it. None while the split has no earlier scene.
    """
    if not history:
        return None
    task = _choice(rng, FEWSHOT_TASKS)
    k = min(int(rng.integers(1, MAX_SHOTS + 1)), len(history))
    examples = [history[int(i)] for i in rng.choice(len(history), size=k, replace=False)]
    records = [_one(task, ex, rng) for ex in examples] + [_one(task, scene, rng)]
    messages = [m for r in records for m in r["messages"]]
    query = records[-1]["meta"]
    meta = {**query, "task": "fewshot", "query_task": task, "shots": k, "scenes": [ex["index"] for ex in examples]}
    return {"messages": messages, "meta": meta}


def new_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` different invented words (consonant-vowel-consonant-vowel: ``toma``, ``kibu``...)."""
    words: list[str] = []  # a list, not a set: the order must not depend on string hashing
    while len(words) < n:
        c, v = rng.integers(len(_CONSONANTS), size=2), rng.integers(len(_VOWELS), size=2)
        word = _CONSONANTS[c[0]] + _VOWELS[v[0]] + _CONSONANTS[c[1]] + _VOWELS[v[1]]
        if word not in words:
            words.append(word)
    return words


def new_words_record(scene: dict, rng: np.random.Generator, history: list[dict]) -> dict | None:
    """A task only examples can solve: the values of one sound attribute get invented names,
    drawn afresh for each record; 2–4 example clips (4 outside ``train``) are named, then the
    scene's clip is asked about. An example with the query's value is always among them (among
    the first two outside ``train``, so 2 and 4 shots both hold the answer). None while the split
    has too few earlier scenes.
    """
    from .world import VOCAB

    attribute = _choice(rng, NEW_WORD_ATTRIBUTES)
    value = scene["audio"][attribute]
    same = [h for h in history if h["audio"][attribute] == value]
    k = MAX_SHOTS if scene["split"] != "train" else int(rng.integers(2, MAX_SHOTS + 1))
    if not same or len(history) < k:
        return None
    match = same[int(rng.integers(len(same)))]
    others = [h for h in history if h is not match]
    examples = [others[int(i)] for i in rng.choice(len(others), size=k - 1, replace=False)]
    at = int(rng.integers(2)) if scene["split"] != "train" else int(rng.integers(k))
    examples.insert(at, match)
    names = dict(zip(VOCAB[attribute], new_words(rng, len(VOCAB[attribute]))))
    messages = []
    for src in [*examples, scene]:
        question = _choice(rng, NEW_WORD_QUESTIONS).format(a=attribute)
        messages += [{"role": "user", "content": [_audio(src), _text(question)]},
                     {"role": "assistant", "content": [_text(names[src["audio"][attribute]])]}]
    meta = {**_base_meta(scene, "new_words", image=False, audio=True), "named_attribute": attribute,
            "words": names, "answer": names[value], "shots": k, "scenes": [ex["index"] for ex in examples]}
    return {"messages": messages, "meta": meta}


def recall_record(scene: dict, rng: np.random.Generator, history: list[dict]) -> dict | None:
    """A text document that teaches reading names off examples, for the text stage: the values of
    one sound attribute get invented names (drawn afresh per document), then 6–12 sounds, each
    described in words, are asked about and named (``The sound: two short quiet mid sawtooth beeps.
    Which new word names the pitch of this sound? guzo The sound: ...``). From a value's second
    sound on, its name can only be copied from earlier in the document, so a decoder learns the
    in-context lookup that ``new_words`` needs, where text steps are cheap. The sounds are the
    scene's clip and earlier clips of the split; None while the split has too few of them.
    """
    from .world import VOCAB

    if len(history) < RECALL_ITEMS[0] - 1:
        return None
    attribute = _choice(rng, NEW_WORD_ATTRIBUTES)
    names = dict(zip(VOCAB[attribute], new_words(rng, len(VOCAB[attribute]))))
    n = int(rng.integers(RECALL_ITEMS[0], min(RECALL_ITEMS[1], len(history) + 1) + 1))
    sounds = [history[int(i)] for i in rng.choice(len(history), size=n - 1, replace=False)] + [scene]
    items = [f"The sound: {audio_caption(s['audio'])} {_choice(rng, NEW_WORD_QUESTIONS).format(a=attribute)} "
             f"{names[s['audio'][attribute]]}" for s in sounds]
    meta = {"task": "recall", "scene": scene["index"], "split": scene["split"], "named_attribute": attribute,
            "words": names, "scenes": [s["index"] for s in sounds[:-1]]}
    return {"document": [_text(" ".join(items))], "meta": meta}


def scene_records(scene: dict, counts: dict[str, int], rng: np.random.Generator, history: list[dict]) -> list[dict]:
    """All records of one scene, ``counts[task]`` of each task, in :data:`TASKS` order.

    Args:
        scene: the scene record (see the module docstring).
        counts: task → number of records to build.
        rng: the scene's text generator (wording, questions asked, document layout).
        history: earlier scene records of the split, for the extra media of documents.

    Returns:
        JSON-ready records.

    Raises:
        ConfigError: ``counts`` names an unknown task.
    """
    unknown = set(counts) - set(TASKS)
    if unknown:
        raise ConfigError(f"unknown task(s) {sorted(unknown)} (expected {', '.join(TASKS)})")
    records: list[dict] = []
    for task in TASKS:
        k = counts.get(task, 0)
        if k <= 0:
            continue
        if task == "image_caption":
            records += [image_caption_record(scene, rng) for _ in range(k)]
        elif task == "audio_caption":
            records += [audio_caption_record(scene, rng) for _ in range(k)]
        elif task == "image_qa":
            records += image_qa_records(scene, rng, k)
        elif task == "audio_qa":
            records += audio_qa_records(scene, rng, k)
        elif task == "crossmodal_qa":
            records += crossmodal_qa_records(scene, rng, k)
        elif task == "chat":
            records += [chat_record(scene, rng) for _ in range(k)]
        elif task == "document":
            records += [document_record(scene, rng, history) for _ in range(k)]
        else:
            build = {"fewshot": fewshot_record, "new_words": new_words_record, "recall": recall_record}[task]
            records += [r for r in (build(scene, rng, history) for _ in range(k)) if r is not None]
    return records
