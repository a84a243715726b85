"""What minidl-bench shows and writes: the header, one line per case, warnings, the JSON file,
the plot and the progress bar."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from minidl.bench.case import ENGINES
from minidl.bench.timing import BUSY_SPREAD

REFERENCES = [e for e in ENGINES if e != "minidl"]
SCHEMA = "minidl-bench/2"
NAME_WIDTH = 58


# -- progress ---------------------------------------------------------------------------------
class Progress:
    """A progress bar on stderr when it is a terminal (tqdm's if installed, else a plain one);
    silent otherwise. write() prints a line above the bar."""

    def __init__(self, total: int, enabled: bool | None = None) -> None:
        self.total, self.done = total, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._tqdm = None
        self._start = time.monotonic()
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                self._draw()
            else:
                self._tqdm = tqdm(total=total, unit="round", leave=False, file=sys.stderr)

    def tick(self) -> None:
        self.done += 1
        if self._tqdm is not None:
            self._tqdm.update(1)
        elif self.enabled:
            self._draw()

    def write(self, text: str) -> None:
        if self._tqdm is not None:
            self._tqdm.write(text, file=sys.stdout)
            return
        if self.enabled:
            sys.stderr.write("\r\033[K")
        print(text, flush=True)
        if self.enabled:
            self._draw()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def _draw(self) -> None:
        width = 30
        filled = width * self.done // max(1, self.total)
        elapsed = time.monotonic() - self._start
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} rounds "
            f"{elapsed:.0f} s"
        )
        sys.stderr.flush()


# -- text -------------------------------------------------------------------------------------
def header(doc: dict) -> list[str]:
    m = doc["machine"]
    cfg = m["minidl"]
    lines = [
        f"minidl-bench {doc['size']}  {doc['created']}",
        f"CPU: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['cores']} cores used by default;"
        f" {m['os']}, Python {m['python']}",
        f"minidl {cfg['version']}: ISA path {cfg['isa']}, "
        f"thread pool {'on' if cfg['thread_pool'] else 'OFF'}, {cfg['compiler']}",
    ]
    peaks = doc["peaks"]
    if "absent" in peaks:
        lines.append(f"FMA peak: not measured: {peaks['absent']}")
    else:
        lines.append(
            "FMA peak, 1 thread, float32: "
            + ", ".join(f"{isa} {g:.1f} GFLOP/s" for isa, g in peaks.items())
            + "; 'peak' = minidl's figure / (peak of its ISA x threads)"
        )
    for engine in REFERENCES:
        hellos = doc["engines"].get(engine)
        if not hellos:
            continue
        hello = next(iter(hellos.values()))
        if "version" in hello:
            info = hello.get("info", {})
            extra = f" ({info['blas']})" if "blas" in info else ""
            lines.append(f"reference {engine} {hello['version']}{extra}, own child process")
        else:
            lines.append(
                f"reference {engine}: absent ({hello.get('absent') or hello.get('error')})"
            )
    s = doc["settings"]
    lines.append(
        f"each figure: best (median) of {s['rounds']} samples >= {s['min_sample_s'] * 1e3:g} ms "
        f"after {s['warmup']} warm-up call(s), engines interleaved; ratio = reference time / "
        "minidl time (> 1: minidl faster)"
    )
    return lines


def _value(unit: str, value: float) -> str:
    if unit == "us":
        return f"{value:.0f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def column_header() -> str:
    refs = "".join(f"{e:>12}" for e in REFERENCES)
    return f"{'case':<{NAME_WIDTH}} {'thr':>3} {'minidl best (median)':>28} {'peak':>5}{refs}"


def line_text(line: dict) -> str:
    ours = line["engines"].get("minidl", {})
    unit = line["unit"]
    stats = ours.get("busy", ours) if line["busy"] else ours
    if "value_best" in stats:
        flag = " !" if stats["spread"] > BUSY_SPREAD else "  "
        cell = (
            f"{_value(unit, stats['value_best'])} ({_value(unit, stats['value_median'])}) "
            f"{unit}{flag}"
        )
    else:
        cell = "absent" if "absent" in ours else "error"
    peak = f"{100 * line['peak_fraction']:.0f}%" if line.get("peak_fraction") else "-"
    key = "busy_ratios" if line["busy"] else "ratios"
    refs = ""
    for engine in REFERENCES:
        entry = line["engines"].get(engine)
        if engine in line[key]:
            text = f"{line[key][engine]:.2f}x"
        elif entry is None:
            text = "-"
        elif "absent" in entry:
            text = "absent"
        else:
            text = "error"
        refs += f"{text:>12}"
    name = line["case"]
    name = name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "~"
    out = f"{name:<{NAME_WIDTH}} {line['threads']:>3} {cell:>28} {peak:>5}{refs}"
    if line["busy"] and "value_best" in ours:
        # Throughput beside a busy process over throughput alone, both sampled interleaved.
        out += f"   busy/idle {ours['busy']['value_best'] / ours['value_best']:.2f}"
    return out


def problems(doc: dict) -> list[str]:
    """Errors of engines on cases, and warnings when the figures say the machine was busy."""
    out = []
    absent: dict[tuple[str, str], list[str]] = {}
    for line in doc["results"]:
        for engine, entry in line["engines"].items():
            if "error" in entry:
                out.append(
                    f"error: {engine} on {line['case']} ({line['threads']}t): {entry['error']}"
                )
            hello = doc["engines"].get(engine, {}).get(str(line["threads"]), {})
            if "absent" in entry and "absent" not in hello:  # absent for this case only
                cases = absent.setdefault((engine, entry["absent"]), [])
                if line["case"] not in cases:
                    cases.append(line["case"])
    for (engine, why), cases in absent.items():
        why = why if len(why) <= 160 else why[:157] + "..."
        out.append(f"note: {engine} absent on {', '.join(cases)}: {why}")
    over = [r["case"] for r in doc["results"] if (r.get("peak_fraction") or 0) > 1]
    if over:
        out.append(
            f"warning: {len(over)} figure(s) above 100% of the FMA peak ({over[0]}, ...): the "
            "probe at the start read low (the machine was busy then); fractions are unreliable"
        )
    spread = [
        (line, engine)
        for line in doc["results"]
        for engine, entry in line["engines"].items()
        if entry.get("spread", 0) > BUSY_SPREAD
    ]
    load = doc["load"]
    busiest = max(doc["threads"])
    # The load average counts this run's own threads: what exceeds them came from elsewhere.
    others = max(load["before"] or 0.0, (load["after"] or 0.0) - busiest if load["after"] else 0.0)
    if spread or others > 0.5:
        out.append(
            f"warning: the machine looks busy: {len(spread)} figure(s) spread more than "
            f"{BUSY_SPREAD:.0%} between best and median (marked !), 1-min load {_load(load['before'])}"
            f" before and {_load(load['after'])} after (this run used up to {busiest} thread(s)). "
            "Best figures and ratios hold better than medians; rerun on a quiet machine to be sure."
        )
    return out


def _load(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}"


# -- files ------------------------------------------------------------------------------------
def write_json(doc: dict, path: str) -> None:
    """Write doc at path atomically (a failure leaves no partial file)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".minidl-bench-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def require_matplotlib() -> None:
    """ImportError with what to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "minidl-bench --plot needs matplotlib: pip install 'minidl[plot]' (or matplotlib)"
        ) from exc


def plot(doc: dict, path: str) -> None:
    """Two panels: minidl's throughput against threads per case (relative to 1 thread, so that
    cases of different units share an axis), and each reference's time over minidl's per case
    and thread count (> 1: minidl faster)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [r for r in doc["results"] if "value_best" in r["engines"].get("minidl", {})]
    names = list(dict.fromkeys(r["case"] for r in lines))
    threads = sorted({r["threads"] for r in lines})
    fig, (left, right) = plt.subplots(
        1,
        2,
        figsize=(14, max(4.0, 0.28 * len(names) + 1.5)),
        gridspec_kw={"width_ratios": [1, 1.4]},
    )
    for name in names:
        by_t = {r["threads"]: r for r in lines if r["case"] == name}
        ts = [t for t in threads if t in by_t]

        def speed(r):  # throughput: higher is better, whatever the unit
            best = r["engines"]["minidl"]["min_s"]
            return 1.0 / best

        base = speed(by_t[ts[0]])
        left.plot(ts, [speed(by_t[t]) / base for t in ts], marker="o", label=name[:40])
    left.plot(threads, [t / threads[0] for t in threads], "k:", label="linear")
    left.set_xlabel("threads")
    left.set_ylabel(f"minidl throughput / at {threads[0]} thread(s)")
    left.set_xticks(threads)
    left.set_title("thread scaling")
    left.legend(fontsize=6, loc="upper left")

    refs = [e for e in REFERENCES if any(e in r["ratios"] for r in lines)]
    bars = [(e, t) for e in refs for t in threads]
    height = 0.8 / max(1, len(bars))
    for i, (engine, t) in enumerate(bars):
        ys, xs = [], []
        for j, name in enumerate(names):
            r = next((r for r in lines if r["case"] == name and r["threads"] == t), None)
            key = "busy_ratios" if r is not None and r["busy"] else "ratios"
            if r is not None and engine in r[key]:
                ys.append(j + i * height)
                xs.append(r[key][engine])
        right.barh(ys, xs, height=height, label=f"vs {engine}, {t} thread(s)")
    right.axvline(1.0, color="k", lw=0.8)
    right.set_xscale("log")
    right.set_yticks([j + 0.4 - height / 2 for j in range(len(names))])
    right.set_yticklabels([n[:48] for n in names], fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("reference time / minidl time (> 1: minidl faster)")
    right.set_title("ratio to each reference")
    right.legend(fontsize=7)
    m = doc["machine"]
    fig.suptitle(f"minidl-bench {doc['size']}: {m['cpu']}, {m['cores']} cores, {doc['created']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
