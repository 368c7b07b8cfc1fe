"""The referee (edge_agent/vision/truth.py): crossings from ground truth by one documented rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.vision.truth import MIN_FRAMES, tally, track_crossings, true_crossings

A, B = (100.0, 0.0), (100.0, 200.0)  # vertical line x = 100; side > 0 is x < 100 ("in" is left → right)
TUD = Path(__file__).resolve().parents[2] / "shared" / "data" / "tud_campus"


def path(xs: list[float], y: float = 100.0, start: int = 1) -> list[tuple[int, tuple[float, float]]]:
    return [(start + i, (x, y)) for i, x in enumerate(xs)]


def test_a_walk_through_counts_once_with_its_direction_and_frame() -> None:
    got = track_crossings(7, path([80, 90, 99, 101, 110, 120]), A, B)
    assert [(c.track, c.direction, c.frame) for c in got] == [(7, "in", 4)]
    back = track_crossings(8, path([120, 110, 101, 99, 90, 80]), A, B)
    assert [c.direction for c in back] == ["out"]


def test_an_excursion_shorter_than_n_frames_is_ignored_and_makes_no_pair() -> None:
    xs = [80, 90] + [105] * (MIN_FRAMES - 1) + [95, 90, 85]
    assert track_crossings(1, path(xs), A, B) == []
    xs = [80, 90] + [105] * MIN_FRAMES + [95, 90, 85]
    assert [c.direction for c in track_crossings(1, path(xs), A, B)] == ["in", "out"]


def test_jitter_on_the_line_then_a_real_crossing_counts_once() -> None:
    xs = [90, 101, 99, 101, 99, 102, 110, 120, 130]
    got = track_crossings(1, path(xs), A, B)
    assert [(c.direction, c.frame) for c in got] == [("in", 6)]


def test_crossing_as_the_track_ends_counts() -> None:
    assert [c.direction for c in track_crossings(1, path([80, 90, 95, 105]), A, B)] == ["in"]


def test_points_exactly_on_the_line_keep_the_side() -> None:
    assert track_crossings(1, path([90, 100, 100, 90, 90, 90]), A, B) == []


def test_outside_the_segment_does_not_count() -> None:
    assert track_crossings(1, path([80, 90, 110, 120, 130], y=300), A, B) == []
    # a diagonal step whose meeting point with the line lies beyond B
    assert track_crossings(1, [(1, (90.0, 190.0)), (2, (95.0, 195.0)), (3, (110.0, 230.0)), (4, (120.0, 240.0)),
                               (5, (130.0, 250.0))], A, B) == []


def test_many_crossings_of_one_track_are_not_capped() -> None:
    xs = [80] * 3 + [120] * 3 + [80] * 3 + [120] * 3
    assert [c.direction for c in track_crossings(1, path(xs), A, B)] == ["in", "out", "in"]


def test_same_end_points_refused() -> None:
    with pytest.raises(ValueError):
        track_crossings(1, path([1, 2]), A, A)


def test_true_crossings_from_boxes_use_the_bottom_centre() -> None:
    # The box spans the line horizontally on every frame but its bottom-centre moves across it.
    boxes = {f: {3: (x - 30, 10, x + 30, 60)} for f, x in enumerate([70, 80, 90, 110, 120, 130], 1)}
    got = true_crossings(boxes, A, B)
    assert [(c.track, c.direction, c.frame) for c in got] == [(3, "in", 4)]
    assert tally(got) == {"in": 1, "out": 0}


@pytest.mark.skipif(not TUD.exists(), reason="shared TUD-Campus data not present")
def test_tud_campus_truth_matches_the_documented_counts() -> None:
    from edge_agent.vision.evaluate import load_mot

    gt = load_mot(TUD / "gt" / "gt.txt")
    assert tally(true_crossings(gt, (320, 0), (320, 480))) == {"in": 4, "out": 1}
