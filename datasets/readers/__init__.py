"""Readers of standard dataset formats, each yielding :class:`~mmgpt.datasets.schema.Sample`.

Every ``read_*`` function takes a file or a glob and ``on_error="raise" | "skip"``, and returns
a lazy, re-iterable reader; with ``"skip"``, ``reader.skipped`` / ``reader.errors`` (or
``reader.stats``) report the bad rows of the latest pass. Media are referenced (absolute paths,
or raw bytes from tar shards), never decoded here.

=======================  =========================================  ===================
function                 format                                     ``source``
=======================  =========================================  ===================
:func:`read_jsonl`       native chats / documents, one per line     ``file:line``
:func:`read_llava`       LLaVA conversation JSON                    ``file[index]``
:func:`read_coco_captions`  COCO captions JSON                      ``file:annotations[j]``
:func:`read_audio_captions` AudioCaps / Clotho caption CSV          ``file:line``
:func:`read_webdataset`  WebDataset tar shards                      ``shard:key``
:func:`read_arrow`       Parquet, ``datasets`` ``save_to_disk``     ``file:row``
:func:`read_samples`     any of the above, detected                 --
=======================  =========================================  ===================
"""

from mmgpt.datasets.readers.arrow import ArrowReader, read_arrow
from mmgpt.datasets.readers.audio_captions import AudioCaptionsReader, read_audio_captions
from mmgpt.datasets.readers.auto import detect_format, find_datasets, read_samples
from mmgpt.datasets.readers.base import Reader, ReadStats
from mmgpt.datasets.readers.coco import CocoCaptionsReader, read_coco_captions
from mmgpt.datasets.readers.jsonl import JsonlReader, read_jsonl
from mmgpt.datasets.readers.llava import LlavaReader, read_llava
from mmgpt.datasets.readers.webdataset import WebDatasetReader, read_webdataset

__all__ = [
    "ArrowReader",
    "AudioCaptionsReader",
    "CocoCaptionsReader",
    "JsonlReader",
    "LlavaReader",
    "ReadStats",
    "Reader",
    "WebDatasetReader",
    "detect_format",
    "find_datasets",
    "read_arrow",
    "read_audio_captions",
    "read_coco_captions",
    "read_jsonl",
    "read_llava",
    "read_samples",
    "read_webdataset",
]
