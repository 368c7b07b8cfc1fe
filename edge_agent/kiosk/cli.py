"""`edge-agent kiosk …`: support-staff tools. `face-match ID_PHOTO LIVE_PHOTO` scores two photos with the
shipped models and ends with `RESULT score=<cosine> match=<true|false> threshold=<t>` (exit 0 either way;
exit 2 with a message when an image cannot be read or shows no face)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_face_match(args: argparse.Namespace) -> int:
    import cv2

    from edge_agent.kiosk.face import FaceMatcher, ModelError, NoFace

    images = []
    for name in (args.id_photo, args.live_photo):
        image = cv2.imread(name) if Path(name).is_file() else None
        if image is None:
            print(f"error: {name}: not a readable image file", file=sys.stderr)
            return 2
        images.append(image)
    try:
        matcher = FaceMatcher(args.model_dir, args.threshold)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    scores = []
    for name, image in zip((args.id_photo, args.live_photo), images, strict=True):
        try:
            scores.append(matcher.embed(image)[0])
        except NoFace:
            print(f"error: no face found in {name}", file=sys.stderr)
            return 2
    score = matcher.score(*scores)
    match = score >= args.threshold
    print(f"{'same person' if match else 'different people'} (cosine {score:.3f}, threshold {args.threshold})")
    print(f"RESULT score={score:.4f} match={str(match).lower()} threshold={args.threshold}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("kiosk", help="Hotel kiosk tools for support staff.")
    ks = k.add_subparsers(dest="kiosk_cmd", required=True)
    f = ks.add_parser("face-match", help="Score an ID photo against a live photo with the shipped face models.")
    f.add_argument("id_photo", help="ID-card photo (JPEG/PNG/BMP file).")
    f.add_argument("live_photo", help="Live photo of the guest.")
    f.add_argument("--threshold", type=float, default=0.363, help="Cosine score that counts as a match.")
    f.add_argument("--model-dir", type=Path, default=None, help="Model folder with manifest.json (default "
                   "models/face).")
    f.set_defaults(fn=cmd_face_match)
