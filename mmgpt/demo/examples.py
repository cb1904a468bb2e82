"""Example inputs for the demo: a few held-out ShapesTones items, generated on the spot.

The items come from the ``gen`` split, whose shape and tone combinations training never
shows, with a fixed seed, so every start writes the same files. One example per task, in
the order of :data:`TASKS`, each from a different scene while scenes last.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmgpt.datasets.shapestones import generate

#: Tasks shown as examples, in order: (task name in the data, label in the demo).
TASKS: tuple[tuple[str, str], ...] = (
    ("crossmodal_qa", "image + clip question"),
    ("image_qa", "image question"),
    ("audio_qa", "clip question"),
    ("image_caption", "image caption"),
    ("audio_caption", "clip caption"),
)
LINES = 60  # about 8 scenes of the gen split: every task above appears


def make_examples(out_dir: str | Path, num: int = len(TASKS), seed: int = 0) -> list[dict]:
    """Write held-out ShapesTones items to ``out_dir`` and pick one example per task.

    Args:
        out_dir: folder for ``gen.jsonl`` and ``media/gen/`` (created; its files overwritten).
        num: how many examples (at most ``len(TASKS)``); 0 writes nothing.
        seed: the dataset seed.

    Returns:
        ``[{"image": path or None, "audio": path or None, "text": question, "label": label}]``
        with absolute paths.
    """
    num = max(0, min(num, len(TASKS)))
    if num == 0:
        return []
    out = Path(out_dir).resolve()
    info = generate(out, train=0, val=0, test=0, gen=LINES, seed=seed, progress=False)
    records = [json.loads(line) for line in Path(info["splits"]["gen"]["path"]).read_text().splitlines()]
    chats = [r for r in records if "messages" in r and len(r["messages"]) == 2]
    used_scenes: set[int] = set()
    examples = []
    for task, label in TASKS[:num]:
        candidates = [r for r in chats if r["meta"]["task"] == task]
        if not candidates:
            continue
        fresh = [r for r in candidates if r["meta"]["scene"] not in used_scenes]
        record = (fresh or candidates)[0]
        used_scenes.add(record["meta"]["scene"])
        example = {"image": None, "audio": None, "text": "", "label": label}
        for part in record["messages"][0]["content"]:
            if part["type"] == "text":
                example["text"] = part["text"]
            else:
                example[part["type"]] = str(out / part[part["type"]])
        examples.append(example)
    return examples
