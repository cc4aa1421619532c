#!/bin/bash
# Job wrapper of an advcalib batch run: advcalib_job.sh JOB_DIR
#
# Runs `advcalib run` on JOB_DIR/fileset.json in a scratch folder, then publishes the
# outputs into JOB_DIR: every other file first, hists.coffea last by a rename, so a
# present hists.coffea always means a finished job.
#
# Environment:
#   ADVCALIB_ENV_TARBALL  name of a venv-pack tarball transferred with the job; unpacked and activated
#   ADVCALIB_SKIP_ENV=1   skip the environment step (the current environment has advcalib)
#   ADVCALIB_RUN_ARGS     bash array of extra `advcalib run` arguments, read from job.env
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 JOB_DIR" >&2
    exit 2
fi
JOB_DIR=$(cd "$1" && pwd)
JOB_NAME=$(basename "$JOB_DIR")
SCRATCH=${_CONDOR_SCRATCH_DIR:-$(mktemp -d)}
cd "$SCRATCH"

if [ "${ADVCALIB_SKIP_ENV:-0}" != "1" ] && [ -n "${ADVCALIB_ENV_TARBALL:-}" ]; then
    if [ ! -f "$ADVCALIB_ENV_TARBALL" ]; then
        echo "environment tarball $ADVCALIB_ENV_TARBALL not found in $SCRATCH; add it to transfer_input_files" >&2
        exit 3
    fi
    mkdir -p advcalib-env
    tar -xzf "$ADVCALIB_ENV_TARBALL" -C advcalib-env
    # shellcheck disable=SC1091
    source advcalib-env/bin/activate
fi

# Inputs come by HTCondor file transfer into the scratch folder, or from the shared job folder.
FILESET=fileset.json
[ -f "$FILESET" ] || FILESET="$JOB_DIR/fileset.json"
ENV_FILE=job.env
[ -f "$ENV_FILE" ] || ENV_FILE="$(dirname "$JOB_DIR")/job.env"
ADVCALIB_RUN_ARGS=()
# shellcheck disable=SC1090
[ -f "$ENV_FILE" ] && source "$ENV_FILE"

OUT="$SCRATCH/advcalib-out-$JOB_NAME"
rm -rf "$OUT"
echo "advcalib job $JOB_NAME on $(hostname) at $(date -u +%FT%TZ): python $(command -v python)"
status=0
advcalib run --fileset "$FILESET" --out "$OUT" --no-progress "${ADVCALIB_RUN_ARGS[@]}" || status=$?

# advcalib run writes cutflow.json right after hists.coffea, so both present means the
# histograms are complete. A non-zero status then comes from a derived step (JSD, scale
# factors, plots), which `advcalib merge` redoes on the merged histograms anyway.
if [ ! -f "$OUT/hists.coffea" ] || [ ! -f "$OUT/cutflow.json" ]; then
    echo "advcalib run failed (exit status $status) before saving its histograms; nothing published" >&2
    exit $(( status == 0 ? 4 : status ))
fi
if [ "$status" -ne 0 ]; then
    echo "advcalib run exited with status $status after saving its histograms; publishing them" >&2
fi
# Copy into a temporary folder inside JOB_DIR (same filesystem), then rename into place.
PARTIAL="$JOB_DIR/.partial-$$"
rm -rf "$PARTIAL"
cp -r "$OUT" "$PARTIAL"
for item in "$PARTIAL"/* ; do
    name=$(basename "$item")
    [ "$name" = "hists.coffea" ] && continue
    rm -rf "${JOB_DIR:?}/$name"
    mv "$item" "$JOB_DIR/$name"
done
mv "$PARTIAL/hists.coffea" "$JOB_DIR/hists.coffea"
rmdir "$PARTIAL"
rm -rf "$OUT"
echo "published $JOB_DIR/hists.coffea"
