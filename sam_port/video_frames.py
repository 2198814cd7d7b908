"""A video's frames, read one at a time (`sam2/utils/misc.py`'s `load_video_frames` reads
them all up front; a long video then needs its whole length in memory).

A video is a folder of frames (the official layout: `<index>.jpg`, sorted by the number; PNG
frames too, and names that are not numbers sorted as text), a video file (read through
`imageio`'s ffmpeg plugin, the `video` extra), or a sequence of HxWx3 uint8 arrays. Each
frame is prepared as the official loader prepares it: PIL's resize to S x S (bicubic),
scaled to [0, 1], normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")


class FrameError(ValueError):
    """A video that cannot be read: the message names the file and the problem."""


def frame_files(folder: Path) -> list[Path]:
    """The frames of a folder in order: by number where every name is one (`00012.jpg`),
    else by name."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
    if not files:
        raise FrameError(f"{folder}: no frames (.jpg, .jpeg or .png files) in this folder")
    if all(p.stem.isdigit() for p in files):
        return sorted(files, key=lambda p: int(p.stem))
    return sorted(files, key=lambda p: p.name)


def prepare_frame(frame: Image.Image, size: int, mean: Sequence[float],
                  std: Sequence[float]) -> np.ndarray:
    """`_load_img_as_tensor` and the normalisation after it: an RGB PIL frame ->
    (size, size, 3) float32."""
    pixels = np.asarray(frame.convert("RGB").resize((size, size))) / 255.0
    pixels = pixels.astype(np.float32)
    return (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


class VideoFrames:
    """Random access to a video's frames as HxWx3 uint8 arrays (`frame(i)`), with its length
    and frame size; nothing is held but the open file."""

    def __init__(self, video: str | Path | Sequence[np.ndarray]):
        self._reader: Any = None
        self._files: list[Path] | None = None
        self._arrays: Sequence[np.ndarray] | None = None
        self.fps: float | None = None  # a video file's frame rate
        # the last frame read: the tracker, the reference and the overlay each ask for the
        # frame they are at, and a video file seeks backwards only by reopening
        self._last: tuple[int, np.ndarray] | None = None
        if isinstance(video, (str, Path)):
            self.source = Path(video)
            if self.source.is_dir():
                self._files = frame_files(self.source)
                self.num_frames = len(self._files)
            elif self.source.is_file():
                self._reader = _open_video(self.source)
                self.num_frames = _count_frames(self._reader, self.source)
                self.fps = self._reader.get_meta_data().get("fps")
            else:
                raise FrameError(f"{self.source}: no such video file or frame folder")
        else:
            self.source = Path("<frames>")
            self._arrays = video
            self.num_frames = len(video)
        if self.num_frames == 0:
            raise FrameError(f"{self.source}: the video has no frames")
        first = self.frame(0)
        self.height, self.width = first.shape[:2]

    def __len__(self) -> int:
        return self.num_frames

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as an HxWx3 uint8 array."""
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        if self._files is not None:
            path = self._files[index]
            try:
                with Image.open(path) as image:
                    frame = np.asarray(image.convert("RGB"))
            except (OSError, ValueError) as error:
                raise FrameError(f"{path}: not a readable image ({error})") from None
        elif self._reader is not None:
            try:
                frame = np.asarray(self._reader.get_data(index))[..., :3]
            except (IndexError, OSError, RuntimeError) as error:
                raise FrameError(f"{self.source}: frame {index} cannot be read ({error})"
                                 ) from None
        else:
            frame = np.asarray(self._arrays[index])
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise FrameError(f"frame {index}: expected an HxWx3 uint8 array, got "
                                 f"{frame.dtype} {frame.shape}")
        if index and frame.shape[:2] != (self.height, self.width):
            raise FrameError(f"{self.name(index)}: frame is {frame.shape[1]}x{frame.shape[0]}, "
                             f"the video's first is {self.width}x{self.height}")
        self._last = (index, frame)
        return frame

    def name(self, index: int) -> str:
        """What frame `index` is called in messages and output names."""
        if self._files is not None:
            return str(self._files[index])
        return f"{self.source}: frame {index}"

    def prepared(self, index: int, size: int, mean: Sequence[float], std: Sequence[float]
                 ) -> np.ndarray:
        """Frame `index` as the model sees it (`prepare_frame`)."""
        return prepare_frame(Image.fromarray(self.frame(index)), size, mean, std)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _open_video(path: Path) -> Any:
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise FrameError(f"{path}: reading a video file needs imageio and imageio-ffmpeg "
                         f"(pip install 'vrp-sam-jax[video]'), or give a folder of frames"
                         ) from None
    if path.suffix.lower() == ".gif":
        return imageio.get_reader(path)
    try:
        return imageio.get_reader(path, "ffmpeg")
    except (OSError, RuntimeError, ValueError, ImportError) as error:
        raise FrameError(f"{path}: not a readable video ({error})") from None


def _count_frames(reader: Any, path: Path) -> int:
    try:
        count = reader.count_frames() if hasattr(reader, "count_frames") else len(reader)
    except (OSError, RuntimeError, ValueError) as error:
        raise FrameError(f"{path}: not a readable video ({error})") from None
    return int(count)
