"""Checks of a fileset before any event is processed, from the ROOT file headers only.

:func:`check_fileset` opens every file of the run with uproot and reads the tree's entry
count and branch names (after the NanoAOD renames of :mod:`advcalib.naming`), never a
basket of events. It collects every problem of the whole fileset before it stops, so one
run of the check lists them all:

- a file that cannot be read as ROOT (missing, truncated, corrupt): an error, or with
  ``skip_bad_files`` a skipped file listed in the report;
- a ROOT file without any key (a writer that stopped before its first event) or a tree
  with zero entries: a warning. Such a file contains no events, so it is left out or gives
  no chunk;
- a tree name not in the file, branches the selections or the normalisation read, a
  truth sidecar that is missing or not aligned with its data file: errors;
- DeepJet inputs: taken from the stored ``Jet_DeepJet_*`` branches, else derived from the
  PF candidates. A file with neither is an error that lists the missing branches. With
  ``missing_inputs="warn"`` it is a warning instead, and the run fills only the stored
  discriminators for that file;
- triggers: those of a selection channel that a file lacks give a warning, and a file
  with none of them is an error, because the selection cannot run on it;
- metadata keys that look like misspelt known keys give a warning.

Errors raise :class:`PreflightError` from :meth:`PreflightReport.raise_for_errors`; its
message names each problem with its dataset, files and branches and what to do.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import uproot

from advcalib.fileset import Dataset, DatasetMetadata
from advcalib.naming import alias_map

logger = logging.getLogger(__name__)

#: Branches every file needs: coffea's event ids and what the selections read. Electron
#: ID and triggers are checked per selection, because each cut table names its own.
EVENT_BRANCHES: tuple[str, ...] = ("run", "luminosityBlock", "event")
SELECTION_BRANCHES: tuple[str, ...] = (
    *(f"Muon_{name}" for name in ("pt", "eta", "phi", "mass", "charge", "tightId", "pfRelIso04_all", "dxy", "dxyErr")),
    *(f"Electron_{name}" for name in ("pt", "eta", "phi", "mass", "charge")),
    *(f"Jet_{name}" for name in ("pt", "eta", "phi", "mass", "jetId", "muEF", "neEmEF")),
    "MET_pt",
    "MET_phi",
)
#: Branches coffea's record behaviours need when the inputs come from the PF candidates
#: (vertex positions, candidate and vertex four-vectors), besides those the builder reads.
CANDIDATE_BEHAVIOUR_BRANCHES: tuple[str, ...] = (
    "PV_x", "PV_y", "PV_z", "PFCands_mass", "SV_x", "SV_y", "SV_z", "SV_pt", "SV_eta", "SV_phi", "SV_mass",
)
#: Branches simulation needs besides: event weights and the probe jet's flavour.
SIMULATION_BRANCHES: tuple[str, ...] = ("genWeight", "Jet_hadronFlavour")
#: Branch of the stored DeepJet b discriminator, which model ``stored`` needs.
STORED_BRANCH = "Jet_btagDeepFlavB"
#: Tree and branch of a pseudo-data truth sidecar.
TRUTH_TREE = "Truth"
TRUTH_BRANCH = "Jet_hadronFlavour"
#: Most names listed in one message before the rest are counted.
LIST_LIMIT = 8

Severity = Literal["error", "warning"]


class PreflightError(ValueError):
    """The fileset cannot be processed; the message lists every problem found."""


@dataclass(frozen=True)
class FileHeader:
    """Entry count and canonical branch names from the header of one input file."""

    path: str
    treename: str
    num_entries: int
    branches: frozenset[str]
    renamed: dict[str, str] = field(default_factory=dict)
    has_tree: bool = True


@dataclass(frozen=True)
class Finding:
    """One problem of the fileset: its severity, dataset, files and message."""

    severity: Severity
    dataset: str
    files: tuple[str, ...]
    message: str

    def text(self) -> str:
        label = "datasets" if ", " in self.dataset else "dataset"
        return f"{label} {self.dataset}: {self.message}" + (f" [files: {listing(self.files)}]" if self.files else "")


@dataclass
class PreflightReport:
    """Findings of :func:`check_fileset` and what the run does with each file."""

    findings: list[Finding] = field(default_factory=list)
    headers: dict[str, FileHeader] = field(default_factory=dict)
    skipped_files: dict[str, str] = field(default_factory=dict)
    empty_files: list[str] = field(default_factory=list)
    input_sources: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "warning"]

    def add(self, severity: Severity, dataset: str, message: str, files: Iterable[str] = ()) -> None:
        finding = Finding(severity, dataset, tuple(files), message)
        self.findings.append(finding)
        if severity == "warning":
            logger.warning("%s", finding.text())

    def raise_for_errors(self) -> None:
        """Raise :class:`PreflightError` listing every error; warnings are logged already."""
        if self.errors:
            lines = "\n".join(f"  - {finding.text()}" for finding in self.errors)
            raise PreflightError(f"the fileset failed {len(self.errors)} checks before processing:\n{lines}")

    def usable(self, datasets: Mapping[str, Dataset]) -> dict[str, Dataset]:
        """Return the datasets without skipped files and without files that contain no tree.

        A simulated dataset that lost skipped files drops its metadata ``sumw``, so the run
        normalises it with the sum of genWeight of the files it processed. For collision
        data the metadata ``lumi`` still counts the skipped files. Only the user can correct
        that, so a warning names the dataset.
        """
        treeless = {path for path in self.empty_files if not self.headers[path].has_tree}
        kept: dict[str, Dataset] = {}
        for name, dataset in datasets.items():
            skipped = [path for path in dataset.files if path in self.skipped_files]
            files = {path: tree for path, tree in dataset.files.items() if path not in self.skipped_files and path not in treeless}
            if not files:
                logger.warning("dataset %s has no file left to process; it is left out of the run", name)
                continue
            metadata = dataset.metadata
            if skipped and not metadata.is_data and metadata.sumw is not None:
                logger.warning(
                    "dataset %s: %d files skipped, so it is normalised with the sum of genWeight of its processed files "
                    "instead of the metadata sumw %g",
                    name, len(skipped), metadata.sumw,
                )
                metadata = metadata.model_copy(update={"sumw": None})
            elif skipped and metadata.is_data:
                logger.warning(
                    "dataset %s: %d files skipped, but its metadata lumi %s still includes them; "
                    "set 'lumi' to the luminosity of the processed files or recover the skipped files",
                    name, len(skipped), metadata.lumi,
                )
            kept[name] = dataset.model_copy(update={"files": files, "metadata": metadata})
        return kept

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the run report."""
        return {
            "errors": [finding.text() for finding in self.errors],
            "warnings": [finding.text() for finding in self.warnings],
            "skipped_files": dict(self.skipped_files),
            "empty_files": list(self.empty_files),
            "input_sources": dict(self.input_sources),
            "renamed_branches": {path: header.renamed for path, header in self.headers.items() if header.renamed},
        }


def listing(names: Sequence[str], *, limit: int = LIST_LIMIT) -> str:
    """Join names for a message, listing at most ``limit`` and counting the rest."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


class BadFileError(OSError):
    """An input file that cannot be opened or read as ROOT; the message names the file.

    ``problem`` is the message without the advice on what to do.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}. Copy it again, remove it from the fileset, or pass --skip-bad-files to go on without it")
        self.problem = problem


def read_header(path: str, treename: str) -> FileHeader:
    """Open ``path`` and read the entry count and branch names of ``treename``, no events.

    Branch names come back canonical (see :func:`advcalib.naming.alias_map`). A ROOT file
    without any key gives ``has_tree=False`` and zero entries. Raises
    :class:`BadFileError` for a file that uproot cannot open and ``KeyError`` for a
    missing tree in a file that contains other keys.
    """
    try:
        with uproot.open(path) as root_file:
            keys = root_file.keys(cycle=False)
            if not keys:
                return FileHeader(path, treename, 0, frozenset(), has_tree=False)
            if treename not in keys:
                raise KeyError(f"{path} has no tree {treename!r} (keys: {listing(keys)}); name the tree in the fileset as {{path: tree}}")
            tree = root_file[treename]
            names = tree.keys(recursive=False)
            entries = int(tree.num_entries)
    except KeyError:
        raise
    except Exception as error:  # noqa: BLE001 - uproot raises many types for damaged files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise BadFileError(
            f"{path} cannot be read as a ROOT file ({type(error).__name__}: {reason}); it is missing, truncated or corrupt"
        ) from error
    renamed = alias_map(names)
    return FileHeader(path, treename, entries, frozenset(renamed.get(n, n) for n in names), renamed)


def check_fileset(
    datasets: Mapping[str, Dataset],
    *,
    need_deepjet_inputs: bool = True,
    selections: Sequence[Any] | None = None,
    skip_bad_files: bool = False,
    missing_inputs: Literal["error", "warn"] = "error",
    limit_files: int | None = None,
) -> PreflightReport:
    """Check every file of ``datasets`` from its header; see the module docstring.

    ``need_deepjet_inputs`` is False when no tagger runs (only model ``stored``).
    ``selections`` default to every region and channel. ``limit_files`` checks only the
    files a run with that limit reads. Returns the report without raising; call
    :meth:`PreflightReport.raise_for_errors` to stop on errors.
    """
    if selections is None:
        from advcalib.selections import default_selections

        selections = default_selections()
    report = PreflightReport()
    seen: dict[str, str] = {}
    trigger_gaps: dict[tuple[str, tuple[str, ...]], dict[str, list[str]]] = {}
    for name, dataset in datasets.items():
        files = dict(list(dataset.files.items())[:limit_files]) if limit_files else dict(dataset.files)
        _check_metadata(report, name, dataset.metadata)
        headers = _read_headers(report, name, files, skip_bad_files=skip_bad_files)
        for path in files:
            if path in seen:
                report.add("warning", name, f"file is also in dataset {seen[path]!r}, so its events are counted twice", [path])
            seen.setdefault(path, name)
        readable = [header for header in headers if header.has_tree]
        if not readable:
            continue
        _check_branches(report, name, readable, is_data=dataset.metadata.is_data)
        if need_deepjet_inputs:
            _check_inputs(report, name, readable, severity="error" if missing_inputs == "error" else "warning")
        _check_triggers(report, name, readable, selections, trigger_gaps)
        _check_truth(report, name, dataset.metadata, {header.path: header for header in readable})
    for (context, missing), files_by_dataset in trigger_gaps.items():
        files = [path for paths in files_by_dataset.values() for path in paths]
        message = f"{context} triggers {listing(missing)} are not in these files; the others are used"
        report.add("warning", ", ".join(files_by_dataset), message, files)
    return report


def _check_metadata(report: PreflightReport, name: str, metadata: DatasetMetadata) -> None:
    known = list(DatasetMetadata.model_fields)
    for key in metadata.model_extra or {}:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        if close:
            report.add("warning", name, f"metadata key {key!r} is not used by advcalib; did you mean {close[0]!r}?")


def _read_headers(report: PreflightReport, name: str, files: Mapping[str, str], *, skip_bad_files: bool) -> list[FileHeader]:
    headers = []
    for path, tree in files.items():
        try:
            header = read_header(path, tree)
        except BadFileError as error:
            if skip_bad_files:
                report.skipped_files[path] = error.problem
                report.add("warning", name, f"skipped: {error.problem}", [path])
            else:
                report.add("error", name, str(error), [path])
            continue
        except KeyError as error:
            report.add("error", name, str(error.args[0]), [path])
            continue
        report.headers[path] = header
        if header.num_entries == 0:
            report.empty_files.append(path)
            state = "has no tree" if not header.has_tree else f"tree {tree!r} has zero entries"
            report.add("warning", name, f"file {state}, so it contributes no events", [path])
        headers.append(header)
    return headers


def _missing_by_files(headers: Iterable[FileHeader], required: Iterable[str]) -> dict[tuple[str, ...], list[str]]:
    """Group files by the tuple of required branches they lack."""
    required = list(required)
    groups: dict[tuple[str, ...], list[str]] = {}
    for header in headers:
        missing = tuple(branch for branch in required if branch not in header.branches)
        if missing:
            groups.setdefault(missing, []).append(header.path)
    return groups


def _check_branches(report: PreflightReport, name: str, headers: list[FileHeader], *, is_data: bool) -> None:
    required = [*EVENT_BRANCHES, *SELECTION_BRANCHES, *(() if is_data else SIMULATION_BRANCHES)]
    for missing, files in _missing_by_files(headers, required).items():
        hint = " (simulation needs them; mark the dataset is_data if it is collision data)" if set(missing) <= set(SIMULATION_BRANCHES) else ""
        report.add("error", name, f"branches missing: {', '.join(missing)}{hint}; use NanoAOD files that have them", files)
    for _missing, files in _missing_by_files(headers, [STORED_BRANCH]).items():
        report.add("warning", name, f"no {STORED_BRANCH}, so model 'stored' gets no values from these files", files)


def _check_inputs(report: PreflightReport, name: str, headers: list[FileHeader], *, severity: Severity) -> None:
    from advcalib.inputs import required_branches

    stored_inputs = required_branches("deepjet_branches")
    candidates = [*required_branches("pfcands"), *CANDIDATE_BEHAVIOUR_BRANCHES]
    lacking: dict[tuple[str, ...], list[str]] = {}
    for header in headers:
        if all(branch in header.branches for branch in stored_inputs):
            report.input_sources[header.path] = "deepjet_branches"
        elif not (missing := tuple(b for b in candidates if b not in header.branches)):
            report.input_sources[header.path] = "pfcands"
        else:
            lacking.setdefault(missing, []).append(header.path)
    for missing, files in lacking.items():
        action = "use PFNano files, or pass --stored-only to fill only the discriminators stored in the files"
        if severity == "warning":
            action = "the taggers are skipped for these files and only model 'stored' is filled"
        report.add(
            severity,
            name,
            f"DeepJet inputs cannot be built: no Jet_DeepJet_* input branches, and the PF-candidate inputs lack "
            f"{len(missing)} branches ({', '.join(missing)}); {action}",
            files,
        )


def _check_triggers(
    report: PreflightReport,
    name: str,
    headers: list[FileHeader],
    selections: Sequence[Any],
    gaps: dict[tuple[str, tuple[str, ...]], dict[str, list[str]]],
) -> None:
    """Add errors for files without any trigger of a channel; collect partly missing lists in ``gaps``."""
    for selection in selections:
        cuts = selection.cuts
        context = f"{selection.name}/{selection.channel}"
        if "triggers" in cuts.names():
            _check_trigger_list(report, name, headers, tuple(cuts["triggers"]), context, gaps)
        if "electron_wp80_fields" in cuts.names():
            options = [f"Electron_{field}" for field in cuts["electron_wp80_fields"]]
            if cuts["electron_cut_based_min"] is not None:
                options.append("Electron_cutBased")
            files = [h.path for h in headers if not any(option in h.branches for option in options)]
            if files:
                report.add("error", name, f"{context} needs an electron ID branch, one of {listing(options)}", files)


def _check_trigger_list(
    report: PreflightReport,
    name: str,
    headers: list[FileHeader],
    triggers: tuple[str, ...],
    context: str,
    gaps: dict[tuple[str, tuple[str, ...]], dict[str, list[str]]],
) -> None:
    none_present = []
    for header in headers:
        missing = tuple(path for path in triggers if path not in header.branches)
        if len(missing) == len(triggers):
            none_present.append(header.path)
        elif missing:
            gaps.setdefault((context, missing), {}).setdefault(name, []).append(header.path)
    if none_present:
        report.add(
            "error",
            name,
            f"none of the {context} triggers ({listing(triggers)}) is in these files; use files with one of them "
            "or change the trigger list of the cut table",
            none_present,
        )


def _check_truth(report: PreflightReport, name: str, metadata: DatasetMetadata, headers: Mapping[str, FileHeader]) -> None:
    for data_file, sidecar in (metadata.truth or {}).items():
        if data_file not in headers:
            continue
        try:
            truth = read_header(sidecar, TRUTH_TREE)
        except (BadFileError, KeyError) as error:
            message = error.args[0] if isinstance(error, KeyError) else str(error)
            report.add("error", name, f"truth sidecar of {data_file}: {message}", [sidecar])
            continue
        if TRUTH_BRANCH not in truth.branches:
            report.add("error", name, f"truth sidecar {sidecar} has no branch {TRUTH_BRANCH}", [sidecar])
        elif truth.num_entries != headers[data_file].num_entries:
            report.add(
                "error",
                name,
                f"truth sidecar {sidecar} has {truth.num_entries} entries but {data_file} has "
                f"{headers[data_file].num_entries}; regenerate the sidecar with its data file",
                [sidecar],
            )


def run_report(*, preflight: PreflightReport, raw: Mapping[str, Any], chunks: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Build the JSON-ready report of a run: checks, skipped and failed files, chunks, sanitised inputs.

    ``raw`` is the processor output summed over the chunks. Its ``failed_files`` (chunks
    that failed while processing, from the scale-out guard) and ``n_sanitized`` (NaN and
    infinite DeepJet inputs replaced, per dataset) are copied when present.
    """
    failed = {path: [reason] for path, reason in preflight.skipped_files.items()}
    for path, reasons in (raw.get("failed_files") or {}).items():
        failed.setdefault(path, []).extend(reason for reason in reasons if reason not in failed[path])
    return {
        "preflight": preflight.as_dict(),
        "failed_files": failed,
        "skipped_models": sorted([list(item) for item in raw.get("skipped_models", ())]),
        "sanitized_inputs": dict(raw.get("n_sanitized") or {}),
        "chunks": dict(chunks or {}),
    }
