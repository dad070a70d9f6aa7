"""Landmark layouts: MediaPipe's 478-point face mesh and the 68-point iBUG layout derived from it.

method.md (Preprocessing): 3D landmarks from MediaPipe face mesh, reduced to the 68-point iBUG
layout by one fixed index table, kept here and documented.

How `MESH_TO_IBUG68` was made (ours, once, by `tools/derive_ibug68.py`): on 293 frames of the
shared talking-head clips (../shared/data/videos, every 8th frame with one dlib detection), dlib's
68-point predictor and the face mesh were run side by side; for each iBUG point we took the mesh
vertex with the smallest mean distance (normalized by inter-ocular distance), choosing left/right
pairs jointly so that the table is mirror-symmetric (mesh vertex of point i mirrored = vertex of
the flipped point). The portraits in ../shared/data/faces were not used, so the agreement test on
them is independent of the fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# iBUG-68 point i is mesh vertex MESH_TO_IBUG68[i]. Groups: jaw 0-16, brows 17-26, nose 27-35,
# eyes 36-47, outer lips 48-59, inner lips 60-67 (the usual iBUG 300-W numbering).
MESH_TO_IBUG68 = np.array([
    127, 234, 177, 215, 138, 136, 149, 148, 152, 377, 378, 365, 367, 435, 401, 454, 356, 70, 63,
    105, 66, 55, 285, 296, 334, 293, 300, 168, 197, 195, 4, 75, 97, 2, 326, 305, 33, 160,
    158, 155, 153, 144, 382, 385, 387, 263, 373, 380, 61, 39, 37, 0, 267, 269, 291, 405, 314,
    17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,
], dtype=np.int64)

# Horizontal mirror of the mesh: vertex v of a face corresponds to MESH_MIRROR[v] of its mirror
# image. Found by aligning the mean mesh to its mirrored self; it is an involution.
MESH_MIRROR = np.array([
    0, 1, 2, 248, 4, 5, 6, 249, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 250, 251, 252,
    253, 254, 255, 256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270,
    271, 272, 273, 274, 275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287, 288,
    289, 290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305, 306,
    307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 322, 323, 94,
    324, 325, 326, 327, 328, 329, 330, 331, 332, 333, 334, 335, 336, 337, 338, 339, 340, 341,
    342, 343, 344, 345, 346, 347, 348, 349, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359,
    360, 361, 362, 363, 364, 365, 366, 367, 368, 369, 370, 371, 372, 373, 374, 375, 376, 377,
    378, 379, 151, 152, 380, 381, 382, 383, 384, 385, 386, 387, 388, 389, 390, 164, 391, 392,
    393, 168, 394, 395, 396, 397, 398, 399, 175, 400, 401, 402, 403, 404, 405, 406, 407, 408,
    409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 195, 419, 197, 420, 199, 200, 421, 422,
    423, 424, 425, 426, 427, 428, 429, 430, 431, 432, 433, 434, 435, 436, 437, 438, 439, 440,
    441, 442, 443, 444, 445, 446, 447, 448, 449, 450, 451, 452, 453, 454, 455, 456, 457, 458,
    459, 460, 461, 462, 463, 464, 465, 466, 467, 3, 7, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
    30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52,
    53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75,
    76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 95, 96, 97, 98, 99,
    100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116, 117,
    118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135,
    136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 153, 154, 155,
    156, 157, 158, 159, 160, 161, 162, 163, 165, 166, 167, 169, 170, 171, 172, 173, 174, 176,
    177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194,
    196, 198, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216,
    217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234,
    235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 473, 476, 475, 474, 477,
    468, 471, 470, 469, 472,
], dtype=np.int64)

# Horizontal mirror of the iBUG-68 layout (left and right parts swap, order along each contour kept).
IBUG68_MIRROR = np.array(
    list(range(16, -1, -1))                      # jaw
    + list(range(26, 16, -1))                    # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]       # nose bridge, nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65],          # inner lips
    dtype=np.int64,
)

# Facial parts of the 68-point layout for rendering: (name, point indices, closed polyline).
IBUG68_PARTS: tuple[tuple[str, tuple[int, ...], bool], ...] = (
    ("jaw", tuple(range(0, 17)), False),
    ("right_brow", tuple(range(17, 22)), False),
    ("left_brow", tuple(range(22, 27)), False),
    ("nose_bridge", tuple(range(27, 31)), False),
    ("nostrils", tuple(range(31, 36)), False),
    ("right_eye", tuple(range(36, 42)), True),
    ("left_eye", tuple(range(42, 48)), True),
    ("outer_lips", tuple(range(48, 60)), True),
    ("inner_lips", tuple(range(60, 68)), True),
)

RIGHT_EYE = slice(36, 42)  # the subject's right eye (image left in a frontal photo)
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)


def mesh_to_ibug68(mesh: np.ndarray) -> np.ndarray:
    """(..., 478, D) mesh points -> (..., 68, D) iBUG points."""
    assert mesh.shape[-2] == 478, f"expected 478 mesh points, got {mesh.shape}"
    return mesh[..., MESH_TO_IBUG68, :]


def inter_ocular(points68: np.ndarray) -> np.ndarray:
    """Distance between the two eye centres of (..., 68, D) points, in their units: (...,)."""
    centres = points68[..., RIGHT_EYE, :2].mean(-2) - points68[..., LEFT_EYE, :2].mean(-2)
    return np.linalg.norm(centres, axis=-1)

# The mesh's inner-lip ring, in order around the mouth opening (from MediaPipe's lip contours).
MESH_INNER_LIPS = np.array(
    [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95], dtype=np.int64
)
# The mesh's outer-lip ring, in order around the mouth (from MediaPipe's lip contours).
MESH_OUTER_LIPS = np.array(
    [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146], dtype=np.int64
)

# The mesh's outline (forehead, temples, jaw), in order around the face.
MESH_FACE_OVAL = np.array(
    [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
     149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109], dtype=np.int64
)

# Each eye's opening, in order around it (outer corner, upper lid, inner corner, lower lid), and its
# iris (centre, then four points on the rim), from MediaPipe's eye contours and iris refinement.
MESH_EYE_OPENINGS = np.array([
    [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7],  # subject's right eye
    [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249],  # subject's left eye
], dtype=np.int64)
UPPER_LID, LOWER_LID = slice(1, 8), slice(15, 8, -1)  # positions in a MESH_EYE_OPENINGS row: each lid (7), outer corner first
MESH_IRISES = np.array([[468, 469, 470, 471, 472], [473, 474, 475, 476, 477]], dtype=np.int64)
MESH_IRIS_START = 468  # vertices from here on are the iris points; the face surface is 0..467


@dataclass(frozen=True)
class Face:
    mesh: np.ndarray  # (478, 3) float32, image pixels

    @property
    def ibug68(self) -> np.ndarray:
        """(68, 3) iBUG-layout points taken from the mesh."""
        return mesh_to_ibug68(self.mesh)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Tight (x0, y0, x1, y1) box of the mesh, in pixels."""
        x0, y0 = self.mesh[:, :2].min(0)
        x1, y1 = self.mesh[:, :2].max(0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def width(self) -> float:
        """Face width in pixels (mesh box width)."""
        x0, _, x1, _ = self.box
        return x1 - x0
