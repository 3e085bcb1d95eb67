"""The phantom's anatomy: tissue ids, a random patient, and the tissue map at any world points.

World frame (mm, axes ``(z, y, x)``, identity direction, LPS): ``+z`` is cranial, ``+y`` posterior,
``+x`` the patient's left. The origin lies on the midline near the centre of the liver. Every shape
is an implicit function of world points, so the same patient can be drawn on any grid and through
any breathing deformation: :func:`render_anatomy` paints organs in a fixed order (later wins) at the
points it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diff4mmlits.data.phantom.shapes import (
    Blocks,
    FourierField,
    ellipse_level_yx,
    ellipsoid_level,
    random_fourier_field,
    rotation_zyx,
    segment_distance,
    smooth_min,
)

TISSUES: dict[int, str] = {
    0: "air",
    1: "fat",
    2: "muscle",
    3: "bone_cortex",
    4: "bone_marrow",
    5: "spinal_canal",
    6: "intervertebral_disc",
    7: "liver",
    8: "portal_branch",
    9: "hepatic_vein",
    10: "portal_vein",
    11: "aorta",
    12: "inferior_vena_cava",
    13: "spleen",
    14: "kidney_cortex",
    15: "kidney_medulla",
    16: "gallbladder",
    17: "bowel_wall",
    18: "bowel_content",
    19: "gas",
    30: "hcc",
    31: "hcc_capsule",
    32: "metastasis",
    33: "metastasis_rim",
    34: "cyst",
    35: "hemangioma",
}
"""Tissue id → name of the phantom's tissue map (``PhantomTruth.tissues``). Ids 30+ are tumors."""

TISSUE_ID: dict[str, int] = {name: tissue_id for tissue_id, name in TISSUES.items()}
LIVER_TISSUES: tuple[int, ...] = (TISSUE_ID["liver"], TISSUE_ID["portal_branch"], TISSUE_ID["hepatic_vein"])
"""Tissues labelled liver (1): parenchyma and the intrahepatic vessels; tumors grow only here."""
TUMOR_TISSUES: tuple[int, ...] = tuple(i for i in TISSUES if i >= 30)
"""Tissues labelled tumor (2)."""
_FIRM = np.array([TISSUE_ID[name] for name in ("muscle", "bone_cortex", "bone_marrow", "spinal_canal", "intervertebral_disc")],
                 dtype=np.uint8)


@dataclass(frozen=True)
class Ellipsoid:
    centre: np.ndarray  # (3,) mm, (z, y, x)
    radii: np.ndarray  # (3,) mm, along the rotated axes
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def level(self, points: np.ndarray) -> np.ndarray:
        return ellipsoid_level(points, self.centre, self.radii, self.rotation)

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box (low, high) in mm."""
        half = np.abs(self.rotation) @ self.radii
        return self.centre - half, self.centre + half


@dataclass(frozen=True)
class Tube:
    """Straight vessel segments; each row ``start, end`` (mm) with radii ``r0 → r1`` and a tissue id."""

    starts: np.ndarray  # (N, 3)
    ends: np.ndarray  # (N, 3)
    radii: np.ndarray  # (N, 2)
    tissue: np.ndarray  # (N,)


@dataclass(frozen=True)
class Anatomy:
    """One patient's shapes (all positions in mm in the world frame)."""

    body_radii_yx: tuple[float, float]
    fat_mm: float
    wall_mm: float
    spine_yx: tuple[float, float]
    vertebra_radii_yx: tuple[float, float]
    disc_period_mm: float
    disc_offset_mm: float
    muscles: list[Ellipsoid]
    liver_lobes: list[Ellipsoid]
    liver_blend_mm: float
    liver_lobulation: FourierField
    liver_cut: tuple[float, float]  # inferior surface: z_cut = a + b * x
    gallbladder: Ellipsoid
    spleen: Ellipsoid
    kidneys: list[Ellipsoid]
    kidney_cortex_mm: float
    bowel: list[tuple[Ellipsoid, float, bool]]  # (shape, wall mm, holds gas)
    large_vessels: Tube  # aorta, IVC, portal vein, splenic vein
    liver_vessels: Tube  # portal branches, hepatic veins (painted only inside the liver)
    liver_texture: FourierField  # unit amplitude
    spleen_texture: FourierField  # unit amplitude, arciform bands


def _jitter(rng: np.random.Generator, value: tuple[float, ...], spread_mm: float) -> np.ndarray:
    return np.asarray(value, dtype=np.float64) + rng.uniform(-spread_mm, spread_mm, size=len(value))


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient: organ sizes ±10 %, positions ±5–8 mm, a lobed liver and its vessel tree."""
    s = rng.uniform(0.92, 1.06)
    body = (105.0 * s * rng.uniform(0.95, 1.05), 140.0 * s * rng.uniform(0.95, 1.05))
    spine = (48.0 * s, rng.uniform(-3, 3))
    muscles = [
        Ellipsoid(np.array([0.0, 80 * s, side * 32 * s]), np.array([400.0, 17 * s, 22 * s])) for side in (-1, 1)
    ] + [
        Ellipsoid(np.array([-95.0, 45 * s, side * 34 * s]), np.array([70.0, 12 * s, 14 * s])) for side in (-1, 1)
    ]

    # The liver: a big right lobe, a thin anterior left lobe and the caudate, blended and lobulated.
    right = Ellipsoid(_jitter(rng, (-5, 2 * s, -55 * s), 5), np.array([60, 66, 55]) * s * rng.uniform(0.9, 1.1, 3),
                      rotation_zyx(rng.uniform(-0.2, 0.2), rng.uniform(-0.1, 0.1)))
    left = Ellipsoid(_jitter(rng, (12, -38 * s, 5 * s), 7), np.array([38, 24, 45]) * s * rng.uniform(0.85, 1.15, 3),
                     rotation_zyx(rng.uniform(-0.35, 0.05), rng.uniform(-0.2, 0.2)))
    caudate = Ellipsoid(_jitter(rng, (5, 22 * s, -15 * s), 4), np.array([26, 14, 14]) * s * rng.uniform(0.85, 1.15, 3))
    lobes = [right, left, caudate]
    if rng.random() < 0.5:  # a Riedel-like inferior tongue of the right lobe in half the patients
        lobes.append(Ellipsoid(_jitter(rng, (-45, 5, -75 * s), 6), np.array([35, 28, 22]) * s * rng.uniform(0.8, 1.2, 3)))
    lobulation = random_fourier_field(rng, modes=6, wavelength_mm=(40, 110), amplitude=rng.uniform(6, 12))
    cut = (rng.uniform(-52, -42), rng.uniform(0.15, 0.35))

    hilum = np.array([-15.0, 5 * s, -28 * s]) + rng.uniform(-5, 5, 3)
    confluence = np.array([-55.0, 14 * s, -2.0]) + rng.uniform(-5, 5, 3)
    spleen = Ellipsoid(_jitter(rng, (22, 42 * s, 82 * s), 6), np.array([45, 40, 18]) * s * rng.uniform(0.85, 1.15, 3),
                       rotation_zyx(rng.uniform(0.4, 0.8)))
    spleen_hilum = spleen.centre + np.array([-5.0, -8.0, -14.0])
    aorta_yx = _jitter(rng, (22 * s, 16 * s), 3)
    ivc_yx = _jitter(rng, (16 * s, -24 * s), 3)
    large = Tube(
        starts=np.array([[-200, *aorta_yx], [-200, *ivc_yx], confluence, confluence]),
        ends=np.array([[200, aorta_yx[0] + rng.uniform(-4, 4), aorta_yx[1] - 4], [200, *(ivc_yx + rng.uniform(-4, 4, 2))],
                       hilum, spleen_hilum]),
        radii=np.array([[11, 10.5], [10, 11], [7, 7], [4.5, 4]]) * s * rng.uniform(0.9, 1.1),
        tissue=np.array([TISSUE_ID["aorta"], TISSUE_ID["inferior_vena_cava"], TISSUE_ID["portal_vein"], TISSUE_ID["portal_vein"]]),
    )
    dome = np.array([right.centre[0] + right.radii[0] * 0.85, ivc_yx[0] - 2, ivc_yx[1]])
    liver_vessels = _vessel_tree(rng, hilum, dome, targets=[right.centre, left.centre, caudate.centre], scale=s)

    kidneys = []
    for side, z in ((-1, -58.0), (1, -42.0)):
        kidneys.append(Ellipsoid(_jitter(rng, (z, 52 * s, side * 62 * s), 6), np.array([44, 21, 24]) * s * rng.uniform(0.9, 1.1, 3),
                                 rotation_zyx(side * rng.uniform(0.2, 0.45), side * rng.uniform(0.0, 0.2))))
    gallbladder = Ellipsoid(_jitter(rng, (-42, -30 * s, -32 * s), 6), np.array([28, 13, 13]) * s * rng.uniform(0.8, 1.2, 3),
                            rotation_zyx(0.0, rng.uniform(0.1, 0.4)))
    bowel = [(Ellipsoid(_jitter(rng, (10, -30 * s, 62 * s), 6), np.array([38, 26, 28]) * s), 4.0, True)]  # stomach
    for _ in range(int(rng.integers(5, 10))):
        centre = np.array([rng.uniform(-110, -35), rng.uniform(-80, 10) * s, rng.uniform(-70, 95) * s])
        bowel.append((Ellipsoid(centre, rng.uniform(12, 22, 3) * s, rotation_zyx(rng.uniform(0, np.pi))), 3.0, bool(rng.random() < 0.4)))

    return Anatomy(
        body_radii_yx=body, fat_mm=rng.uniform(8, 24), wall_mm=rng.uniform(6, 11),
        spine_yx=spine, vertebra_radii_yx=(16 * s, 19 * s),
        disc_period_mm=rng.uniform(30, 34), disc_offset_mm=rng.uniform(0, 30),
        muscles=muscles, liver_lobes=lobes, liver_blend_mm=18.0, liver_lobulation=lobulation, liver_cut=cut,
        gallbladder=gallbladder, spleen=spleen, kidneys=kidneys, kidney_cortex_mm=rng.uniform(6, 8), bowel=bowel,
        large_vessels=large, liver_vessels=liver_vessels,
        liver_texture=random_fourier_field(rng, modes=6, wavelength_mm=(15, 40), amplitude=1.0),
        spleen_texture=random_fourier_field(rng, modes=3, wavelength_mm=(18, 30), amplitude=1.0),
    )


def _vessel_tree(rng: np.random.Generator, hilum: np.ndarray, dome: np.ndarray, targets: list[np.ndarray], scale: float) -> Tube:
    """Portal branches from the hilum towards each lobe (three generations) and three hepatic veins
    that join the IVC at the dome (two generations)."""
    starts, ends, radii, tissue = [], [], [], []

    def grow(start: np.ndarray, direction: np.ndarray, length: float, radius: float, generations: int, kind: int) -> None:
        direction = direction / np.linalg.norm(direction)
        end = start + direction * length
        starts.append(start)
        ends.append(end)
        radii.append((radius, radius * 0.85))
        tissue.append(kind)
        if generations > 1:
            for _ in range(2):
                child = direction + rng.normal(scale=0.55, size=3)
                grow(end, child, length * rng.uniform(0.6, 0.8), radius * 0.72, generations - 1, kind)

    portal = TISSUE_ID["portal_branch"]
    for target in targets[:2]:
        grow(hilum, target - hilum + rng.normal(scale=8, size=3), rng.uniform(38, 50) * scale, 5.5 * scale, 3, portal)
    grow(hilum, targets[2] - hilum, 0.8 * np.linalg.norm(targets[2] - hilum), 3.0 * scale, 1, portal)
    vein = TISSUE_ID["hepatic_vein"]
    for direction in ((-0.6, -0.2, -1.0), (-0.7, -0.8, -0.2), (-0.5, -0.6, 0.8)):  # right, middle, left
        grow(dome, np.asarray(direction) + rng.normal(scale=0.15, size=3), rng.uniform(55, 75) * scale, 5.5 * scale, 2, vein)
    return Tube(np.array(starts), np.array(ends), np.array(radii), np.array(tissue))


def render_anatomy(points: np.ndarray, anatomy: Anatomy) -> np.ndarray:
    """The tissue map (uint8 ids of :data:`TISSUES`) at world points ``(3, Z, Y, X)`` mm.

    Organs are painted in a fixed order, later winning: body wall, muscles, spine, bowel, liver and
    its vessels, gallbladder, kidneys, spleen, then the large vessels. Viscera stay inside the
    abdominal wall.
    """
    a = anatomy
    blocks = Blocks(points)
    tissue = np.zeros(points.shape[1:], dtype=np.uint8)

    # Body: skin-to-muscle fat, the muscle wall, then visceral fat inside.
    ry, rx = a.body_radii_yx
    level_outer = ellipse_level_yx(points, (0.0, 0.0), (ry, rx))
    level_wall = ellipse_level_yx(points, (0.0, 0.0), (ry - a.fat_mm, rx - a.fat_mm))
    level_inner = ellipse_level_yx(points, (0.0, 0.0), (ry - a.fat_mm - a.wall_mm, rx - a.fat_mm - a.wall_mm))
    tissue[level_outer < 1] = TISSUE_ID["fat"]
    tissue[level_wall < 1] = TISSUE_ID["muscle"]
    tissue[level_inner < 1] = TISSUE_ID["fat"]
    for muscle in a.muscles:
        _paint(tissue, points, blocks, muscle, TISSUE_ID["muscle"])
    _paint_spine(tissue, points, blocks, a)
    viscera = (level_inner < 1) & ~np.isin(tissue, _FIRM)  # organs never push into muscle or bone

    for shape, wall_mm, gas in a.bowel:
        _paint_bowel(tissue, points, blocks, shape, wall_mm, gas, viscera)

    # The liver and the vessels inside it.
    low = np.min([lobe.box()[0] for lobe in a.liver_lobes], axis=0) - 15
    high = np.max([lobe.box()[1] for lobe in a.liver_lobes], axis=0) + 15
    block = blocks.slices(low, high)
    if block is not None:
        inside = liver_distance(points[(slice(None), *block)], a) < 0
        inside &= viscera[block]
        tissue[block][inside] = TISSUE_ID["liver"]
        liver_region = tissue == TISSUE_ID["liver"]
        _paint_tubes(tissue, points, blocks, a.liver_vessels, where=liver_region)

    _paint(tissue, points, blocks, a.gallbladder, TISSUE_ID["gallbladder"], where=viscera)
    for kidney in a.kidneys:
        _paint_kidney(tissue, points, blocks, kidney, a.kidney_cortex_mm, viscera)
    _paint(tissue, points, blocks, a.spleen, TISSUE_ID["spleen"], where=viscera)
    _paint_tubes(tissue, points, blocks, a.large_vessels, where=viscera)
    return tissue


def liver_distance(points: np.ndarray, anatomy: Anatomy) -> np.ndarray:
    """Approximate signed distance (mm, negative inside) to the liver surface before other organs carve it."""
    distance = None
    for lobe in anatomy.liver_lobes:
        lobe_distance = (lobe.level(points) - 1.0) * np.float32(lobe.radii.min())
        distance = lobe_distance if distance is None else smooth_min(distance, lobe_distance, anatomy.liver_blend_mm)
    distance = distance + anatomy.liver_lobulation(points)
    offset, slope = anatomy.liver_cut
    below_cut = np.float32(offset) + np.float32(slope) * points[2] - points[0]  # > 0 under the inferior surface
    return np.maximum(distance, below_cut)


def _paint(tissue: np.ndarray, points: np.ndarray, blocks: Blocks, shape: Ellipsoid, tissue_id: int,
           where: np.ndarray | None = None) -> None:
    block = blocks.slices(*shape.box())
    if block is None:
        return
    inside = shape.level(points[(slice(None), *block)]) < 1
    if where is not None:
        inside &= where[block]
    tissue[block][inside] = tissue_id


def _paint_bowel(tissue: np.ndarray, points: np.ndarray, blocks: Blocks, shape: Ellipsoid, wall_mm: float, gas: bool,
                 viscera: np.ndarray) -> None:
    block = blocks.slices(*shape.box())
    if block is None:
        return
    local_points = points[(slice(None), *block)]
    level = shape.level(local_points)
    inside = (level < 1) & viscera[block]
    lumen = inside & (level < 1 - wall_mm / float(shape.radii.min()))
    sub = tissue[block]
    sub[inside] = TISSUE_ID["bowel_wall"]
    sub[lumen] = TISSUE_ID["bowel_content"]
    if gas:  # air rises to the anterior (−y) part of the lumen of a supine patient
        anterior = local_points[1] < shape.centre[1] - 0.35 * shape.radii[1]
        sub[lumen & anterior] = TISSUE_ID["gas"]


def _paint_kidney(tissue: np.ndarray, points: np.ndarray, blocks: Blocks, kidney: Ellipsoid, cortex_mm: float,
                  viscera: np.ndarray) -> None:
    block = blocks.slices(*kidney.box())
    if block is None:
        return
    local_points = points[(slice(None), *block)]
    level = kidney.level(local_points)
    inside = (level < 1) & viscera[block]
    medulla = inside & (level < 1 - cortex_mm / float(kidney.radii.min()))
    sinus_centre = kidney.centre + kidney.rotation @ np.array([0.0, 0.0, -np.sign(kidney.centre[2]) * 0.55 * kidney.radii[2]])
    sinus = inside & (ellipsoid_level(local_points, sinus_centre, kidney.radii * np.array([0.5, 0.45, 0.4]), kidney.rotation) < 1)
    sub = tissue[block]
    sub[inside] = TISSUE_ID["kidney_cortex"]
    sub[medulla] = TISSUE_ID["kidney_medulla"]
    sub[sinus] = TISSUE_ID["fat"]


def _paint_spine(tissue: np.ndarray, points: np.ndarray, blocks: Blocks, a: Anatomy) -> None:
    cy, cx = a.spine_yx
    ry, rx = a.vertebra_radii_yx
    low = np.array([-np.inf, cy - ry - 2, cx - 45])
    high = np.array([np.inf, cy + ry + 55, cx + 45])
    block = blocks.slices(low, high)
    if block is None:
        return
    p = points[(slice(None), *block)]
    sub = tissue[block]
    body = ellipse_level_yx(p, (cy, cx), (ry, rx))
    sub[body < 1] = TISSUE_ID["bone_cortex"]
    sub[body < 1 - 3.0 / min(ry, rx)] = TISSUE_ID["bone_marrow"]
    phase = np.mod(p[0] - np.float32(a.disc_offset_mm), np.float32(a.disc_period_mm))
    sub[(body < 1) & (phase < 7.0)] = TISSUE_ID["intervertebral_disc"]
    canal_y = cy + ry + 9.0
    canal = ellipse_level_yx(p, (canal_y, cx), (8.0, 9.0))
    arch = ellipse_level_yx(p, (canal_y, cx), (15.0, 16.0))
    sub[(arch < 1) & (p[1] > canal_y - 4)] = TISSUE_ID["bone_cortex"]
    sub[canal < 1] = TISSUE_ID["spinal_canal"]
    spinous = ellipse_level_yx(p, (canal_y + 24.0, cx), (12.0, 4.5))
    sub[spinous < 1] = TISSUE_ID["bone_cortex"]


def _paint_tubes(tissue: np.ndarray, points: np.ndarray, blocks: Blocks, tubes: Tube, where: np.ndarray) -> None:
    for start, end, (r0, r1), tissue_id in zip(tubes.starts, tubes.ends, tubes.radii, tubes.tissue):
        radius = max(r0, r1)
        block = blocks.slices(np.minimum(start, end) - radius, np.maximum(start, end) + radius)
        if block is None:
            continue
        distance, t = segment_distance(points[(slice(None), *block)], start, end)
        inside = (distance < np.float32(r0) + np.float32(r1 - r0) * t) & where[block]
        tissue[block][inside] = tissue_id
