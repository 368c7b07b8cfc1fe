"""`edge-agent vision run`: the frames/s it prints is end to end, its progress survives a container that
misreports its frame count, and a missing execution provider is a clear error (or an explicit fallback)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest

from edge_agent.cli import main
from edge_agent.vision.cli import Progress
from edge_agent.vision.sources import frame_count


def avi(path: Path, frames: int, claim: int) -> Path:
    """An MJPG AVI holding `frames` frames whose headers (avih and strh) claim `claim`."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        w.write(np.full((48, 64, 3), (i * 9) % 255, np.uint8))
    w.release()
    data = bytearray(path.read_bytes())
    assert data[24:28] == b"avih" and struct.unpack_from("<I", data, 48)[0] == frames
    struct.pack_into("<I", data, 48, claim)  # avih.dwTotalFrames
    strh = data.find(b"strh")
    struct.pack_into("<I", data, strh + 8 + 32, claim)  # strh.dwLength
    path.write_bytes(bytes(data))
    return path


class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_over_and_under_reported_totals() -> None:
    clock, out = Ticks(), io.StringIO()
    p = Progress(50, out, clock)
    for i in range(1, 21):
        clock.t = i / 10
        p.update(i)
    p.finish()  # 20 frames of a claimed 50: the bar closes at 20/20
    last = out.getvalue().rsplit("\r", 1)[-1]
    assert "20/20" in last and "200.0 fps" not in last and "10.0 fps" in last
    out2 = io.StringIO()
    q = Progress(5, out2, clock)
    for i in range(1, 61):
        q.update(i)
    q.finish()
    assert "60 frames" in out2.getvalue().rsplit("\r", 1)[-1] and "/5" not in out2.getvalue()


def test_vision_run_on_a_file_that_lies_about_its_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = avi(tmp_path / "short.avi", frames=20, claim=50)
    assert frame_count(str(video)) == 50  # what the container says
    assert main(["vision", "run", "--source", str(video), "--line", "32,0,32,48", "--every-frame"]) == 0
    cap = capsys.readouterr()
    assert cap.err.rsplit("\r", 1)[-1].strip().startswith("[" + "#" * 30 + "] 20/20")
    assert "frames 20, detector ran on 20" in cap.out and "fps end to end" in cap.out
    long = avi(tmp_path / "long.avi", frames=60, claim=10)
    assert main(["vision", "run", "--source", str(long), "--line", "32,0,32,48"]) == 0
    assert "60 frames" in capsys.readouterr().err.rsplit("\r", 1)[-1]


def test_end_to_end_rate_counts_the_decoding_of_skipped_frames(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Gated on a still scene the detector runs on few frames; the pipeline-only rate leaves out the decoding
    of the others, the end-to-end rate may not be higher than the rate of decoding them all."""
    import re
    import time

    import cv2

    video = avi(tmp_path / "still.avi", frames=120, claim=120)
    t = time.perf_counter()
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    decode_fps = n / (time.perf_counter() - t)
    assert main(["vision", "run", "--source", str(video), "--line", "32,0,32,48"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"detector ran on (\d+), ([\d.]+) fps end to end \(pipeline alone ([\d.]+) fps\)", out)
    assert m, out
    ran, e2e = int(m[1]), float(m[2])
    assert ran < 120 and e2e < decode_fps * 1.5  # never faster than just decoding the file (with slack)


def test_missing_provider_is_an_error_or_an_explicit_fallback(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    video = avi(tmp_path / "v.avi", frames=5, claim=5)
    args = ["vision", "run", "--source", str(video), "--line", "32,0,32,48", "--providers",
            "TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider"]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and "TensorrtExecutionProvider" in capsys.readouterr().err
    assert main([*args, "--provider-fallback"]) == 0  # no GPU here: runs on the CPU, says so
    assert "falling back to ['CPUExecutionProvider']" in capsys.readouterr().err  # the CLI logs to stderr


def test_doctor_names_a_camera_whose_provider_is_missing(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
[device]
id = "cam-01"
site = "westlake"
[store]
path = "{tmp_path / 'outbox.db'}"
[mqtt]
url = "mqtt://127.0.0.1:1"
[[producers]]
type = "vision"
name = "gpu-cam"
source = "0"
providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
lines = [{{ name = "door", points = [0, 0, 10, 0] }}]
""")
    out = subprocess.run([sys.executable, "-m", "edge_agent", "doctor", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    row = next(line for line in out.stdout.splitlines() if "detector default (gpu-cam)" in line)
    assert row.startswith("FAIL") and "TensorrtExecutionProvider" in row and "will not start" in row


def test_no_spin_session_detects_the_same() -> None:
    import cv2

    from edge_agent.vision.detector import OnnxDetector, default_model_dir
    from edge_agent.vision.session import SharedSession

    frame = cv2.imread(str(Path(__file__).parent / "fixtures" / "tud_campus" / "img1" / "000001.jpg"))
    assert frame is not None
    a = OnnxDetector(session=SharedSession(default_model_dir(), spin=True)).detect(frame)
    b = OnnxDetector(session=SharedSession(default_model_dir(), spin=False)).detect(frame)
    assert len(a) >= 3 and np.allclose(a, b, atol=1e-3)
