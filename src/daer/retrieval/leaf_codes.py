"""ERS leaf codes: how the vectors of each leaf are stored and scanned by FAISS.

``flat`` keeps float32; the scalar quantisers of :data:`SQ_CODES` keep 8 or 16 bits per dimension; ``pq4fs``
keeps 4-bit product-quantisation codes in FAISS fast-scan blocks. Quantised scores only pick candidates
when ``refine`` is on: the top ones are re-scored exactly from the float vectors.
"""

from __future__ import annotations

import faiss

from daer.errors import BadInputError

# Leaf codes besides "flat" (float32). "sq8" uses one 8-bit range for all dimensions: unit-norm embeddings have
# similar ranges per dimension, and FAISS scans it faster than "sq8_dim" (per-dimension ranges). "bf16" halves
# float32 with scores within ~1e-3 of exact and, in this FAISS build, scans fastest of all (~40 ns/vector at d=256).
SQ_CODES = {
    "sq8": faiss.ScalarQuantizer.QT_8bit_uniform,
    "sq8_dim": faiss.ScalarQuantizer.QT_8bit,
    "fp16": faiss.ScalarQuantizer.QT_fp16,
    "bf16": faiss.ScalarQuantizer.QT_bf16,
}
# "pq4fs": product quantisation with 4-bit sub-quantizers of the residual to the leaf centroid, stored in
# FAISS fast-scan blocks (IndexIVFPQFastScan) whose 16-entry look-up tables live in SIMD registers. Its scores
# are coarse (at d/M = 2, ~0.02 off at unit norm), so it only picks candidates: refine is required, and a few
# hundred are re-scored from the float vectors.
PQ4FS = "pq4fs"
PQ4FS_REORDER = 256  # default candidates re-scored per query with pq4fs (at least 8·k); at d=256, n=20k,
# n_probe=64: 128 reach the recall of unlimited re-scoring with pq_m = d/2, 256 with pq_m = d/4
CODES = ("flat", *SQ_CODES, PQ4FS)


def check_codes(codes: str, refine: bool, reorder: int, pq_m: int, d: int) -> int:
    """Refuse bad leaf-code settings with a clear message; returns the resolved ``pq_m`` (0 unless pq4fs)."""
    if codes not in CODES:
        raise BadInputError(f"ERS build: codes must be one of {', '.join(CODES)}; got {codes!r}")
    if reorder < 0:
        raise BadInputError(f"ERS build: reorder must be >= 0 (0: automatic), got {reorder}")
    if reorder > 0 and (codes == "flat" or not refine):
        raise BadInputError(
            f"ERS build: reorder={reorder} needs quantised codes with refine=True (codes={codes!r}, "
            f"refine={refine}): nothing else is re-scored"
        )
    if codes != PQ4FS:
        if pq_m:
            raise BadInputError(f"ERS build: pq_m applies to codes {PQ4FS!r} only, got codes={codes!r}")
        return 0
    if not refine:
        raise BadInputError(
            f"ERS build: codes {PQ4FS!r} need refine=True (4-bit PQ scores only pick candidates; the float "
            "vectors re-score them)"
        )
    m = pq_m or (d // 2 if d % 2 == 0 else d)
    if m < 1 or d % m != 0:
        raise BadInputError(
            f"ERS build: pq_m must be a positive divisor of the dimension {d} (e.g. {d // 2 if d % 2 == 0 else d}: "
            f"2 dimensions per 4-bit code; 0 picks that), got {pq_m}"
        )
    return m


def to_fast_scan(pq: faiss.IndexIVFPQ, quantizer: faiss.IndexFlatIP) -> faiss.IndexIVFPQFastScan:
    """Repack a filled 4-bit IVFPQ into fast-scan blocks (FAISS's own conversion); the result owns the quantizer.

    The detour is needed because ``IndexIVFFastScan.add_core`` stores the codes unpacked (FAISS 1.15: searches
    then read garbage), while ``IndexIVFPQ.add_core`` takes the leaves chosen by the tree as they are.
    """
    ivf = faiss.IndexIVFPQFastScan(pq)
    quantizer.this.disown()  # shared with ``pq``, which does not own it; freed with the fast-scan index
    ivf.own_fields = True
    ivf.referenced_objects = []  # would keep ``pq`` (a second copy of the codes) alive
    return ivf
