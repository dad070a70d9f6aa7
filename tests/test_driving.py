"""Driving: the neutral reference of relative mode (its lips closed), lids that shut with the
driver's, lips that close with the driver's (in depth too), lips and lids that never cross, the soft
limit on turns, and the fast filter of lids and lips (the whole lips: they keep their thickness); on
real media, the bundled demo's mouth follows its driver (re-detected in the output)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from marionette.inference import demo
from marionette.inference.driving import LIPS_SHUT_AT, LIPS_SHUT_FROM, SHUT_AT, SHUT_FROM, Driving, neutral_frames, open_eyes, shut_lids, shut_lips
from marionette.inference.io import open_driver
from marionette.inference.pipeline import FAST_PARTS, ReenactConfig, ReenactPipeline
from marionette.inference.smoothing import OneEuroFilter
from marionette.landmark_transformer.model import LandmarkTransformer, limit_turn
from marionette.landmarks.crop import CropBox
from marionette.landmarks.layout import LOWER_LID, MESH_EYE_OPENINGS, MESH_MIRROR, UPPER_LID, mesh_to_ibug68
from marionette.landmarks.measures import eye_ratios, lip_gap, seen_eyes
from marionette.landmarks.mesh import FaceMesh
from marionette.landmarks.openings import closed_lips, mirrored_lids, opened_lids, uncrossed
from marionette.landmarks.pose import euler_to_rotation, head_pose
from marionette.media import iter_video
from marionette.resources import SAMPLE_DRIVER, asset

UPPER_LIP, LOWER_LIP = [82, 13, 312], [87, 14, 317]  # middle of the inner lips
SHUT = -0.06  # `mouth` at which face()'s lips meet (the mean face's part a little: lip gap 0.09)


def face(yaw: float = 0.0, mouth: float = 0.0, eyes: float = 1.0) -> np.ndarray:
    """(478, 3) the frontal mean mesh in 256 px crop pixels, turned by `yaw` degrees, the lower lip
    dropped by `mouth` inter-ocular units, the lids apart by `eyes` of their opening."""
    mesh = LandmarkTransformer.load().reference.copy()  # inter-ocular distance 1, centred
    mesh[LOWER_LIP, 1] += mouth
    for opening in MESH_EYE_OPENINGS:
        upper, lower = opening[UPPER_LID], opening[LOWER_LID]
        middle = (mesh[upper, 1] + mesh[lower, 1]) / 2
        mesh[upper, 1] = middle + eyes * (mesh[upper, 1] - middle)
        mesh[lower, 1] = middle + eyes * (mesh[lower, 1] - middle)
    mesh = mesh @ euler_to_rotation(np.array([yaw, 0.0, 0.0])).T
    return (mesh * 80 + np.array([128, 128, 0])).astype(np.float32)


def test_neutral_frames_are_the_closed_mouths_and_the_frontal_poses() -> None:
    # the clip starts turned and mid-word, blinks once, and is frontal with its mouth closed from frame 12
    clip = [face(yaw=30, mouth=0.3) for _ in range(6)] + [face(yaw=20, mouth=0.0, eyes=0.1)] * 2
    clip += [face(yaw=25, mouth=0.2)] * 4 + [face(yaw=1, mouth=0.02)] * 8 + [face(yaw=0, mouth=0.25)] * 10
    expression, pose = neutral_frames(np.stack(clip))
    assert set(expression.tolist()) <= set(range(12, 20))  # not the blink (closed mouth, shut eyes)
    assert set(pose.tolist()) <= set(range(12, 30))


def test_relative_mode_measures_from_the_neutral_face_not_the_first_frame() -> None:
    """A driver whose first frame is mid-word: from its neutral face the target's closed mouth opens
    when the driver's is open and closes when it is closed; from its first frame, the reverse."""
    transformer = LandmarkTransformer.load()
    clip = np.stack([face(mouth=0.3)] * 3 + [face(mouth=SHUT)] * 5 + [face(mouth=0.3)] * 2)
    box = CropBox(127.5, 127.5, 256.0)
    gaps = {}
    for reference in ("neutral", "first"):
        driving = Driving(transformer, "relative", 1.0, 256, reference=reference, expression="target")
        driving.set_targets(face(mouth=0.0)[None])
        start = driving.reference(clip, box)
        gaps[reference] = [float(lip_gap(driving(mesh, start))) for mesh in clip[[0, 4]]]
    rest = float(lip_gap(face()))  # the target's own mouth (the mean face's lips part a little)
    assert gaps["neutral"][0] > rest + 0.2 and abs(gaps["neutral"][1] - rest) < 0.01  # open, closed: as the driver
    assert abs(gaps["first"][0] - rest) < 0.01 and gaps["first"][1] < rest - 0.05  # against the driver


@pytest.mark.parametrize("transformer", [True, False])
def test_a_driver_whose_lips_never_meet_opens_the_targets_closed_mouth(transformer: bool) -> None:
    """A driver whose mouth is open in every frame (a singer's, case 5b of the hard cases): its
    neutral face has its lips closed, so the target's closed mouth opens by the driver's opening at
    its rest and further when it opens wider; measured from its first frame, it stays closed there.
    With the landmark transformer and with raw landmarks."""
    clip = np.stack([face(mouth=0.1)] * 6 + [face(mouth=0.3)] * 4)  # lip gap 0.24, then 0.55
    gaps = {}
    for reference in ("neutral", "first"):
        driving = Driving(LandmarkTransformer.load() if transformer else None, "relative", 1.0, 256,
                          reference=reference)
        driving.set_targets(face(mouth=SHUT)[None])
        start = driving.reference(clip, CropBox(127.5, 127.5, 256.0))
        gaps[reference] = [float(lip_gap(driving(mesh, start))) for mesh in clip[[0, 8]]]
    assert gaps["neutral"][0] > 0.15 and gaps["neutral"][1] > gaps["neutral"][0] + 0.25, gaps
    assert gaps["first"][0] < 0.03, gaps
    wide = face(mouth=0.3)  # lip gap 0.55
    assert abs(lip_gap(wide) - lip_gap(closed_lips(wide, 0.2)) - 0.2) < 0.01  # brought together by 0.2
    shut = closed_lips(wide, 1.0)
    assert lip_gap(shut) < 0.035 and lip_gap(closed_lips(face(yaw=30, mouth=0.3), 1.0)) < 0.04  # closed, turned too
    np.testing.assert_allclose(closed_lips(shut, 1.0), shut, atol=0.05)  # lips that meet: (all but) untouched


def test_lids_shut_when_the_drivers_eye_is_at_its_closed_floor() -> None:
    driven, open_eyes = face(), eye_ratios(face())
    for lids, kept in ((0.05, 0.0), (0.35, None), (0.8, 1.0)):  # the driver's lids apart by this share
        driver = face(eyes=lids)
        share = eye_ratios(driver) / open_eyes  # (2,) of its open eyes
        expected = np.clip((share - SHUT_AT) / (SHUT_FROM - SHUT_AT), 0, 1) if kept is None else kept
        assert kept is not None or 0.2 < expected.min() < 0.8  # the middle case is in between
        np.testing.assert_allclose(eye_ratios(shut_lids(driven, driver, open_eyes)), expected * eye_ratios(driven),
                                   atol=1e-3)
    assert shut_lids(driven, face(), open_eyes) is driven  # open eyes: untouched


def test_lips_meet_in_depth_when_the_drivers_lips_close() -> None:
    driven = face(yaw=45)  # a turned target whose lips its mesh keeps apart in depth
    driven[LOWER_LIP, 2] += 0.05 * 80
    assert lip_gap(driven, depth=True) > 0.12 and lip_gap(driven) > 0.08  # a slot in the image too
    closed, parted, open_ = face(mouth=SHUT), face(mouth=SHUT + 0.02), face(mouth=0.2)
    assert lip_gap(closed) < LIPS_SHUT_AT < lip_gap(parted) < LIPS_SHUT_FROM < lip_gap(parted, depth=True)
    shut = shut_lips(driven, closed)  # the driver's lips closed: as close as the driver's
    assert lip_gap(shut, depth=True) == pytest.approx(lip_gap(closed), abs=1e-4) and lip_gap(shut) < 0.005
    between = lip_gap(shut_lips(driven, parted), depth=True)
    assert 0.1 * lip_gap(driven, depth=True) < between < 0.9 * lip_gap(driven, depth=True)  # nearly: partly
    assert shut_lips(driven, open_) is driven  # the driver's mouth open: untouched
    assert shut_lips(closed, closed) is closed  # lips already as close as the driver's: untouched


def test_lids_opened_and_shut_to_a_ratio() -> None:
    """Each eye's lids moved across its corners' line to the eye aspect ratio asked for, on a turned
    face too; nothing but the lids moves."""
    lids = np.concatenate([o[part] for o in MESH_EYE_OPENINGS for part in (UPPER_LID, LOWER_LID)])
    for yaw in (0, 30):
        mesh = face(yaw=yaw)
        for factors in ([0.5, 1.4], [2.0, 0.7]):
            wanted = eye_ratios(mesh) * factors
            opened = opened_lids(mesh, wanted)
            np.testing.assert_allclose(eye_ratios(opened), wanted, atol=1e-4)
            moved = np.flatnonzero(np.abs(opened - mesh).max(-1) > 1e-4)
            assert set(moved) <= set(lids) and len(moved) > 20
    np.testing.assert_allclose(opened_lids(face(), eye_ratios(face())), face(), atol=1e-4)


def test_a_turned_away_eye_moves_as_the_shown_one() -> None:
    """`mirrored_lids`: where one eye is not shown, its opening moves as the shown one's, mirrored
    across the face; where both are shown, nothing changes."""
    change = np.random.default_rng(0).normal(size=(2, 478, 3))  # (T, 478, 3) displacements
    shown = np.array([[False, True], [True, True]])
    out = mirrored_lids(change, shown)
    hidden = MESH_EYE_OPENINGS[0]
    np.testing.assert_array_equal(out[0, hidden], change[0, MESH_MIRROR[hidden]] * [-1, 1, 1])
    np.testing.assert_array_equal(np.delete(out[0], hidden, 0), np.delete(change[0], hidden, 0))
    np.testing.assert_array_equal(out[1], change[1])


def test_lids_of_an_eye_the_driver_turns_away_follow_the_one_it_shows() -> None:
    """A driver's far eye, turned away, is read shut or wide whatever it does: the driven lids close
    only as far as the driver's shown eye does, and its open-eye openness counts only frames that
    show it."""
    driven, open_eyes_now = face(), eye_ratios(face())
    turned = face(yaw=70)
    assert seen_eyes(turned).tolist() == [False, True]  # the case is what it says
    far_shut = opened_lids(turned, [0.0, eye_ratios(turned)[1]])
    assert shut_lids(driven, far_shut, open_eyes_now) is driven  # the shown eye is open: nothing shuts
    both_shut = opened_lids(turned, [0.0, 0.0])
    assert np.all(eye_ratios(shut_lids(driven, both_shut, open_eyes_now)) < 0.01)  # it shuts: both do
    np.testing.assert_allclose(open_eyes(np.stack([face(), turned])),
                               [eye_ratios(face())[0], np.median([eye_ratios(face())[1], eye_ratios(turned)[1]])])


def test_lips_and_lids_never_cross() -> None:
    crossed = face()
    crossed[LOWER_LIP, 1] -= 0.1 * 80  # the lower lip above the upper
    fixed = uncrossed(crossed)
    assert np.all(fixed[LOWER_LIP, 1] >= fixed[UPPER_LIP, 1] - 1e-4)
    assert uncrossed(face(mouth=0.2)) is not None and np.array_equal(uncrossed(face(mouth=0.2)), face(mouth=0.2))


def test_turns_are_limited_softly_about_their_own_axis() -> None:
    angles = np.array([5.0, 30.0, 60.0, 120.0])
    turns = euler_to_rotation(np.stack([angles, np.zeros(4), np.zeros(4)], 1))  # (4, 3, 3) yaws
    limited = np.array([head_pose(mesh_to_ibug68(face() @ r.T))[0] for r in limit_turn(turns, 45.0)])
    plain = np.array([head_pose(mesh_to_ibug68(face() @ r.T))[0] for r in turns])
    assert abs(limited[0] - plain[0]) < 0.5  # small turns kept
    assert np.all(np.diff(limited) > 0) and limited[-1] < 46  # still ordered, never past the limit
    np.testing.assert_allclose(limit_turn(turns, 45.0) @ limit_turn(turns, 45.0).transpose(0, 2, 1),
                               np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-9)


def test_a_two_frame_blink_keeps_its_depth_through_the_filter() -> None:
    signal = np.ones((20, 2))
    signal[10:12] = 0.0  # a blink of two frames at 25 frames/s, in two coordinates
    boosted, plain = OneEuroFilter(25, 1.5, 0.02, boost=np.array([10.0, 1.0])), OneEuroFilter(25, 1.5, 0.02)
    out = np.array([boosted(x) for x in signal])
    flat = np.array([plain(x) for x in signal])
    assert out[:, 0].min() < 0.2 and flat[:, 1].min() > 0.5  # the boosted one closes, the plain one does not


def test_lips_snapping_shut_keep_their_thickness_through_the_filter() -> None:
    """The demo driver's widest mouth (frame 47) held, then his shut one (frame 60): in the first shut
    frame the filtered lips are as thick as his (the outer lips at the face's cut-off lagged the inner
    ones: 24.8 px of upper and lower lip against his 16.2, a mouth drawn with lips half again as thick)."""
    frames = list(iter_video(asset(SAMPLE_DRIVER)))
    with FaceMesh(video=True, max_faces=1) as tracker:
        wide, shut = (tracker.detect(frames[i])[0].mesh for i in (47, 60))
    assert lip_gap(wide, depth=True) > 0.5 and lip_gap(shut, depth=True) < 0.05
    config = ReenactConfig()
    smooth = OneEuroFilter(25, config.smooth_min_cutoff, config.smooth_beta, boost=FAST_PARTS)
    for _ in range(12):
        smooth(wide)
    filtered = smooth(shut)

    def thickness(mesh: np.ndarray) -> float:  # the upper lip's and the lower lip's, at their middles
        return float(np.linalg.norm(mesh[0, :2] - mesh[13, :2]) + np.linalg.norm(mesh[17, :2] - mesh[14, :2]))

    assert abs(thickness(filtered) / thickness(shut) - 1) < 0.1


@pytest.mark.parametrize("settings, follows", [({}, True), ({"reference": "first", "expression": "target"}, False)])
def test_the_demos_mouth_follows_its_driver(settings: dict, follows: bool) -> None:
    """Re-detected in the output, the bundled demo's mouth opens with its driver's. The clip starts
    mid-word: measured from its first frame on the target's own closed mouth, the output's mouth
    barely opens (before lips were kept from crossing, it moved against the driver's, r = -0.54)."""
    pipeline = ReenactPipeline(ReenactConfig(renderer="warp", size=128, paste_back=False, **settings))
    pipeline.set_targets([str(demo.TARGET)])
    driver, output = [], []
    with FaceMesh(video=True, max_faces=1) as on_driver, FaceMesh(video=True, max_faces=1) as on_output:
        for rendered in pipeline.render_frames(open_driver(str(demo.DRIVER))):
            driver.append(lip_gap(on_driver.detect(rendered.driver)[0].mesh))
            output.append(lip_gap(on_output.detect(rendered.output)[0].mesh))
    r = np.corrcoef(driver, output)[0, 1]
    assert (r > 0.9 and np.mean(output) > 0.1) if follows else np.mean(output) < 0.05, (r, np.mean(output))


def test_the_drivers_expression_on_another_face_keeps_the_mouths_opening() -> None:
    """The bundled demo: the driver's rest expression, regressed onto Grace Hopper's identity, pressed
    her lips through each other, which swallowed that much of every opening (the driven lip gap grew
    0.61 times the driver's, in inter-ocular units); brought to meet first, 0.77. Her own face, as
    the only target of itself, is still reproduced exactly (test_landmark_transformer)."""
    from marionette.landmarks.crop import head_box
    from marionette.landmarks.layout import inter_ocular
    from marionette.landmarks.mesh import detect_face
    from marionette.media import iter_video, load_image

    with FaceMesh(video=True, max_faces=1) as tracker:
        driver = np.stack([tracker.detect(frame)[0].mesh for frame in iter_video(demo.DRIVER)])  # (75, 478, 3)
    image = load_image(demo.TARGET)
    found = detect_face(image, demo.TARGET)
    box = head_box(found.mesh, 1.8, -0.1)
    driving = Driving(LandmarkTransformer.load(), "relative", 1.0, 256)  # expression=driver, the default
    driving.set_targets(box.to_crop(found.mesh, 256)[None])
    start = driving.reference(driver, CropBox(180.0, 144.0, 360.0))
    driven = np.stack([driving(mesh, start) for mesh in driver])

    def gap(mesh: np.ndarray) -> np.ndarray:  # (N,) inner-lip gap in inter-ocular units
        return np.linalg.norm(mesh[:, 13] - mesh[:, 14], axis=-1) / inter_ocular(mesh_to_ibug68(mesh))

    slope = np.polyfit(gap(driver), gap(driven), 1)[0]
    assert slope > 0.7, slope


def test_a_squinting_targets_eyes_rest_no_wider_than_hers_or_the_drivers() -> None:
    """The bundled demo, relative mode with the driver's expression (the default): Grace Hopper squints
    in her photo, which the transformer reads partly as expression, and the driver's relaxed lids
    regress towards the mean, so on her identity the driver's rest expression opened her eyes wider
    than both (a stare: eye aspect ratios 0.33-0.36 where her photo's are 0.25-0.29 and the driver's
    0.20-0.23). Her rest face's lids are now as open as the driver's at its rest."""
    from marionette.landmarks.mesh import detect_face
    from marionette.media import load_image

    lt = LandmarkTransformer.load()
    with FaceMesh(video=True, max_faces=1) as tracker:
        driver = np.stack([tracker.detect(frame)[0].mesh for frame in iter_video(demo.DRIVER)])  # (75, 478, 3)
    target_mesh = detect_face(load_image(demo.TARGET), demo.TARGET).mesh
    target = lt.prepare_targets(target_mesh[None])
    expression, pose = neutral_frames(driver)
    start = lt.prepare_reference(driver[expression], driver[pose])
    own, rest = eye_ratios(lt.normalize(target_mesh[None])[0][0]), eye_ratios(start.shape)  # (2,) each
    regressed = eye_ratios(lt.mean_shape + target.identity + lt.project(start.coefficients))
    assert np.all(regressed > np.maximum(own, rest) + 0.03), (regressed, own, rest)  # the case is what it says
    shapes = lt.normalize(driver)[0]
    out = lt.drive(driver, target, alpha=1.0, mode="relative", start=start).shapes
    rest_face = out - (shapes - start.shape)  # (75, 478, 3) each frame less the driver's change: its rest face
    assert np.abs(rest_face - rest_face[0]).max() < 1e-6
    np.testing.assert_allclose(eye_ratios(rest_face[0]), rest, atol=0.005)


@pytest.fixture(scope="module")
def starts_turned(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """The hard case 2a (real media): its driver's meshes (41, 478, 3), tracked, and its wide-eyed frontal
    target's mesh (478, 3) in its 256-px crop."""
    from marionette.landmarks.crop import head_box
    from marionette.landmarks.mesh import detect_face
    from marionette.media import load_image

    clip = shared_data / "train" / "spectre_0fi83bhqsma" / "spectre_1.mp4"
    with FaceMesh(video=True, max_faces=1) as tracker:
        driver = np.stack([tracker.detect(frame)[0].mesh for frame in iter_video(clip)])
    path = shared_data / "faces" / "11_young_woman_frontal.jpg"
    found = detect_face(load_image(path), path)
    return driver, head_box(found.mesh, 1.8, -0.1).to_crop(found.mesh, 256)


def test_a_driver_that_starts_turned_winks_no_eye_of_the_output(starts_turned: tuple[np.ndarray, np.ndarray]) -> None:
    """2a's driver starts in profile: its far eye, drawn at a fifth to a third of the near one's width,
    reads 0.3-0.8 open whatever it does, and the turned frames among those its open-eye openness came
    from made it 0.52 (the near eye's 0.25): wherever the driver, facing the camera again, showed that
    eye 0.1-0.2 open, the output's shut (at 5 of its frames, a wink the driver never made). Each eye's
    openness now counts only the frames that show it, and a turned-away eye moves as the shown one."""
    from marionette.landmarks.crop import head_box

    driver, target = starts_turned
    hidden = ~seen_eyes(driver).all(-1)
    assert hidden[:5].all() and not hidden[20:].any()  # turned at first, then towards the camera
    driving = Driving(LandmarkTransformer.load(), "relative", 1.0, 256)
    driving.set_targets(target[None])
    reference = driving.reference(driver, head_box(driver[0], 1.8, -0.1))
    assert abs(reference.eyes_open[0] - reference.eyes_open[1]) < 0.05, reference.eyes_open
    driven = np.stack([driving(mesh, reference) for mesh in driver])
    eyes = eye_ratios(driving.transformer.normalize(driven)[0])  # (41, 2) face on: a far eye is not foreshortened
    winks = ~hidden & (eyes.min(-1) < 0.04) & (eyes.max(-1) > 0.15)
    assert not winks.any(), (np.flatnonzero(winks), eyes[winks].round(2))


def test_a_wide_eyed_targets_eyes_rest_no_narrower_than_hers_or_the_drivers(
        starts_turned: tuple[np.ndarray, np.ndarray]) -> None:
    """2a's target is wide-eyed (eye aspect ratios 0.39 / 0.34 face on), its driver's rest lids 0.27 /
    0.21: the driver's regressed rest expression on her identity shut her eyes further than both (0.19
    / 0.18, half shut at every frame). Her rest face's lids are now as open as the narrower of the two;
    a target eye its photo shows nearly shut is left as the transformer puts it."""
    driver, target_mesh = starts_turned
    lt = LandmarkTransformer.load()
    target = lt.prepare_targets(target_mesh[None])
    assert target.open_eyes.all()
    expression, pose = neutral_frames(driver)
    start = lt.prepare_reference(driver[expression], driver[pose])
    narrower = np.minimum(target.eyes, eye_ratios(start.shape))  # (2,)
    regressed = eye_ratios(lt.mean_shape + target.identity + lt.project(start.coefficients))
    assert np.all(regressed < narrower - 0.02), (regressed, narrower)  # the case is what it says
    shapes = lt.normalize(driver)[0]
    change = mirrored_lids(shapes - start.shape, seen_eyes(driver))

    def rest_face(target) -> np.ndarray:  # the last frame less the driver's change
        return lt.drive(driver, target, alpha=1.0, mode="relative", start=start).shapes[-1] - change[-1]

    np.testing.assert_allclose(eye_ratios(rest_face(target)), narrower, atol=0.005)
    shut = replace(target, open_eyes=np.array([False, True]))  # as if its photo showed the right eye nearly shut
    assert eye_ratios(rest_face(shut))[0] == pytest.approx(regressed[0], abs=0.005)
