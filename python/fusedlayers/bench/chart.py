"""The speed-up chart: one panel per layer and pass, one bar per case and mode, drawn from 1×."""

MODE_COLORS = {"eager": "#4C72B0", "function": "#DD8452", "xla": "#55A868"}
DTYPE_SHORT = {"float32": "f32", "bfloat16": "bf16"}


def _panels(results):
    """{(layer, pass): {row label: {mode: result}}} over the timed cases, in run order."""
    panels = {}
    for r in results:
        if r["status"] != "ok":
            continue
        label = f"{r['group']}  {r['workload']}  {DTYPE_SHORT.get(r['dtype'], r['dtype'])}"
        if r["group"] == "activations":
            label += f"  {r['activation']}"
        panels.setdefault((r["layer"], r["pass"]), {}).setdefault(label, {})[r["mode"]] = r
    return panels


def write_chart(path, results, title):
    """Writes a PNG of speed-up (stock ÷ fused) per case; returns path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = _panels(results)
    if not panels:
        fig, ax = plt.subplots(figsize=(8, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no case was timed", ha="center", va="center")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
    heights = [len(rows) + 1.5 for rows in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 0.32 * sum(heights) + 1.2),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    timed = [r for rows in panels.values() for by_mode in rows.values() for r in by_mode.values()]
    low = min(0.5, min(r["speedup_q25"] for r in timed) / 2)
    high = max(2.0, max(r["speedup_q75"] for r in timed) * 2)
    bar = 0.8 / len(MODE_COLORS)
    for ax, ((layer, pass_), rows) in zip(axes[:, 0], panels.items()):
        for row, by_mode in enumerate(rows.values()):
            for slot, (mode, color) in enumerate(MODE_COLORS.items()):
                r = by_mode.get(mode)
                if r is None:
                    continue
                y = row + (slot - (len(MODE_COLORS) - 1) / 2) * bar
                s = r["speedup"]
                ax.barh(y, s - 1.0, left=1.0, height=bar * 0.9, color=color)
                ax.errorbar(s, y, xerr=[[s - r["speedup_q25"]], [r["speedup_q75"] - s]],
                            fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
                # The value sits past the whisker, on the side the bar grows to.
                end = r["speedup_q75"] * 1.04 if s >= 1 else r["speedup_q25"] / 1.04
                ax.text(end, y, f"{s:.2f}×", va="center", ha="left" if s >= 1 else "right",
                        fontsize=7)
        ax.set_xscale("log")
        ax.set_xlim(low, high)
        ax.axvline(1.0, color="black", linewidth=1.2)
        ax.set_yticks(range(len(rows)), list(rows), fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(f"{layer} · {pass_}", loc="left", fontsize=10, fontweight="bold")
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[-1, 0].set_xlabel("speed-up = stock time ÷ fused time (log scale; right of 1× = fused "
                           "faster; whiskers: interquartile range)")
    handles = [matplotlib.patches.Patch(color=c, label=m) for m, c in MODE_COLORS.items()]
    fig.legend(handles=handles, loc="upper right", ncol=len(handles), fontsize=9,
               title="mode", title_fontsize=9)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
