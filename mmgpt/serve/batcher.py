"""The one thread that runs the model for ``mmgpt serve``: dynamic batching of waiting jobs."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass

from mmgpt.serve.requests import APIError, Job

log = logging.getLogger(__name__)


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (and whether one was found)."""
    at = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:at], True) if at >= 0 else (text, False)


class Batcher:
    """The one thread that runs the model: takes jobs from a bounded queue and answers them in batches.

    Args:
        model: an MMGPT in eval mode.
        max_batch: most requests in one generate.
        window_s: how long the first request of a batch waits for others.
        queue_size: jobs waiting at most (more: :class:`APIError` 429).
    """

    def __init__(self, model, max_batch: int = 16, window_s: float = 0.01, queue_size: int = 64) -> None:
        self.model, self.max_batch, self.window_s, self.queue_size = model, max_batch, window_s, queue_size
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.waiting = 0
        self.lock = threading.Lock()
        self.batches: list[int] = []  # sizes of the batches run (for tests and the bench)
        self.thread = threading.Thread(target=self._loop, name="mmgpt-serve", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Job:
        """Queue a job.

        Raises:
            APIError: 429 when ``queue_size`` jobs already wait.
        """
        with self.lock:
            if self.waiting >= self.queue_size:
                raise APIError(429, f"the server has {self.waiting} requests waiting, its limit; retry shortly",
                               "rate_limit_error", code="queue_full")
            self.waiting += 1
        self.jobs.put(job)
        return job

    def _take(self) -> list[Job]:
        batch = [self.jobs.get()]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch and not batch[0].stream:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self.jobs.get(timeout=left))
            except queue.Empty:
                break
        with self.lock:
            self.waiting -= len(batch)
        return batch

    def _loop(self) -> None:
        while True:
            try:
                self._serve(self._take())
            except Exception:  # never let the one worker die: the server would hang
                log.exception("serving a batch failed")

    def _serve(self, batch: list[Job]) -> None:
        """Run a batch: jobs of one key in one generate each, streamed jobs alone."""
        groups: dict[tuple, list[Job]] = {}
        for job in batch:
            if not job.stream:
                groups.setdefault(job.key, []).append(job)
        for jobs in groups.values():
            self._run(jobs)
        for job in batch:
            if job.stream:
                self._stream(job)

    def _run(self, jobs: list[Job]) -> None:
        from mmgpt.generation import generate_ids

        first = jobs[0]
        try:
            ids, prompt_lengths = generate_ids(
                self.model, [j.messages for j in jobs], max_new_tokens=max(j.max_tokens for j in jobs),
                do_sample=first.temperature > 0, temperature=first.temperature or 1.0, top_p=first.top_p)
            self.batches.append(len(jobs))
        except Exception as e:
            if len(jobs) > 1:  # one job's prompt may be the cause: answer each alone
                for job in jobs:
                    self._run([job])
            elif not first.future.done():
                first.future.set_exception(e)
            return
        for job, row, n in zip(jobs, ids, prompt_lengths):
            if job.future.done():  # cancelled by its client
                continue
            row = row[: job.max_tokens]
            text = self.model.tokenizer.decode(row, skip_special_tokens=True).strip()
            text, stopped = cut_at_stop(text, job.stop)
            reason = "length" if len(row) >= job.max_tokens and not stopped else "stop"
            job.future.set_result(Completion(text, reason, n, len(row)))

    def _stream(self, job: Job) -> None:
        from mmgpt.generation import stream_answer

        text, sent, stopped = "", 0, False
        hold = max([len(s) - 1 for s in job.stop] + [0])  # the tail that may begin a stop string
        try:
            pieces = stream_answer(self.model, job.messages, max_new_tokens=job.max_tokens,
                                   do_sample=job.temperature > 0, temperature=job.temperature or 1.0, top_p=job.top_p)
            with contextlib.closing(pieces):  # closed at a stop string: the generation stops too
                for piece in pieces:
                    text, stopped = cut_at_stop(text + piece, job.stop)
                    ready = len(text) if stopped else max(sent, len(text) - hold)
                    if ready > sent:
                        job.pieces.put(text[sent:ready])
                        sent = ready
                    if stopped:
                        break
            if len(text) > sent:
                job.pieces.put(text[sent:])
            self.batches.append(1)
            tokens = len(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])
            reason = "stop" if stopped or tokens < job.max_tokens else "length"
            job.future.set_result(Completion(text, reason, 0, tokens))
        except Exception as e:
            job.future.set_exception(e)
        finally:
            job.pieces.put(None)
