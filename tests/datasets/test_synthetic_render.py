"""The synthetic generator's pictures: exact masks and pixel alignment, the whole hand in frame,
bitwise reproducibility, skin layout and backgrounds from any MANO-format model."""
import dataclasses

import numpy as np
import pytest

import mano_jax
from datasets.synthetic_generator import appearance, backgrounds, generator, hands, placement
from hiu_jax.geometry.projection import project_pinhole

SIZE = 64  # small images keep the tests fast; nothing here depends on the size


@pytest.fixture(scope="module")
def scene():
    return generator.Scene(mano_jax.procedural_model(), SIZE)


def _rngs(idx, seed=5):
    return [np.random.default_rng([seed, 0, i]) for i in idx]


def _covered_by_triangles(uv, faces, size):
    """(size, size) min over faces of the smallest signed edge distance (pixels) of each pixel
    centre (c, r) to the projected triangle: > 0 inside some triangle, float64."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    best = np.full((size, size), -np.inf)
    tri = uv[faces]  # (F, 3, 2)
    for a, b, c in tri:
        lo = np.floor(np.minimum(np.minimum(a, b), c)).astype(int) - 1
        hi = np.ceil(np.maximum(np.maximum(a, b), c)).astype(int) + 2
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], size), min(hi[1], size)
        if x0 >= x1 or y0 >= y1:
            continue
        px, py = xs[y0:y1, x0:x1], ys[y0:y1, x0:x1]
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if area == 0:
            continue
        d = np.full(px.shape, np.inf)
        for p, q in ((a, b), (b, c), (c, a)):
            e = ((q[0] - p[0]) * (py - p[1]) - (q[1] - p[1]) * (px - p[0])) * np.sign(area)
            d = np.minimum(d, e / np.hypot(*(q - p)))
        best[y0:y1, x0:x1] = np.maximum(best[y0:y1, x0:x1], d)
    return best


def test_mask_is_the_projected_mesh_in_the_label_pixel_convention(scene):
    """Without forearm or occluders, the rendered hand is exactly the union of the mesh's
    triangles projected with the written K (pixel (c, r) centred at (c, r)): every pixel centre
    0.01 px inside a triangle is covered, none 0.01 px outside all of them is."""
    bare = generator.Scene(scene.model, SIZE, forearm=False)  # open at the wrist: no culling
    assert bare.outward is None
    geo = generator._geometry(bare, _rngs(range(3)), "freihand")
    faces = np.asarray(bare.faces)
    for i in range(3):
        rendered = geo["face_index"][i] >= 0
        dist = _covered_by_triangles(project_pinhole(geo["K"][i], geo["verts_cam"][i], xp=np), faces, SIZE)
        assert rendered.sum() > 100
        assert np.all(rendered[dist > 0.01]), f"image {i}: hand pixels missing from the render"
        assert not np.any(rendered[dist < -0.01]), f"image {i}: render outside the mesh"


def test_pixels_show_the_surface_point_that_projects_onto_them(scene):
    """The perspective-correct barycentrics of each rendered pixel give a camera-frame point that
    K projects onto that pixel's centre (one pixel convention for labels and images)."""
    geo = generator._geometry(scene, _rngs(range(2)), "freihand")
    for i in range(2):
        fi = geo["face_index"][i]
        rows, cols = np.nonzero(fi >= 0)
        tri = geo["all_verts"][i][geo["all_faces"][fi[rows, cols]]]  # (N, 3, 3)
        point = np.einsum("nk,nkj->nj", geo["bary"][i][rows, cols].astype(np.float64), tri)
        uv = project_pinhole(geo["K"][i], point, xp=np)
        # float32 rasteriser: coordinates of ~0.5 m and focal lengths ~150 px (64 px images)
        np.testing.assert_allclose(uv, np.stack([cols, rows], 1), atol=2e-3)


def test_mask_is_the_visible_hand_only(scene):
    """The mask is the hand's own fragments minus occluders: never the forearm, never
    background; samples with occluders lose mask pixels that the bare hand has."""
    rngs = _rngs(range(8))
    rgb, mask, _ = generator._render_batch(scene, rngs, "freihand")
    geo = generator._geometry(scene, _rngs(range(8)), "freihand")
    hand = (geo["face_index"] >= 0) & (geo["face_index"] < len(scene.faces))
    assert rgb.shape == (8, SIZE, SIZE, 3) and rgb.dtype == np.uint8
    assert np.all(mask <= hand)
    assert np.any(geo["face_index"] >= len(scene.faces)), "the forearm is drawn"
    assert np.any(mask.sum((1, 2)) < hand.sum((1, 2))), "some samples are occluded"


def test_whole_hand_in_frame():
    """All 21 keypoints inside the image in every sample, >= 98 % of the vertices on average
    (each accepted placement holds >= MIN_VERTICES_IN of them)."""
    model = mano_jax.procedural_model()
    frame = placement.hand_frame(model)
    rngs = _rngs(range(48), seed=9)
    params = [hands.sample_hand_params(r, model, procedural_poses=True, frame=frame) for r in rngs]
    verts, joints = (np.asarray(x, np.float64) for x in hands.posed_hands(
        model, np.stack([p for p, _ in params]), np.stack([b for _, b in params])))
    share = []
    for r, v, j in zip(rngs, verts, joints):
        K, t = placement.sample_camera(r, v, j, 224)
        assert np.all(placement.inside(project_pinhole(K, j + t, xp=np), 224))
        share.append(placement.inside(project_pinhole(K, v + t, xp=np), 224).mean())
        f = K[0, 0]
        assert 500 <= f <= 700 and abs(K[0, 2] - 111.5) <= placement.PRINCIPAL_JITTER
    assert np.mean(share) >= 0.98 and np.min(share) >= placement.MIN_VERTICES_IN


def test_same_seed_same_pixels_whatever_the_batching(scene):
    """A sample's image and mask depend only on its seed: bitwise equal in a batch of 4 and in
    two batches of 2."""
    rgb4, mask4, lab4 = generator._render_batch(scene, _rngs(range(4)), "freihand")
    parts = [generator._render_batch(scene, _rngs(idx), "freihand") for idx in ((0, 1), (2, 3))]
    np.testing.assert_array_equal(rgb4, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(mask4, np.concatenate([p[1] for p in parts]))
    np.testing.assert_array_equal(lab4["verts"], np.concatenate([p[2]["verts"] for p in parts]))


def test_a_user_model_gets_the_same_treatment():
    """A MANO-format model that is not the procedural one (poses from its PCA) renders with
    nails, palm/back and a forearm found from its own template."""
    base = mano_jax.procedural_model()
    rng = np.random.default_rng(0)
    user = dataclasses.replace(base, v_template=base.v_template + 1e-4 * rng.standard_normal(
        base.v_template.shape).astype(np.float32))
    assert not hands.is_procedural(user)
    layout = appearance.surface_layout(user)
    assert layout.static.shape == (778, appearance.STATIC_CHANNELS)
    assert layout.nail.sum() >= 5 and (layout.palm > 0.3).mean() > 0.25
    assert len(hands.wrist_ring(user.faces)) == 16
    user_scene = generator.Scene(user, SIZE)
    rgb, mask, labels = generator._render_batch(user_scene, _rngs(range(2)), "uniform")
    assert mask.sum() > 50 and labels["verts"].shape == (2, 778, 3)


def test_skin_creases_sit_on_the_joints():
    """Crease channels: every finger has palm-side and back creases, and palm pixels near a
    crease are darker than the skin around them."""
    layout = appearance.surface_layout(mano_jax.procedural_model())
    palm, d, w_back, w_palm = (layout.static[:, i] for i in range(4))
    assert np.sum((w_back > 0) & (np.abs(d) < 1.0)) >= 10
    assert np.sum((w_palm > 0) & (np.abs(d) < 1.0)) >= 10
    static = np.zeros((3, appearance.STATIC_CHANNELS), np.float32)  # 3 pixels
    static[:, 0] = 1.0  # palm side
    static[:, 3] = 1.0  # palm-crease weight
    static[:, 1] = [0.0, 2.0, appearance.CREASE_REACH]
    static[:, 4] = -1.0  # outside the palm lines
    static[:, 6] = 9.0  # no nail
    colour, crease, nail = appearance.pixel_albedo(np.full((3, 3), 0.6, np.float32), static.T,
                                                   np.zeros((4, 4), np.float32), np.zeros(3), 0.4)
    assert crease[0] > 0.7 and crease[2] < 1e-3 and np.all(nail == 0)
    assert np.all(colour[:, 0] < colour[:, 2])  # (3, N) channel-major


def test_background_bank_photos_and_textures():
    """The bank holds scikit-image's redistributable photographs when installed, then the
    procedural textures; backgrounds are deterministic per generator."""
    bank = backgrounds.bank()
    photos = len(bank) - len(backgrounds.PROCEDURAL)
    assert photos == (len(backgrounds.PHOTOS) if backgrounds.photo_dir() else 0)
    assert all(b.shape == (backgrounds.BANK_SIZE, backgrounds.BANK_SIZE, 3) for b in bank)
    images = backgrounds.variant_images(SIZE)
    a = backgrounds.background(np.random.default_rng(1), images, SIZE)
    b = backgrounds.background(np.random.default_rng(1), images, SIZE)
    assert a.shape == (SIZE, SIZE, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="procedural texture"):
        backgrounds.procedural_texture(np.random.default_rng(0), "plaid", 32)


def test_back_face_culling_changes_nothing_on_the_closed_hand_and_forearm(scene):
    """The capped forearm closes the hand, so culling faces turned away from the camera gives
    the same picture as drawing both sides (up to pixel centres on an edge seen edge-on)."""
    from datasets.synthetic_generator.rasterizer import rasterize_hands

    geo = generator._geometry(scene, _rngs(range(4)), "freihand")
    both, _, _ = rasterize_hands(geo["all_verts"], geo["all_faces"], geo["K"], SIZE)
    assert scene.outward is not None
    assert np.mean(both != geo["face_index"]) < 1e-3
    assert np.mean((both >= 0) != (geo["face_index"] >= 0)) < 1e-4


def test_occlusion_darkens_skin_facing_another_finger():
    """A vertex whose normal points at a nearby keypoint sphere is darkened, one facing away or
    far from every sphere is not (the sphere's own finger lies behind the surface)."""
    from datasets.synthetic_generator import skin_lighting

    joints = np.zeros((1, 21, 3))
    joints[0, :, 0] = 1.0  # every sphere far away ...
    joints[0, 0] = (0.0, 0.0, 0.02)  # ... but one, 2 cm in front of the vertices at the origin
    vertices = np.zeros((1, 3, 3))
    vertices[0, 2] = (0.0, 0.0, -1.0)
    normals = np.array([[[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]], np.float32)
    ao = skin_lighting.occlusion(vertices, normals, joints)
    assert ao[0, 0] < 0.8 and ao[0, 1] > 0.99 and ao[0, 2] > 0.99
    assert ao.min() >= skin_lighting.AO_FLOOR


def test_soften_keeps_flat_regions_and_blurs_edges():
    """The lens-softness kernel sums to 1: a flat image is unchanged, a step is spread."""
    flat = np.full((5, 5, 3), 100, np.int16)
    np.testing.assert_array_equal(generator.soften(flat), flat)
    step = np.zeros((5, 5, 1), np.int16)
    step[:, 2:] = 200
    out = generator.soften(step)
    assert out[2, 1, 0] == 25 and out[2, 2, 0] == 175 and out[2, 4, 0] == 200
