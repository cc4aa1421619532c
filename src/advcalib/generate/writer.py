"""Write chunks as PFNano ROOT files with uproot (TTree ``Events``) and truth sidecars.

Branch types follow CMS PFNano: floats are float32, indices and flags int32 or bool, as
listed in :data:`BRANCH_DTYPES`; the remaining branches are float32. uproot writes the
collection counters (``nJet``...) as int32 where CMS writes uint32; coffea reads both.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from advcalib.generate.chunk import Chunk

I4, U1, U4, U8, B = np.int32, np.uint8, np.uint32, np.uint64, np.bool_
#: Non-float32 branch types, keyed by full branch name.
BRANCH_DTYPES: dict[str, type] = {
    "run": U4, "luminosityBlock": U4, "event": U8, "PV_npvs": I4, "PV_npvsGood": I4,
    **{f"Jet_{k}": I4 for k in ("jetId", "puId", "muonIdx1", "muonIdx2", "electronIdx1", "electronIdx2", "nMuons",
                                 "nElectrons", "nConstituents", "hadronFlavour", "partonFlavour", "nBHadrons", "nCHadrons",
                                 "DeepCSV_jetNSecondaryVertices", "DeepCSV_jetNSelectedTracks",
                                 "DeepCSV_jetNTracksEtaRel", "DeepCSV_vertexNTracks")},
    **{f"PFCands_{k}": I4 for k in ("charge", "pdgId", "lostInnerHits", "pvAssocQuality", "trkQuality")},
    "JetPFCands_pFCandsIdx": I4, "JetPFCands_jetIdx": I4, "JetSVs_jetIdx": I4, "JetSVs_sVIdx": I4, "SV_ntracks": U1,
    **{f"Muon_{k}": I4 for k in ("charge", "pdgId", "jetIdx")},
    **{f"Muon_{k}": B for k in ("tightId", "mediumId", "looseId", "softId", "isGlobal", "isTracker", "isPFcand")},
    **{f"Electron_{k}": I4 for k in ("charge", "pdgId", "jetIdx", "cutBased")},
    **{f"Electron_{k}": B for k in ("mvaFall17V2Iso_WP80", "mvaFall17V2Iso_WP90", "convVeto")},
    "Electron_lostHits": U1, "Muon_fsrPhotonIdx": I4, "Electron_photonIdx": I4,
}
#: Suffixes of index and integer branches of the placeholder collections.
_INT_SUFFIXES = ("Idx", "Idx1", "Idx2", "Idx3SJ", "_charge")


def branch_dtype(name: str) -> np.dtype:
    """numpy type of the branch ``name`` (HLT and Flag bits are bool, unlisted branches float32)."""
    if name.startswith(("HLT_", "Flag_")):
        return np.dtype(np.bool_)
    if name in BRANCH_DTYPES:
        return np.dtype(BRANCH_DTYPES[name])
    return np.dtype(np.int32 if name.endswith(_INT_SUFFIXES) else np.float32)


def _jagged(counts: np.ndarray, fields: dict[str, np.ndarray], prefix: str) -> ak.Array:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    # Jet_DeepJet_* input branches keep the types the input builder gives them.
    contents = [
        ak.contents.NumpyArray(np.asarray(v) if k.startswith("DeepJet_") else np.asarray(v, dtype=branch_dtype(f"{prefix}_{k}")))
        for k, v in fields.items()
    ]
    record = ak.contents.RecordArray(contents, list(fields), length=int(offsets[-1]))
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), record))


def chunk_arrays(chunk: Chunk, *, event_ids: dict[str, np.ndarray]) -> dict[str, object]:
    """Arrays to pass to ``uproot`` for one chunk: flat branches and one record array per collection."""
    arrays: dict[str, object] = {k: np.asarray(v, dtype=branch_dtype(k)) for k, v in event_ids.items()}
    arrays.update({k: np.asarray(v, dtype=branch_dtype(k)) for k, v in chunk.scalars.items()})
    for name, (counts, fields) in chunk.collections.items():
        arrays[name] = _jagged(counts, fields, name)
    return arrays


class TreeWriter:
    """Append chunks to one TTree of a new ROOT file; the tree is created at the first chunk.

    ``basket_capacity`` is the number of ``write`` calls the tree metadata has room for.
    Beyond it uproot moves and rewrites the metadata, which stays correct but takes time
    quadratic in the number of branches (about 0.2 s for the 310 PFNano branches).
    """

    def __init__(self, path: Path, tree: str = "Events", *, basket_capacity: int = 10) -> None:
        self.path = Path(path)
        self.tree_name = tree
        self.basket_capacity = basket_capacity
        self._file = uproot.recreate(self.path, compression=uproot.LZ4(1))
        self._tree = None
        self.entries = 0
        self.baskets = 0

    def write(self, arrays: dict[str, object]) -> None:
        """Append one chunk (mapping of branch or collection name to array)."""
        if self._tree is None:
            types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in arrays.items()}
            self._tree = self._file.mktree(self.tree_name, types, counter_name=lambda name: f"n{name}",
                                           initial_basket_capacity=max(self.basket_capacity, 2))
        self._tree.extend(arrays)
        self.entries += len(next(iter(arrays.values())))
        self.baskets += 1

    def close(self) -> None:
        """Close the file. Callers write at least one chunk, because the tree is created by the first."""
        self._file.close()

    def __enter__(self) -> TreeWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def truth_arrays(chunk: Chunk) -> dict[str, object]:
    """Build the truth sidecar's branches of one chunk: ``Jet_hadronFlavour`` aligned with the data file's jets."""
    counts = chunk.collections["Jet"][0]
    return {"Jet": _jagged(counts, {"hadronFlavour": chunk.truth_flavour}, "Jet")}
