"""Per-chunk bookkeeping around a processor: entry counts, failures and retries.

:class:`ChunkGuard` wraps the user's processor without changing it. Each chunk's output
becomes ``{"output": ..., "entries": {file: n}}``, or ``{"failed": {file: [reason]}}``
when the chunk fails every attempt and bad files are skipped. After the run,
:func:`unwrap_output` checks that the processed entries of every file add up to the
file's entry count, so a chunk that went missing anywhere raises instead of shrinking
the histograms silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from coffea.processor import ProcessorABC

from advcalib.scaleout.chunks import FileInfo

logger = logging.getLogger(__name__)

#: Output key listing unreadable files and failed chunks, file name -> reasons.
FAILED_FILES_KEY = "failed_files"


class EventCountMismatch(RuntimeError):
    """Processed entries differ from the entries of the input files."""


class ChunkGuard(ProcessorABC):
    """Processor wrapper that counts entries per file and records failed chunks.

    With ``skip_bad_files`` the guard itself tries a chunk ``retries + 1`` times and
    then returns a failure record, so the run goes on. Without it the exception
    propagates after one attempt, and the executor's own retries apply (Runner's
    ``automatic_retries`` or Dask task retries). ``retry_in_task`` makes the guard retry
    for schedulers that have no retries of their own.
    """

    def __init__(
        self, processor: ProcessorABC, *, skip_bad_files: bool, retries: int, retry_in_task: bool = False
    ) -> None:
        self.processor = processor
        self.skip_bad_files = skip_bad_files
        self.retries = retries
        self.retry_in_task = retry_in_task

    def process(self, events: Any) -> dict[str, Any]:
        metadata = events.metadata
        return self.process_chunk(
            events, filename=metadata["filename"], entrystart=metadata["entrystart"], entrystop=metadata["entrystop"]
        )

    def process_chunk(self, events: Any, *, filename: str, entrystart: int, entrystop: int) -> dict[str, Any]:
        attempts = self.retries + 1 if (self.skip_bad_files or self.retry_in_task) else 1
        for attempt in range(attempts):
            try:
                output = self.processor.process(events)
            except Exception as error:  # noqa: BLE001 - recorded per chunk when skipping, else re-raised
                if not self.skip_bad_files and attempt + 1 == attempts:
                    raise
                reason = f"entries {entrystart}-{entrystop}: {type(error).__name__}: {error}"
                logger.warning("attempt %d of %d failed for %s %s", attempt + 1, attempts, filename, reason)
                continue
            return {"output": output, "entries": {filename: len(events)}}
        return {"failed": {filename: [reason]}, "failed_entries": {filename: entrystop - entrystart}}

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator


def unwrap_output(
    wrapped: Mapping[str, Any] | None,
    *,
    processor: ProcessorABC,
    infos: list[FileInfo],
    expected_entries: Mapping[str, int],
    file_datasets: Mapping[str, str],
) -> Any:
    """Check entry counts, run the processor's ``postprocess`` and attach ``failed_files``.

    ``expected_entries`` maps each planned file to the entries its chunks cover, and
    ``file_datasets`` maps it to its dataset. Files that failed to open and chunks that
    failed every attempt go to the output's ``failed_files`` (file -> list of reasons).
    Raises :class:`EventCountMismatch` with the numbers when a file's processed plus
    failed entries differ from its planned entries, or when a cutflow's ``all`` count
    differs from the entries processed for its dataset.
    """
    wrapped = wrapped or {}
    processed: Mapping[str, int] = wrapped.get("entries", {})
    failed_entries: Mapping[str, int] = wrapped.get("failed_entries", {})
    failed: dict[str, list[str]] = {name: list(reasons) for name, reasons in wrapped.get("failed", {}).items()}
    for info in infos:
        if info.error is not None:
            failed.setdefault(info.task.filename, []).append(info.error)

    check_entry_totals(expected_entries, processed=processed, failed=failed_entries)

    output = wrapped.get("output")
    if output is None:
        raise RuntimeError(
            "no chunk produced an output; every file failed: "
            + "; ".join(f"{name}: {reasons[0]}" for name, reasons in failed.items())
        )
    processed_by_dataset: dict[str, int] = {}
    for filename, entries in processed.items():
        dataset = file_datasets[filename]
        processed_by_dataset[dataset] = processed_by_dataset.get(dataset, 0) + entries
    check_cutflow_totals(output, processed_by_dataset)

    postprocessed = processor.postprocess(output)
    if postprocessed is not None:
        output = postprocessed
    if isinstance(output, dict):
        output[FAILED_FILES_KEY] = failed
    elif failed:
        raise TypeError(f"cannot attach {FAILED_FILES_KEY!r} to a processor output of type {type(output).__name__}")
    if failed:
        logger.warning("%d files failed: %s", len(failed), ", ".join(sorted(failed)))
    return output


def check_entry_totals(
    expected: Mapping[str, int], *, processed: Mapping[str, int], failed: Mapping[str, int]
) -> None:
    """Raise :class:`EventCountMismatch` unless processed + failed entries equal the expected entries per file."""
    problems = []
    for filename in sorted(set(expected) | set(processed) | set(failed)):
        want = expected.get(filename, 0)
        got = processed.get(filename, 0)
        lost = failed.get(filename, 0)
        if got + lost != want:
            problems.append(f"{filename}: {got} processed + {lost} in failed chunks != {want} entries in the file")
    if problems:
        total_want = sum(expected.values())
        total_got = sum(processed.values())
        raise EventCountMismatch(
            f"processed {total_got} of {total_want} entries, so chunks went missing or were counted twice:\n"
            + "\n".join(problems)
        )


def check_cutflow_totals(output: Any, processed: Mapping[str, int]) -> None:
    """Compare each cutflow's first cut ``all`` with the entries processed for its dataset.

    Applies to outputs with a ``cutflow`` of the layout
    ``{dataset: {selection: {channel: {cut: n_events}}}}``; other outputs pass unchecked.
    """
    cutflow = output.get("cutflow") if isinstance(output, Mapping) else None
    if not isinstance(cutflow, Mapping):
        return
    problems = []
    for dataset, selections in cutflow.items():
        if not isinstance(selections, Mapping):
            continue
        for selection, channels in selections.items():
            for channel, cuts in (channels.items() if isinstance(channels, Mapping) else ()):
                if not isinstance(cuts, Mapping) or "all" not in cuts:
                    continue
                if cuts["all"] != processed.get(dataset, 0):
                    problems.append(
                        f"{dataset} {selection} {channel}: cutflow 'all' = {cuts['all']}, entries processed = {processed.get(dataset, 0)}"
                    )
    if problems:
        raise EventCountMismatch("cutflow totals differ from the processed entries:\n" + "\n".join(problems))
