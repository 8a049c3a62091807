"""Video files as pictures: frames sampled every few seconds and at scene changes, each named by its video and time.

A sampled frame is a :class:`~clipzero.images.NamedImage` named ``<video>#t=<seconds>`` (the media-fragment form,
so a result row or a search hit says which video and when). Its content id is the hash of the video's bytes and the
time, so a store and a resumed run know it without decoding again. Decoding goes through PyAV (the ``video``
extra); a file that cannot be opened, has no video stream or yields no frame is an :class:`ImageError` like any
unreadable picture, and a video that breaks off part-way keeps the frames before the break and says where.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import DEFAULT_VIDEO_EVERY_S
from .errors import ImageError
from .extras import installed
from .formats import VIDEO_SUFFIXES
from .hub import file_sha256
from .images import NamedImage

__all__ = [
    "VideoRun",
    "VideoTracker",
    "expand_videos",
    "frame_name",
    "is_video",
    "parse_frame_name",
    "sample_frames",
    "source_file",
    "summarize",
]

#: Mean absolute change of a 32 x 32 grey frame (0-1) from the frame before that counts as a cut (a pan or a
#: person moving changes it by about 0.01-0.05; a cut to another shot by 0.2 or more).
SCENE_CUT = 0.15
#: Samples are at least this far apart, however often the picture changes.
MIN_GAP_S = 0.5

_FRAGMENT = re.compile(r"^(?P<video>.+)#t=(?P<time>\d+(?:\.\d+)?)$")


def is_video(path: str | os.PathLike[str]) -> bool:
    """A file with a video ending (.mp4, .mov, .mkv, .webm, .avi, ...)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def frame_name(video: str, seconds: float) -> str:
    return f"{video}#t={seconds:.2f}"


def parse_frame_name(name: str) -> tuple[str, float] | None:
    """(video path, seconds) for a frame's name, None for anything else."""
    match = _FRAGMENT.match(name)
    if match is None or not is_video(match["video"]):
        return None
    return match["video"], float(match["time"])


def source_file(name: str) -> str:
    """The file on disk behind a stored name: the video for a frame, else the name itself."""
    frame = parse_frame_name(name)
    return frame[0] if frame is not None else name


@dataclass
class VideoRun:
    """What sampling one video found: its length, the frames sampled, how many of them were handed on (not
    skipped), and why it stopped early (or None)."""

    path: str
    duration: float = 0.0
    frames: list[str] = field(default_factory=list)
    taken: int = 0
    error: str | None = None


def sample_frames(path: str, *, every: float = DEFAULT_VIDEO_EVERY_S, scenes: bool = True, run: VideoRun | None = None
                  ) -> Iterator[NamedImage]:  # fmt: skip
    """The frames of a video to tag: the first, one every ``every`` seconds, and (with ``scenes``) the first frame
    after each cut.

    Args:
        path: the video file.
        every: seconds between regular samples.
        scenes: also sample at scene changes (:data:`SCENE_CUT`), at most one per :data:`MIN_GAP_S`.
        run: a :class:`VideoRun` to fill in (frames taken, duration, where it broke off).

    Raises:
        ImageError: the video extra is missing, or the file is not a readable video (no frame at all).
    """
    run = run if run is not None else VideoRun(path)
    if not installed("av"):
        raise ImageError(path, "video files need the video extra: pip install 'clipzero[video]'")
    import av

    try:
        info = os.stat(path)
        digest = file_sha256(path)
        container = av.open(path)
    except FileNotFoundError as exc:
        raise ImageError(path, "file not found") from exc
    except (OSError, av.FFmpegError) as exc:
        raise ImageError(path, f"not a readable video ({exc})") from exc
    with container:
        if not container.streams.video:
            raise ImageError(path, "no video stream in this file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        next_at, last_at, previous = 0.0, -1e9, None
        try:
            for frame in container.decode(stream):
                if frame.pts is None or frame.time is None:
                    continue
                seconds = max(float(frame.time), 0.0)
                run.duration = seconds
                grey = _thumbnail(frame) if scenes else None
                cut = previous is not None and grey is not None and float(np.abs(grey - previous).mean()) >= SCENE_CUT
                previous = grey
                due = seconds >= next_at or not run.frames
                if not (due or (cut and seconds - last_at >= MIN_GAP_S)):
                    continue
                if due:
                    while next_at <= seconds:
                        next_at += every
                last_at = seconds
                name = frame_name(path, seconds)
                run.frames.append(name)
                content = hashlib.sha256(f"{digest}#t={seconds:.2f}".encode()).hexdigest()
                yield NamedImage(name, frame.to_image(), content, info.st_size, info.st_mtime_ns)
        except av.FFmpegError as exc:
            if not run.frames:
                raise ImageError(path, f"not a readable video ({exc})") from exc
            run.error = f"the video breaks off after {run.duration:.2f} s ({exc})"
    if not run.frames:
        raise ImageError(path, "no frame could be decoded (an empty or truncated video)")


def expand_videos(paths: Iterable[Any], *, every: float = DEFAULT_VIDEO_EVERY_S, scenes: bool = True,
                  on_video: Callable[[VideoRun], None] | None = None,
                  on_error: Callable[[str, str], None] | None = None,
                  skip: Callable[[str], bool] | None = None) -> Iterator[Any]:  # fmt: skip
    """``paths`` with each video replaced by its sampled frames (other items pass through, in order).

    Args:
        every, scenes: how to sample (:func:`sample_frames`).
        on_video: called with each video's :class:`VideoRun` when its frames are all out (or it failed).
        on_error: called with (video, reason) for a video that gives no frame at all.
        skip: frames (by name) to leave out, such as those a resumed run already has.
    """
    for item in paths:
        if not isinstance(item, (str, os.PathLike)) or not is_video(item):
            yield item
            continue
        run = VideoRun(os.fspath(item))
        try:
            for frame in sample_frames(run.path, every=every, scenes=scenes, run=run):
                if skip is None or not skip(frame.name):
                    run.taken += 1
                    yield frame
        except ImageError as exc:
            run.error = exc.reason
            if on_error is not None:
                on_error(run.path, exc.reason)
        if on_video is not None:
            on_video(run)


def summarize(run: VideoRun, rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A video's summary row from its frames' result rows, in the result files' shape: ``label`` is the label of
    most frames, ``predictions`` each label with its share of the frames (``score``), its frame count and the first
    and last time it was seen, and ``video`` the frame count, the length and any warning."""
    labels: dict[str, dict[str, Any]] = {}
    count = 0
    for row in rows:
        frame = parse_frame_name(str(row.get("image", "")))
        if frame is None or "error" in row:
            continue
        count += 1
        label = row.get("label") or "(none of these)"
        seen = labels.setdefault(label, {"label": label, "score": 0.0, "frames": 0, "first": frame[1],
                                         "last": frame[1]})  # fmt: skip
        seen["frames"] += 1
        seen["first"], seen["last"] = min(seen["first"], frame[1]), max(seen["last"], frame[1])
    found = sorted(labels.values(), key=lambda s: (-s["frames"], s["first"]))
    for seen in found:
        seen["score"] = round(seen["frames"] / max(count, 1), 4)
    about: dict[str, Any] = {"frames": count, "duration_s": round(run.duration, 2)}
    if run.error:
        about["warning"] = run.error
    top = found[0]["label"] if found else None
    return {"image": run.path, "sha256": "", "label": None if top == "(none of these)" else top,
            "predictions": found, "video": about}  # fmt: skip


class VideoTracker:
    """Videos through a tagging run: expands them into frames, collects the frames' rows, and hands out each
    video's summary row once all its frames are tagged (or its failure, when it gives no frame).

    Args:
        every, scenes: how to sample (:func:`sample_frames`).
        skip: frame names to leave out (a resumed run's), whose rows ``earlier`` gives back for the summary.
        earlier: a video's rows written by an earlier run.
    """

    def __init__(self, *, every: float = DEFAULT_VIDEO_EVERY_S, scenes: bool = True,
                 skip: Callable[[str], bool] | None = None,
                 earlier: Callable[[str], list[dict[str, Any]]] | None = None) -> None:  # fmt: skip
        self.every, self.scenes, self.skip, self.earlier = every, scenes, skip, earlier
        self.runs: dict[str, VideoRun] = {}  # videos whose frames are all out
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.failed: list[tuple[str, str]] = []

    def sources(self, paths: Iterable[Any]) -> Iterator[Any]:
        def ended(run: VideoRun) -> None:
            if run.frames:
                self.runs[run.path] = run

        yield from expand_videos(paths, every=self.every, scenes=self.scenes, on_video=ended, skip=self.skip,
                                 on_error=lambda path, reason: self.failed.append((path, reason)))  # fmt: skip

    def note(self, result: Any) -> None:
        """A tagging result or failure (a TagResult or TagFailure); only a frame's is kept, as its row."""
        frame = parse_frame_name(result.path)
        if frame is not None:
            self.rows.setdefault(frame[0], []).append(result.to_dict())

    def finished(self) -> Iterator[tuple[str, dict[str, Any] | str]]:
        """(video, summary row) for each video now complete, and (video, reason) for each that failed."""
        while self.failed:
            yield self.failed.pop(0)
        for path, run in list(self.runs.items()):
            rows = self.rows.get(path, [])  # failed frames among them: summarize counts only the tagged ones
            if len(rows) >= run.taken:
                del self.runs[path]
                self.rows.pop(path, None)
                before = self.earlier(path) if self.earlier is not None else []
                yield path, summarize(run, [*before, *rows])


def _thumbnail(frame: Any) -> np.ndarray:
    """A 32 x 32 grey thumbnail of a frame, 0-1, for the scene check: read off the luma plane where the frame has
    one (no colour conversion: about as fast as decoding), else converted."""
    if frame.format.name.startswith(("yuv", "yuvj", "nv12")):
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        rows = np.linspace(0, plane.height - 1, 64).astype(np.intp)
        columns = np.linspace(0, plane.width - 1, 64).astype(np.intp)
        grid = luma[np.ix_(rows, columns)].astype(np.float32)  # 64 x 64 samples over the whole picture
        grey = grid.reshape(32, 2, 32, 2).mean(axis=(1, 3))
        full_range = frame.format.name.startswith("yuvj") or getattr(frame, "color_range", 0) == 2
        return grey / 255.0 if full_range else np.clip((grey - 16.0) / 219.0, 0.0, 1.0)  # video range: 16-235
    return frame.to_ndarray(format="gray", width=32, height=32) / 255.0
