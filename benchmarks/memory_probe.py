"""Peak memory of a process, phase by phase, as benchmarks/scale.py's stages measure it (Linux /proc).

VmHWM is exact but counts mapped file pages too; RssAnon (heap, arrays) and RssFile are sampled every 20 ms by
a thread. Each phase resets VmHWM (clear_refs), so its figures are its own.
"""
from __future__ import annotations

import threading

MB = 2 ** 20


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _rollup() -> dict[str, float]:
    try:
        with open("/proc/self/smaps_rollup") as f:
            rows = [line.split() for line in f if line.strip().endswith("kB")]
        return {r[0].rstrip(":"): round(int(r[1]) / 1024, 1) for r in rows
                if r[0].rstrip(":") in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Pss_Shmem", "Anonymous")}
    except OSError:
        return {}


class Memory:
    """Per-phase peaks: VmHWM (reset at each phase with clear_refs) and RssAnon / RssFile sampled every 20 ms."""

    def __init__(self, limit_bytes: float, on_limit):
        self.limit, self.on_limit, self.name = limit_bytes, on_limit, "imports"
        self.phases: dict[str, dict] = {}
        self.baseline = _status()
        self._new("imports")
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _new(self, name: str) -> None:
        s = _status()
        self.name, self.current = name, {"anon": s.get("RssAnon", 0), "file": s.get("RssFile", 0), "rss": s["VmRSS"]}

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            s, c = _status(), self.current
            c["anon"], c["file"], c["rss"] = (max(c["anon"], s.get("RssAnon", 0)), max(c["file"], s.get("RssFile", 0)),
                                              max(c["rss"], s["VmRSS"]))
            if s["VmRSS"] > self.limit:
                self.on_limit(self, s["VmRSS"])

    def _close(self) -> None:
        c = self.current
        self.phases[self.name] = {"hwm_mb": round(_status()["VmHWM"] / MB, 1),
                                  "anon_peak_mb": round(c["anon"] / MB, 1), "file_peak_mb": round(c["file"] / MB, 1),
                                  "rss_peak_sampled_mb": round(c["rss"] / MB, 1)}

    def phase(self, name: str) -> None:
        self._close()
        if not self.phases.get("_reset_failed"):
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # VmHWM := current RSS, so each phase's VmHWM is its own
            except OSError:
                self.phases["_reset_failed"] = True
        self._new(name)

    def finish(self) -> dict:
        self._close()
        self._stop.set()
        phases = {k: v for k, v in self.phases.items() if isinstance(v, dict)}
        return {"peak_rss_mb": max(v["hwm_mb"] for v in phases.values()),
                "peak_anon_mb": max(v["anon_peak_mb"] for v in phases.values()),
                "peak_file_mb": max(v["file_peak_mb"] for v in phases.values()),
                "baseline_anon_mb": phases["imports"]["anon_peak_mb"], "phases": phases,
                "end_smaps_rollup_mb": _rollup()}
