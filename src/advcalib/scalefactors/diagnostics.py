"""Diagnostics of the fits: diagnostics.json and plots (matplotlib, no pyplot state).

Plots per model:

- c-tag SF maps and their statistical uncertainty per flavour;
- b-tag SFs against BvsAll per pt bin, and BvsL SFs;
- data against MC before and after the SFs in each region;
- closure pulls, when a closure ran.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from advcalib.outputs import write_json_atomic
from advcalib.scalefactors.derive import ModelScaleFactors, ShapeScaleFactors
from advcalib.scalefactors.templates import MC_FLAVOURS


def fit_record(shape: ShapeScaleFactors) -> dict:
    """JSON-ready convergence record of one fit."""
    fit = shape.fit
    record = {
        "chi2_per_iteration": [float(x) for x in fit.chi2],
        "n_iterations": fit.n_iterations,
        "converged": fit.converged,
        "region_order": fit.order,
        "mc_normalisation": fit.normalisation,
        "n_bins": int(np.prod(fit.sf.shape[1:])),
        "flavours": {},
    }
    for f, flavour in enumerate(MC_FLAVOURS):
        usable = fit.grouping.usable[f]
        record["flavours"][flavour] = {
            "n_groups": int(len(usable)),
            "n_usable_groups": int(usable.sum()),
            "fitted_bin_fraction": float(fit.fitted[f].mean()),
        }
    return record


def write_json(data: dict, path: Path) -> Path:
    """Write ``data`` as strict JSON, atomically; NaN and infinities become ``null``."""
    return write_json_atomic(path, data)


def plot_model(sfs: ModelScaleFactors, out_dir: Path, closure: dict | None = None) -> list[Path]:
    """Write the plots of one model; returns their paths."""
    paths = [
        _save(_ctag_maps(sfs.ctag, sfs.model), out_dir / f"sf_{sfs.model}_ctag.png"),
        _save(_btag_curves(sfs.btag, sfs.model), out_dir / f"sf_{sfs.model}_btag.png"),
        _save(_bvsl_curves(sfs.bvsl, sfs.model), out_dir / f"sf_{sfs.model}_bvsl.png"),
        _save(_data_mc(sfs), out_dir / f"datamc_{sfs.model}.png"),
    ]
    if closure:
        paths.append(_save(_pulls(closure, sfs.model), out_dir / f"closure_pulls_{sfs.model}.png"))
    return paths


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=90)
    return path


def _ctag_maps(shape: ShapeScaleFactors, model: str) -> Figure:
    # Bins left blank were not fitted and keep SF = 1.
    fig = Figure(figsize=(13, 8), layout="constrained")
    axes = fig.subplots(2, 3)
    cvl, cvb = shape.templates.edges
    for f, flavour in enumerate(MC_FLAVOURS):
        sf = np.where(shape.fit.fitted[f], shape.fit.sf[f], np.nan)
        sigma = np.where(shape.fit.fitted[f], shape.sigma[f], np.nan)
        for row, (values, label, limits) in enumerate(((sf, "SF", (0.5, 1.5)), (sigma, "stat. unc.", (0.0, 0.3)))):
            mesh = axes[row, f].pcolormesh(cvl, cvb, values.T, vmin=limits[0], vmax=limits[1], cmap="coolwarm" if row == 0 else "viridis")
            axes[row, f].set(xlabel="CvsL", ylabel="CvsB", title=f"{model} {flavour}: {label}")
            fig.colorbar(mesh, ax=axes[row, f])
    return fig


def _btag_curves(shape: ShapeScaleFactors, model: str) -> Figure:
    pt, eta, disc = shape.templates.edges
    centres = 0.5 * (disc[1:] + disc[:-1])
    fig = Figure(figsize=(13, 4 * (len(eta) - 1)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(eta) - 1, 3))
    for e in range(len(eta) - 1):
        for f, flavour in enumerate(MC_FLAVOURS):
            ax = axes[e, f]
            for p in range(len(pt) - 1):
                mask = shape.fit.fitted[f, p, e]
                ax.errorbar(centres[mask], shape.fit.sf[f, p, e][mask], yerr=shape.sigma[f, p, e][mask], fmt="o", ms=3,
                            label=f"pt {pt[p]:g}-{pt[p + 1]:g}")
            ax.axhline(1.0, color="grey", lw=0.8)
            ax.set(xlabel="BvsAll", ylabel="SF", title=f"{model} {flavour}, |eta| {eta[e]:g}-{eta[e + 1]:g}")
    axes[0, 0].legend(fontsize=7)
    return fig


def _bvsl_curves(shape: ShapeScaleFactors, model: str) -> Figure:
    edges = shape.templates.edges[0]
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for f, flavour in enumerate(MC_FLAVOURS):
        mask = shape.fit.fitted[f]
        ax.errorbar(centres[mask], shape.fit.sf[f][mask], yerr=shape.sigma[f][mask], fmt="o", ms=3, label=flavour)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(xlabel="BvsL", ylabel="SF", title=f"{model}: BvsL shape SF")
    ax.legend()
    return fig


def _data_mc(sfs: ModelScaleFactors) -> Figure:
    panels = [(sfs.ctag, "CvsL", (1,)), (sfs.ctag, "CvsB", (0,)), (sfs.btag, "BvsAll", (0, 1)), (sfs.bvsl, "BvsL", ())]
    regions = sfs.ctag.templates.regions
    fig = Figure(figsize=(13, 4 * len(regions)), layout="constrained")
    axes = fig.subplots(len(regions), len(panels), squeeze=False)
    for r, region in enumerate(regions):
        for c, (shape, name, summed) in enumerate(panels):
            t = shape.templates
            edges = t.edges[t.axis_names.index(name)]
            data = t.data.value[r].sum(axis=summed)
            before = t.mc.value[r].sum(axis=0).sum(axis=summed)
            after = (t.mc.value[r] * shape.fit.sf).sum(axis=0).sum(axis=summed)
            ax = axes[r, c]
            total = data.sum() if data.sum() > 0 else 1.0
            for values, label in ((before, "MC"), (after, "MC x SF")):
                scale = total / values.sum() if values.sum() > 0 else 1.0
                ax.stairs(values * scale, edges, label=label)
            centres = 0.5 * (edges[1:] + edges[:-1])
            ax.errorbar(centres, data, yerr=np.sqrt(np.clip(t.data.variance[r].sum(axis=summed), 0, None)), fmt="ko", ms=3, label="data")
            ax.set(xlabel=name, ylabel="OS-SS jets", title=f"{sfs.model}: {region} region")
    axes[0, 0].legend()
    return fig


def _pulls(closure: dict, model: str) -> Figure:
    fig = Figure(figsize=(15, 4), layout="constrained")
    axes = fig.subplots(1, len(closure))
    x = np.linspace(-4, 4, 200)
    for ax, name in zip(axes, closure):
        for key, label in (("pulls", "(SF - SF_true) / stat. unc."), ("pulls_diff", "(SF - SF_true) / unc. of difference")):
            pulls = np.concatenate([np.asarray(v) for v in closure[name][key].values()])
            ax.hist(pulls, bins=np.linspace(-4, 4, 33), density=True, histtype="step", label=label)
        ax.plot(x, np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi), "k--", lw=0.8, label="unit Gaussian")
        s = closure[name]["pull_diff"]
        ax.set(xlabel="pull", title=f"{model} {name}: difference pull mean {s['mean']:.2f}, width {s['width']:.2f}")
        ax.legend(fontsize=7)
    return fig
