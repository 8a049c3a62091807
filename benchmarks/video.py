"""Video tagging end to end: frames per second for a generated one-minute video.

Usage: python benchmarks/video.py [--model clipzero-shapes] [--seconds 60] [--fps 30] [--size 640x360] [--every 2]

The video: ``--seconds`` of scenes of the bundled world, a new scene every 5 s (cuts between the 2 s samples) with a
slow pan inside each, H.264 at ``--fps``. Then, in this process, three timings: decoding alone (every frame, as the
sampler must for scene changes), sampling (decode plus the scene check, no model), and ``tag_images`` end to end
(sample, encode, classify against 64 labels). Reported as decoded frames per second of wall time and as the share of
the run each part takes.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path


def make_video(path: Path, seconds: int, fps: int, width: int, height: int) -> int:
    import av

    from clipzero.synthetic.world import render, sample_scene

    rng = random.Random(0)
    frames = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(0, seconds, 5):
            scene = render(sample_scene(rng, size=96)).resize((width + 60, height + 60))
            for i in range(5 * fps):
                shift = i * 60 // (5 * fps)
                frame = av.VideoFrame.from_image(scene.crop((shift, shift, shift + width, shift + height)))
                for packet in stream.encode(frame):
                    container.mux(packet)
                frames += 1
        for packet in stream.encode():
            container.mux(packet)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="clipzero-shapes")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--every", type=float, default=2.0)
    args = parser.parse_args()
    import av

    from clipzero import load_model, tag_images
    from clipzero.synthetic.world import all_combinations, combination_label
    from clipzero.video import VideoTracker, sample_frames

    width, height = (int(v) for v in args.size.split("x"))
    path = Path(tempfile.mkdtemp(prefix="clipzero-video-")) / "minute.mp4"
    frames = make_video(path, args.seconds, args.fps, width, height)
    print(f"video: {args.seconds} s, {frames} frames of {width}x{height} at {args.fps} fps, "
          f"{path.stat().st_size / 1e6:.1f} MB")  # fmt: skip

    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = sum(1 for _ in container.decode(stream))
    decode_s = time.perf_counter() - start

    start = time.perf_counter()
    sampled = len(list(sample_frames(str(path), every=args.every)))
    sample_s = time.perf_counter() - start

    encoder = load_model(args.model)
    labels = [combination_label(c, s) for c, s in all_combinations()]
    list(tag_images([str(path)], labels, model=encoder, templates="photo"))  # warm: labels encoded, threads up
    start = time.perf_counter()
    results = list(tag_images([str(path)], labels, model=encoder, templates="photo",
                              videos=VideoTracker(every=args.every)))  # fmt: skip
    tag_s = time.perf_counter() - start
    tagged = sum(1 for r in results if "#t=" in getattr(r, "path", ""))

    print(f"decode only:      {decoded / decode_s:7.1f} frames/s ({decode_s:.2f} s)")
    print(f"sample (+scenes): {decoded / sample_s:7.1f} frames/s ({sample_s:.2f} s), {sampled} frames taken")
    print(f"tag end to end:   {decoded / tag_s:7.1f} frames/s of video ({tag_s:.2f} s for {args.seconds} s of "
          f"video, {args.seconds / tag_s:.1f}x real time), {tagged} frames tagged ({tagged / tag_s:.1f}/s)")
    print(f"share of the run: decoding {decode_s / tag_s:.0%}, scene check and frame copies "
          f"{(sample_s - decode_s) / tag_s:.0%}, encoding and the rest {(tag_s - sample_s) / tag_s:.0%}")


if __name__ == "__main__":
    main()
