"""Synthetic training scenes: face crops pasted at every scale of Eq. 1 onto face-free backgrounds.

Scene `index` of a generator with seed `seed` is a pure function of (seed, index), so workers can
generate any index in any order and a run can be replayed exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kpnet_edge import config
from kpnet_edge.data.records import AnnotatedImage
from kpnet_edge.geometry import FaceTemplate, boxes_from_landmarks, fit_similarity
from kpnet_edge.imageio import read_image

_LUMA_BGR = np.array([0.114, 0.587, 0.299])
_SMALL_FACE_BINS = config.BINS_PER_OCTAVE  # bins below 8 px at I_max = 256 (Eq. 1, b < 10)
_PLACEMENT_TRIES = 8
_DISTRACTOR_SIZE = 80  # px, like an MTFL crop
_MAX_SHRINK = 2.5  # largest background downscale; linear interpolation aliases little up to here
# boxes (N, 4) @ _CENTRE_OF_BOX -> box centres (N, 2)
_CENTRE_OF_BOX = np.array([[0.5, 0.0], [0.0, 0.5], [0.5, 0.0], [0.0, 0.5]])
_MASK_EXPONENTS = (2.0, 2.5, 3.0, 4.0)  # superellipse |x|^p + |y|^p = 1: ellipse .. rounded square
_MASK_FEATHERS = (0.1, 0.18, 0.28)  # width of the alpha ramp, as a fraction of the half-size


@dataclass(frozen=True)
class SynthConfig:
    """Every probability and range of the scene generator; `plain()` turns photometric jitter off.

    brightness, contrast, saturation, channel_gain: +-range of multiplicative factors, drawn once
    per face and once per scene. small_face_weight: sampling weight of the scale bins below 8 px
    (b < 10) relative to the other bins, which are sampled uniformly (log-uniform face size).
    """

    max_faces: int = 8
    max_distractors: int = 2  # face-free background patches pasted with the faces' masks
    p_empty: float = 0.1
    small_face_weight: float = 0.5
    max_rotation_deg: float = 20.0
    max_iou: float = 0.3
    max_cover: float = 0.5  # and at most this fraction of the smaller box under the other
    p_procedural: float = 0.15
    p_letterbox: float = 0.25
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.5
    channel_gain: float = 0.1
    p_face_blur: float = 0.2  # per pasted patch, faces and distractors
    p_gray: float = 0.1
    p_blur: float = 0.15
    p_noise: float = 0.3
    p_jpeg: float = 0.3
    p_flip: float = 0.5

    @classmethod
    def plain(cls) -> SynthConfig:
        """Geometry only (scale, rotation, placement, flip): no colour, blur, noise or JPEG."""
        return cls(brightness=0.0, contrast=0.0, saturation=0.0, channel_gain=0.0,
                   p_face_blur=0.0, p_gray=0.0, p_blur=0.0, p_noise=0.0, p_jpeg=0.0)


@dataclass
class Scene:
    """A synthetic image and its faces, in scene pixels (pixel k has its centre at k).

    image: (S, S, 3) uint8 RGB; landmarks: (N, 5, 2) float64 in config.LANDMARK_NAMES order;
    boxes: (N, 4) float64 [x1, y1, x2, y2], geometry.boxes_from_landmarks of the landmarks (boxes
    may reach past the image edge; landmarks never do in a full scene); visible: (N, 5) bool, False
    where a landmark is covered by a face pasted later or lies outside the image (after a crop).
    """

    image: np.ndarray
    landmarks: np.ndarray
    boxes: np.ndarray
    visible: np.ndarray


class SceneGenerator:
    """Deterministic synthetic scenes from face crops with 5 landmarks and face-free backgrounds.

    faces: one-face records (MTFL train, `load_mtfl`); backgrounds: photos to cut backgrounds from,
    or None for procedural ones (gradients, smooth noise, shapes). Decoded crops and photos are
    cached on first use (all 10,000 MTFL crops: about 190 MB per process).
    """

    def __init__(
        self,
        faces: list[AnnotatedImage],
        backgrounds: list[Path] | None = None,
        size: int = config.INPUT_SIZE,
        seed: int = 0,
        synth_config: SynthConfig | None = None,
        template: FaceTemplate | None = None,
    ) -> None:
        if not faces:
            raise ValueError("faces is empty: SceneGenerator needs face crops with landmarks")
        shapes = {None if face.landmarks is None else face.landmarks.shape for face in faces}
        if shapes != {(1, config.NUM_LANDMARKS, 2)}:
            raise ValueError(
                f"every face needs landmarks of shape (1, {config.NUM_LANDMARKS}, 2), got {shapes}"
            )
        self.size = size
        self.seed = seed
        self.config = synth_config or SynthConfig()
        self.template = template or FaceTemplate.load()
        self._face_paths = [face.path for face in faces]
        self._face_points = np.stack([face.landmarks[0] for face in faces])
        # Per crop: centre of its template box and the similarity's scale and angle, so the box of
        # a scaled and rotated copy is known in closed form (see _hull_size).
        matrices = fit_similarity(self.template.landmarks, self._face_points)
        self._face_centres = boxes_from_landmarks(self._face_points, self.template) @ _CENTRE_OF_BOX
        self._face_scales = np.hypot(matrices[:, 0, 0], matrices[:, 1, 0])
        self._face_angles = np.arctan2(matrices[:, 1, 0], matrices[:, 0, 0])
        self._crops: list[np.ndarray | None] = [None] * len(faces)
        self._backgrounds = list(backgrounds or [])
        self._background_images: list[np.ndarray | None] = [None] * len(self._backgrounds)
        self._masks: dict[tuple[int, int], list[np.ndarray]] = {}
        noise_shape = (2 * size, 2 * size, 3)
        self._noise = np.random.default_rng(seed).standard_normal(noise_shape, dtype=np.float32)

    def generate(self, index: int) -> Scene:
        """Scene number `index`: the same for the same seed, index, faces, backgrounds, config."""
        rng = np.random.default_rng([self.seed, index])
        cfg = self.config
        width = height = self.size
        if rng.random() < cfg.p_letterbox:
            short = int(round(self.size * rng.uniform(0.5, 0.95)))
            width, height = (short, self.size) if rng.random() < 0.5 else (self.size, short)
        content = self._background(rng, width, height)

        distractors = int(rng.integers(cfg.max_distractors + 1))
        count = 0 if rng.random() < cfg.p_empty else int(rng.integers(1, cfg.max_faces + 1))
        weights = np.ones(config.NUM_SCALES)
        weights[:_SMALL_FACE_BINS] = cfg.small_face_weight
        bins = rng.choice(config.NUM_SCALES, size=distractors + count, p=weights / weights.sum())
        box_sizes = config.bin_to_scale(bins + rng.random(len(bins))) * self.size
        for box_size in box_sizes[:distractors]:
            self._paste_distractor(rng, content, float(box_size))
        placed: list[np.ndarray] = []  # landmarks (5, 2) per pasted face
        placed_boxes = np.zeros((0, 4))
        visible: list[np.ndarray] = []
        # Largest first: smaller faces then fill the space around them instead of covering them.
        for box_size in np.sort(box_sizes[distractors:])[::-1]:
            face = self._paste(rng, content, float(box_size), placed_boxes, placed, visible)
            if face is not None:
                placed.append(face[0])
                placed_boxes = np.vstack([placed_boxes, face[1]])
                visible.append(np.ones(config.NUM_LANDMARKS, dtype=bool))

        landmarks = np.array(placed, dtype=np.float64).reshape(-1, config.NUM_LANDMARKS, 2)
        visible_array = np.array(visible, dtype=bool).reshape(-1, config.NUM_LANDMARKS)
        content = self._scene_jitter(rng, content)
        if rng.random() < cfg.p_flip:
            content = cv2.flip(content, 1)
            landmarks[..., 0] = width - 1 - landmarks[..., 0]
            landmarks = landmarks[:, config.FLIP_PERMUTATION]
            visible_array = visible_array[:, config.FLIP_PERMUTATION]
        # Letterbox as preprocess.letterbox does: content top-left, PAD_VALUE elsewhere.
        image = np.full((self.size, self.size, 3), config.PAD_VALUE, dtype=np.uint8)
        image[:height, :width] = cv2.cvtColor(content, cv2.COLOR_BGR2RGB)
        return Scene(image=image, landmarks=landmarks,
                     boxes=boxes_from_landmarks(landmarks, self.template), visible=visible_array)

    def _paste(
        self,
        rng: np.random.Generator,
        content: np.ndarray,
        box_size: float,
        placed_boxes: np.ndarray,
        placed: list[np.ndarray],
        visible: list[np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Paste one random face whose template box has max edge box_size into content (BGR, in
        place). Returns its landmarks (5, 2) and box (4,), or None when no free spot was found."""
        cfg = self.config
        height, width = content.shape[:2]
        face = int(rng.integers(len(self._face_paths)))
        rotation = math.radians(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
        angle = self._face_angles[face] + rotation
        hull = _hull_size(self.template.box, self._face_scales[face], angle)
        scale = box_size / hull.max()
        linear = _scaled_rotation(scale, rotation)
        # Landmark offsets from the box centre; the centre is drawn so all landmarks are inside.
        offsets = (self._face_points[face] - self._face_centres[face]) @ linear.T
        low = -offsets.min(axis=0)
        high = np.array([width - 1, height - 1]) - offsets.max(axis=0)
        if np.any(high < low):
            return None
        half = hull * scale / 2
        # Several candidate spots at once; the first one free enough wins.
        centres = rng.uniform(low, high, (_PLACEMENT_TRIES, 2))
        candidates = np.concatenate([centres - half, centres + half], axis=1)
        free = np.flatnonzero(~_overlaps(candidates, placed_boxes, cfg.max_iou, cfg.max_cover))
        if len(free) == 0:
            return None
        centre, box = centres[free[0]], candidates[free[0]]
        crop_centre = self._face_centres[face]
        pasted = self._blend(rng, content, self._crop(face), linear, scale, crop_centre, centre)
        if pasted is None:
            return None
        _mark_covered(placed, visible, *pasted)
        return offsets + centre, box

    def _paste_distractor(
        self, rng: np.random.Generator, content: np.ndarray, box_size: float
    ) -> None:
        """Paste a background patch with the faces' feathered masks: the blob outline alone must not
        tell a face."""
        height, width = content.shape[:2]
        patch = self._background(rng, _DISTRACTOR_SIZE, _DISTRACTOR_SIZE)
        scale = box_size / _DISTRACTOR_SIZE
        linear = _scaled_rotation(scale, rng.uniform(0, 2 * math.pi))
        centre = rng.uniform((0, 0), (width, height))
        crop_centre = np.full(2, (_DISTRACTOR_SIZE - 1) / 2)
        self._blend(rng, content, patch, linear, scale, crop_centre, centre)

    def _blend(
        self,
        rng: np.random.Generator,
        content: np.ndarray,
        crop: np.ndarray,
        linear: np.ndarray,
        scale: float,
        crop_centre: np.ndarray,
        centre: np.ndarray,
    ) -> tuple[np.ndarray, int, int] | None:
        """Colour-jitter crop, mask it with a feathered alpha and blend it into content (in place)
        through crop pixel p -> linear @ (p - crop_centre) + centre; linear scales by `scale`.

        Returns the pasted alpha (h, w) float32 and its top-left corner in content, or None when
        nothing landed inside.
        """
        cfg = self.config
        height, width = content.shape[:2]
        crop = cv2.transform(crop, _colour_matrix(rng, cfg, cv2.mean(crop)[:3]))
        masks = self._mask_bank(crop.shape[:2])
        # Colour and alpha in one array, so one resize and one warp move both.
        bgra = cv2.merge([crop, masks[int(rng.integers(len(masks)))]])
        matrix = np.column_stack([linear, centre - linear @ crop_centre])
        if scale < 0.5:
            # warpAffine only interpolates linearly: shrink with INTER_AREA first to avoid aliasing.
            bgra, matrix = _shrink(bgra, matrix, scale)
        rows, cols = bgra.shape[:2]
        right, bottom = cols - 0.5, rows - 0.5
        corners = np.array(
            [[-0.5, -0.5, 1], [right, -0.5, 1], [right, bottom, 1], [-0.5, bottom, 1]]
        )
        mapped = corners @ matrix.T
        x0, y0 = np.maximum(np.floor(mapped.min(axis=0)), 0).astype(int)
        x1 = min(int(np.ceil(mapped[:, 0].max())) + 1, width)
        y1 = min(int(np.ceil(mapped[:, 1].max())) + 1, height)
        if x1 <= x0 or y1 <= y0:
            return None
        matrix[:, 2] -= (x0, y0)
        patch = cv2.warpAffine(bgra, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
        if rng.random() < cfg.p_face_blur:
            patch = cv2.GaussianBlur(patch, (0, 0), rng.uniform(0.4, 1.5))
        alpha = cv2.extractChannel(patch, 3).astype(np.float32) * (1 / 255)
        region = content[y0:y1, x0:x1]
        colour = cv2.cvtColor(patch, cv2.COLOR_BGRA2BGR)
        region[...] = cv2.blendLinear(colour, region, alpha, 1 - alpha)
        return alpha, int(x0), int(y0)

    def _crop(self, face: int) -> np.ndarray:
        if self._crops[face] is None:
            self._crops[face] = read_image(self._face_paths[face])
        return self._crops[face]

    def _mask_bank(self, shape: tuple[int, int]) -> list[np.ndarray]:
        """Feathered superellipse alphas (uint8, 255 inside, 0 at the crop edge) for a crop shape:
        the pasted region has no straight crop edge for the network to learn as a face cue."""
        if shape not in self._masks:
            rows, cols = shape
            y = np.abs(np.linspace(-1, 1, rows))[:, None]
            x = np.abs(np.linspace(-1, 1, cols))[None, :]
            bank = []
            for exponent in _MASK_EXPONENTS:
                radius = (x**exponent + y**exponent) ** (1 / exponent)
                for feather in _MASK_FEATHERS:
                    ramp = np.clip((1 - radius) / feather, 0, 1)
                    smooth = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no kink at either end
                    bank.append(np.rint(255 * smooth).astype(np.uint8))
            self._masks[shape] = bank
        return self._masks[shape]

    def _background(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        """A BGR uint8 (height, width, 3) background: a random window of a photo, or procedural."""
        if not self._backgrounds or rng.random() < self.config.p_procedural:
            return _procedural_background(rng, width, height)
        index = int(rng.integers(len(self._backgrounds)))
        if self._background_images[index] is None:
            self._background_images[index] = read_image(self._backgrounds[index])
        photo = self._background_images[index]
        rows, cols = photo.shape[:2]
        fit = min(cols / width, rows / height)  # largest window of the scene's aspect
        window = min(fit * rng.uniform(0.3, 1.0), _MAX_SHRINK)
        win_w, win_h = max(1, int(width * window)), max(1, int(height * window))
        left = int(rng.integers(cols - win_w + 1))
        top = int(rng.integers(rows - win_h + 1))
        # INTER_AREA would cost a third of the scene budget; _MAX_SHRINK keeps linear safe.
        window_pixels = photo[top : top + win_h, left : left + win_w]
        return cv2.resize(window_pixels, (width, height), interpolation=cv2.INTER_LINEAR)

    def _scene_jitter(self, rng: np.random.Generator, content: np.ndarray) -> np.ndarray:
        """Colour (or grey), blur, sensor noise and JPEG re-compression of the whole content."""
        cfg = self.config
        matrix = _colour_matrix(rng, cfg, cv2.mean(content)[:3])
        if rng.random() < cfg.p_gray:
            matrix = np.repeat(_LUMA_BGR[None].astype(np.float32) @ matrix, 3, axis=0)
        content = cv2.transform(content, matrix)
        if rng.random() < cfg.p_blur:
            content = cv2.GaussianBlur(content, (0, 0), rng.uniform(0.5, 1.5))
        if rng.random() < cfg.p_noise:
            rows, cols = content.shape[:2]
            top, left = rng.integers(self.size, size=2)
            noise = self._noise[top : top + rows, left : left + cols]
            sigma = rng.uniform(2.0, 10.0)
            content = cv2.addWeighted(content, 1.0, noise, sigma, 0.0, dtype=cv2.CV_8U)
        if rng.random() < cfg.p_jpeg:
            quality = int(rng.integers(30, 96))
            _, encoded = cv2.imencode(".jpg", content, [cv2.IMWRITE_JPEG_QUALITY, quality])
            content = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        return content


def random_crop(scene: Scene, crop_size: int, rng: np.random.Generator) -> Scene:
    """A crop_size x crop_size window of a scene, cut without rescaling (uniform position).

    Scale bins stay relative to the full scene's max edge (Eq. 1 with I_max = scene size), so the
    boxes and landmarks are only shifted. A face is kept when its box centre, where the scale map
    target sits (Eq. 2), lies in the window (x in [-0.5, crop_size - 0.5)); it may be cut by the
    border, and its landmarks outside the window are marked not visible. Faces whose centre falls
    outside are dropped, even when part of them shows.
    """
    rows, cols = scene.image.shape[:2]
    if not 0 < crop_size <= min(rows, cols):
        raise ValueError(f"crop_size must be in [1, {min(rows, cols)}], got {crop_size}")
    top = int(rng.integers(rows - crop_size + 1))
    left = int(rng.integers(cols - crop_size + 1))
    offset = np.array([left, top], dtype=np.float64)
    landmarks = scene.landmarks - offset
    boxes = scene.boxes - np.tile(offset, 2)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep = np.all((centres >= -0.5) & (centres < crop_size - 0.5), axis=1)
    inside = np.all((landmarks >= -0.5) & (landmarks < crop_size - 0.5), axis=2)
    return Scene(
        image=scene.image[top : top + crop_size, left : left + crop_size].copy(),
        landmarks=landmarks[keep],
        boxes=boxes[keep],
        visible=(scene.visible & inside)[keep],
    )


def _hull_size(template_box: np.ndarray, scale: float, angle: float) -> np.ndarray:
    """[width, height] of boxes_from_landmarks' box for a similarity with this scale and angle:
    the axis-aligned hull of the template box rotated by `angle` and scaled by `scale`."""
    box_w, box_h = template_box[2] - template_box[0], template_box[3] - template_box[1]
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    return scale * np.array([box_w * cos + box_h * sin, box_w * sin + box_h * cos])


def _overlaps(
    boxes: np.ndarray, others: np.ndarray, max_iou: float, max_cover: float
) -> np.ndarray:
    """(B,) bool: box b has IoU > max_iou with one of others (M, 4), or the two overlap over more
    than max_cover of the smaller box's area."""
    low = np.maximum(boxes[:, None, :2], others[None, :, :2])
    high = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    inter = np.prod(np.maximum(high - low, 0), axis=2)  # (B, M)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)[:, None]
    other_area = np.prod(others[:, 2:] - others[:, :2], axis=1)[None, :]
    iou = inter / (area + other_area - inter)
    cover = inter / np.minimum(area, other_area)
    return np.any((iou > max_iou) | (cover > max_cover), axis=1)


def _shrink(image: np.ndarray, matrix: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize image by ~scale with INTER_AREA and fold the resize into matrix (2, 3)."""
    rows, cols = image.shape[:2]
    new_cols, new_rows = max(2, round(cols * scale)), max(2, round(rows * scale))
    kx, ky = new_cols / cols, new_rows / rows
    # small pixel q <-> crop pixel p = (q + 0.5) / k - 0.5 (cv2.resize's pixel-centre convention).
    to_crop = np.array([[1 / kx, 0, 0.5 / kx - 0.5], [0, 1 / ky, 0.5 / ky - 0.5], [0, 0, 1]])
    return cv2.resize(image, (new_cols, new_rows), interpolation=cv2.INTER_AREA), matrix @ to_crop


def _scaled_rotation(scale: float, angle: float) -> np.ndarray:
    """(2, 2) matrix: rotation by angle (radians), then scaling."""
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[cos, -sin], [sin, cos]])


def _mark_covered(
    placed: list[np.ndarray], visible: list[np.ndarray], alpha: np.ndarray, x0: int, y0: int
) -> None:
    """Mark landmarks of earlier faces under the new face's alpha (> 0.5) as not visible."""
    rows, cols = alpha.shape
    for points, flags in zip(placed, visible):
        pixel = np.rint(points - (x0, y0)).astype(int)
        inside = np.all((pixel >= 0) & (pixel < (cols, rows)), axis=1)
        if inside.any():
            flags[inside] &= alpha[pixel[inside, 1], pixel[inside, 0]] <= 0.5


def _colour_matrix(
    rng: np.random.Generator, cfg: SynthConfig, mean_bgr: tuple[float, ...]
) -> np.ndarray:
    """A (3, 4) cv2.transform matrix: saturation, contrast about the mean grey, brightness and
    per-channel gain, all linear in the pixel so one pass applies them together."""
    brightness = 1 + rng.uniform(-cfg.brightness, cfg.brightness)
    contrast = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
    saturation = max(0.0, 1 + rng.uniform(-cfg.saturation, cfg.saturation))
    gains = brightness * (1 + rng.uniform(-cfg.channel_gain, cfg.channel_gain, 3))
    mean_grey = float(_LUMA_BGR @ mean_bgr)
    matrix = np.empty((3, 4), dtype=np.float32)
    # Saturation mixes each channel with the grey level: s * I + (1 - s) * [luma; luma; luma].
    mix = saturation * np.eye(3) + (1 - saturation) * _LUMA_BGR
    matrix[:, :3] = (contrast * gains)[:, None] * mix
    matrix[:, 3] = gains * (1 - contrast) * mean_grey
    return matrix


def _procedural_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Gradient + smooth noise + random shapes, BGR uint8: a face-free background without photos."""
    cells = int(rng.integers(2, 17))
    ramp = np.linspace(0.0, 1.0, cells)
    angle = rng.uniform(0, 2 * math.pi)
    along = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
    along = (along - along.min()) / max(float(np.ptp(along)), 1e-9)
    start, end = rng.uniform(0, 255, (2, 3))
    blobs = rng.normal(0, rng.uniform(0, 50), (cells, cells, 3))
    grid = np.clip(start + along[..., None] * (end - start) + blobs, 0, 255).astype(np.uint8)
    # Cubic upsampling of a coarse grid: smooth gradients and blobs for a tenth of a millisecond.
    image = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    count = int(rng.integers(0, 15))
    kinds = rng.integers(4, size=count)
    colours = rng.integers(0, 256, (count, 3)).tolist()
    points = rng.integers(0, (width, height, width, height), (count, 4)).tolist()
    extents = rng.integers(4, max(5, max(width, height) // 3), count).tolist()
    thicknesses = rng.choice([-1, 1, 2, 4], count).tolist()
    angles = rng.uniform(0, 180, count).tolist()
    for kind, colour, (x, y, x2, y2), extent, thickness, tilt in zip(
        kinds, colours, points, extents, thicknesses, angles
    ):
        if kind == 0:
            cv2.circle(image, (x, y), extent, colour, thickness, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(image, (x, y), (x + extent, y + extent // 2 + 2), colour, thickness)
        elif kind == 2:
            cv2.line(image, (x, y), (x2, y2), colour, max(1, thickness), cv2.LINE_AA)
        else:
            axes = (extent, extent // 3 + 2)
            cv2.ellipse(image, (x, y), axes, tilt, 0, 360, colour, thickness, cv2.LINE_AA)
    return image
