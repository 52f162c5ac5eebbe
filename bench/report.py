"""Reads what bench/run's parts wrote (CSV, JSON) and turns it into the key-ratio line, the plots
(matplotlib, Agg) and the markdown report (docs/benchmarks.md for a full run).

  load(dir) -> data; key_line(data) -> str; plots(data, img_dir) -> [files];
  write_markdown(data, path, img_dir, with_plots); write_control_csv(data, dir)

Also runnable alone, to redo plots and report from existing results without measuring again:
  /usr/bin/python3 bench/report.py bench/results [--img-dir docs/bench --md docs/benchmarks.md]
"""

import csv
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Targets of issue 7 (bench/README.md).
T_EST_FLOOR = 3.0     # established-flow cost <= 3x the floor
T_EST_FLAT = 0.20     # ... and flat within 20% from 1 to 100k services
T_VIP_DIRECT = 1.10   # new-connection latency through a ClusterIP <= 1.1x direct
T_VIP_IPT = 0.50      # at 10k services <= 0.5x the iptables rules' latency
T_PROGRAM = 10.0      # 10k services programmed >= 10x faster than iptables-restore

CASE_LABEL = {
    "pass_tc": "not a service (tc)",
    "clusterip_first": "ClusterIP first packet",
    "clusterip_first_spread": "ClusterIP first, any service",
    "clusterip_established": "ClusterIP established",
    "clusterip_reply": "ClusterIP reply",
    "pass_xdp": "not a service (XDP)",
    "nodeport_local_first": "NodePort local, first",
    "nodeport_local_established": "NodePort local, established",
    "nodeport_remote_first": "NodePort remote, first",
    "nodeport_remote_established": "NodePort remote, established",
}
VARIANT_LABEL = {"direct": "pod address (limit)", "sluice": "sluice ClusterIP",
                 "iptables": "kube-proxy iptables", "nftables": "kube-proxy nftables",
                 "direct2": "pod address again (A/A control)"}
VARIANT_COLOR = {"direct": "#7f7f7f", "sluice": "#1f77b4", "iptables": "#d62728", "nftables": "#ff7f0e",
                 "direct2": "#c7c7c7"}


def n_label(n):
    n = int(n)
    if n >= 1000 and n % 1000 == 0:
        return "%dk" % (n // 1000)
    return str(n)


def svcs(n):
    return "%s service%s" % (n_label(n), "" if int(n) == 1 else "s")


def _num(v):
    if v in (None, "", "None"):
        return None
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in str(v) else f


def _read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def load(out_dir):
    d = {"dir": out_dir, "meta": {}, "dp": _read_csv(os.path.join(out_dir, "datapath.csv")),
         "net": _read_csv(os.path.join(out_dir, "netns.csv")), "cp": {},
         "net_rt": _read_csv(os.path.join(out_dir, "netns_runtime.csv")),
         "progs": _read_csv(os.path.join(out_dir, "datapath_progs.csv"))}
    p = os.path.join(out_dir, "run.json")
    if os.path.exists(p):
        with open(p) as fh:
            d["meta"] = json.load(fh)
    for label in ("1k", "10k"):
        p = os.path.join(out_dir, "control_plane_%s.json" % label)
        if os.path.exists(p):
            with open(p) as fh:
                d["cp"][label] = json.load(fh)
    return d


# ------------------------------------------------------------------------------------- lookups
def dp_row(d, case, services, backends, method="single"):
    for r in d["dp"]:
        if (r["case"], r["services"], r["backends"], r["method"]) == (case, services, backends, method):
            return r
    return None


def dp_services(d):
    return sorted({r["services"] for r in d["dp"] if r["services"]})  # 0: the reference programs


def dp_backends(d):
    return sorted({r["backends"] for r in d["dp"] if r["services"]})


def net_row(d, services, variant, mode, concurrency=None):
    for r in d["net"]:
        if (r["services"], r["variant"], r["mode"]) == (services, variant, mode) and \
                (concurrency is None or r["concurrency"] == concurrency):
            return r
    return None


def net_services(d):
    return sorted({r["services"] for r in d["net"]})


def net_conc(d):
    c = sorted({r["concurrency"] for r in d["net"] if r["mode"] == "rr"})
    return c[-1] if c else None


def est_ratio(d, services, backends=1):
    r = dp_row(d, "clusterip_established", services, backends)
    return r["ratio"] if r else None


def cp_ipt(d, label):
    cp = d["cp"].get(label)
    return (cp or {}).get("iptables", {}).get("legacy") if cp else None


# ----------------------------------------------------------------------------------- key ratios
def key_ratios(d):
    k = []
    S = dp_services(d)
    if S:
        lo, hi = S[0], S[-1]
        ests = [r["ratio"] for r in d["dp"] if r["case"] == "clusterip_established" and r["method"] == "single"]
        k.append(("est_x_floor_max", max(ests)))
        a, b = est_ratio(d, lo), est_ratio(d, hi)
        if a and b:
            k.append(("est_%s_over_%s" % (n_label(hi), n_label(lo)), b / a))
        for case, name in (("clusterip_first", "first"), ("clusterip_reply", "reply"),
                           ("nodeport_local_established", "np_local_est"),
                           ("nodeport_remote_first", "np_remote_first"),
                           ("nodeport_remote_established", "np_remote_est"), ("pass_tc", "pass_tc")):
            r = dp_row(d, case, hi, 1)
            if r:
                k.append(("%s_x_floor_%s" % (name, n_label(hi)), r["ratio"]))
    NS = net_services(d)
    if NS:
        hi = NS[-1]
        worst = max((r["p50_us_vs_direct"] for r in d["net"]
                     if r["variant"] == "sluice" and r["mode"] == "crr" and r["concurrency"] == 1), default=None)
        k.append(("vip_over_direct_p50_max", worst))
        for ref, name in (("iptables", "ipt"), ("nftables", "nft")):
            s, o = net_row(d, hi, "sluice", "crr", 1), net_row(d, hi, ref, "crr", 1)
            if s and o:
                k.append(("vip_over_%s_p50_%s" % (name, n_label(hi)), s["p50_us"] / o["p50_us"]))
        conc = net_conc(d)
        for mode in ("crr", "rr"):
            r = net_row(d, hi, "sluice", mode, conc)
            if r:
                k.append(("%s_rate_vip_over_direct_%s" % (mode, n_label(hi)), r["rate_vs_direct"]))
        r = net_row(d, hi, "sluice", "crr", conc)
        if r and r.get("rate_vs_iptables"):
            k.append(("crr_rate_vip_over_ipt_%s" % n_label(hi), r["rate_vs_iptables"]))
    for label in ("1k", "10k"):
        cp, ipt = d["cp"].get(label), cp_ipt(d, label)
        if ipt:
            k.append(("restore_over_sluice_%s" % label, ipt["ratio_full_restore_over_sluice_cold"]))
            k.append(("restore_over_mapwrite_%s" % label, ipt["ratio_full_restore_over_sluice_programming"]))
        if cp:
            k.append(("event_p99_ms_%s" % label, cp["sluice"]["pooled_event"]["latency_us"]["p99"] / 1e3))
            k.append(("agent_peak_rss_mib_%s" % label, cp["sluice"]["hwm_end_kb"] / 1024))
    return k


def fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "%.3g" % v if abs(v) < 100 else "%.0f" % v
    return str(v)


def key_line(d):
    return " ".join("%s=%s" % (name, fmt(v)) for name, v in key_ratios(d))


# ----------------------------------------------------------------------------------- control CSV
def write_control_csv(d, out_dir):
    rows = []
    for label, cp in sorted(d["cp"].items(), key=lambda kv: kv[1]["cluster"]["services"]):
        s, ipt = cp["sluice"], cp_ipt(d, label) or {}
        pe = s["pooled_event"]["latency_us"]
        rows.append({"services": cp["cluster"]["services"], "endpoints": cp["cluster"]["endpoints"],
                     "frontends": cp["cluster"]["frontends"], "backends": cp["cluster"]["backends"],
                     "sluice_cold_start_to_programmed_ms": s["cold_start_to_programmed_ms"],
                     "sluice_map_programming_ms": s["cold_programming_took_ms"],
                     "sluice_restart_ms": s["restart_start_to_programmed_ms"],
                     "sluice_event_p50_us": pe["p50"], "sluice_event_p99_us": pe["p99"],
                     "sluice_peak_rss_kb": s["hwm_end_kb"],
                     "iptables_rules": ipt.get("rules"), "iptables_full_restore_ms": ipt.get("full_restore_ms"),
                     "iptables_partial_restore_p50_us": ipt.get("partial_p50_us"),
                     "iptables_resync_ms": ipt.get("resync_ms"),
                     "ratio_restore_over_sluice_cold": ipt.get("ratio_full_restore_over_sluice_cold"),
                     "ratio_restore_over_map_programming": ipt.get("ratio_full_restore_over_sluice_programming"),
                     "ratio_partial_over_event_p50": ipt.get("ratio_partial_p50_over_sluice_event_p50")})
    if rows:
        with open(os.path.join(out_dir, "control_plane.csv"), "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    d["cp_rows"] = rows


# ---------------------------------------------------------------------------------------- plots
def plots(d, img_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110})
    os.makedirs(img_dir, exist_ok=True)
    files = []

    def save(fig, name):
        path = os.path.join(img_dir, name)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        files.append(path)

    S = dp_services(d)
    if S:
        cases = [c for c in CASE_LABEL if dp_row(d, c, S[0], 1)]
        # 1. cost / floor per case, one bar per service count (1 backend)
        fig, ax = plt.subplots(figsize=(9, 4.2))
        w = 0.8 / len(S)
        blues = plt.cm.Blues([0.45 + 0.5 * i / max(1, len(S) - 1) for i in range(len(S))])
        for i, n in enumerate(S):
            ys = [dp_row(d, c, n, 1)["ratio"] if dp_row(d, c, n, 1) else 0 for c in cases]
            lo = [y - dp_row(d, c, n, 1)["ratio_p25"] if dp_row(d, c, n, 1) else 0 for c, y in zip(cases, ys)]
            hi = [dp_row(d, c, n, 1)["ratio_p75"] - y if dp_row(d, c, n, 1) else 0 for c, y in zip(cases, ys)]
            xs = [j + (i - (len(S) - 1) / 2) * w for j in range(len(cases))]
            ax.bar(xs, ys, w, color=blues[i], label=svcs(n), yerr=[lo, hi],
                   error_kw={"elinewidth": 0.8, "capsize": 1.5})
        ax.axhline(T_EST_FLOOR, color="#d62728", ls="--", lw=1)
        ax.text(-0.45, T_EST_FLOOR, "target for established: %gx" % T_EST_FLOOR, color="#d62728",
                va="bottom", ha="left", fontsize=8)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([CASE_LABEL[c] for c in cases], rotation=25, ha="right")
        ax.set_ylabel("cost per packet / empty program of the same hook")
        ax.set_title("Datapath cost per packet, relative to the floor (BPF_PROG_TEST_RUN, 1 backend per service)")
        ax.legend(frameon=False)
        save(fig, "datapath_ratio.png")

        # 2. ns per packet vs number of services
        fig, ax = plt.subplots(figsize=(8.5, 4.6))
        xs = list(range(len(S)))
        for c in cases:
            ys = [dp_row(d, c, n, 1)["sluice_ns"] for n in S]
            ax.plot(xs, ys, marker="o", label=CASE_LABEL[c])
            ax.text(xs[-1] + 0.05, ys[-1], " %.0f" % ys[-1], va="center", fontsize=7)
        for hook, case in (("tc", "pass_tc"), ("XDP", "pass_xdp")):
            if dp_row(d, case, S[0], 1):
                ax.plot(xs, [dp_row(d, case, n, 1)["floor_ns"] for n in S], ls=":", color="k",
                        marker="x" if hook == "XDP" else "+", label="floor (empty %s program)" % hook)
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([n_label(n) for n in S])
        ax.set_xlim(-0.2, len(S) - 0.5)
        ax.set_xlabel("services in the maps")
        ax.set_ylabel("ns per packet, one test run each (log scale)")
        ax.set_title("Datapath cost per packet against the number of services (1 backend each)")
        ax.legend(frameon=False, fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5))
        save(fig, "datapath_scale.png")

        # 3. backends per service (measured services; the others keep 1)
        B = dp_backends(d)
        if len(B) > 1:
            n = S[-1]
            fig, ax = plt.subplots(figsize=(9, 3.8))
            w = 0.8 / len(B)
            greens = plt.cm.Greens([0.45 + 0.5 * i / max(1, len(B) - 1) for i in range(len(B))])
            for i, b in enumerate(B):
                ys = [dp_row(d, c, n, b)["ratio"] if dp_row(d, c, n, b) else 0 for c in cases]
                xs = [j + (i - (len(B) - 1) / 2) * w for j in range(len(cases))]
                ax.bar(xs, ys, w, color=greens[i], label="%s backends per measured service" % n_label(b))
            ax.set_xticks(range(len(cases)))
            ax.set_xticklabels([CASE_LABEL[c] for c in cases], rotation=25, ha="right")
            ax.set_ylabel("cost / floor")
            ax.set_title("Backends per service, at %s services" % n_label(n))
            ax.legend(frameon=False)
            save(fig, "datapath_backends.png")

        # 4. cold (one run per packet) against warm (repeat on an identity flow)
        n = S[-1]
        wcases = [c for c in cases if dp_row(d, c, n, 1, "repeat")]
        if wcases:
            fig, ax = plt.subplots(figsize=(8.5, 3.8))
            ys = range(len(wcases))
            cold = [dp_row(d, c, n, 1)["sluice_ns"] for c in wcases]
            warm = [dp_row(d, c, n, 1, "repeat")["sluice_ns"] for c in wcases]
            ax.barh([y + 0.2 for y in ys], cold, 0.4, color="#9ecae1", label="one test run per packet (cold)")
            ax.barh([y - 0.2 for y in ys], warm, 0.4, color="#08519c", label="repeat on an identity flow (warm)")
            for y, c in zip(ys, wcases):
                ax.plot([dp_row(d, c, n, 1)["floor_ns"]] * 2, [y + 0.02, y + 0.38], color="k", lw=2)
                ax.plot([dp_row(d, c, n, 1, "repeat")["floor_ns"]] * 2, [y - 0.38, y - 0.02], color="k", lw=2)
            for y, a, b in zip(ys, cold, warm):
                ax.text(a, y + 0.2, " %.0f" % a, va="center", fontsize=7)
                ax.text(b, y - 0.2, " %.0f" % b, va="center", fontsize=7)
            ax.set_yticks(list(ys))
            ax.set_yticklabels([CASE_LABEL[c] for c in wcases])
            ax.invert_yaxis()
            ax.set_xlabel("ns per packet (black tick: the empty program, measured the same way)")
            ax.set_title("Cold and warm cost per packet, %s services" % n_label(n))
            ax.set_xlim(right=max(cold) * 1.12)
            ax.legend(frameon=False, fontsize=8, loc="upper right")
            save(fig, "datapath_warm.png")

    NS = net_services(d)
    if NS:
        variants = [v for v in VARIANT_LABEL if net_row(d, NS[0], v, "crr", 1)]
        w = 0.8 / len(variants)
        # 4. new-connection latency, and what each variant adds to the pod address
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
        for i, v in enumerate(variants):
            xs = [j + (i - (len(variants) - 1) / 2) * w for j in range(len(NS))]
            p50 = [net_row(d, n, v, "crr", 1)["p50_us"] for n in NS]
            ax.bar(xs, p50, w, color=VARIANT_COLOR[v], label=VARIANT_LABEL[v])
            for x, y in zip(xs, p50):
                ax.text(x, y, "%.0f" % y, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(NS)))
        ax.set_xticklabels([svcs(n) for n in NS])
        ax.set_ylabel("connect + request + answer, p50, us")
        ax.set_title("New-connection latency (one connection at a time)")
        ax.legend(frameon=False, fontsize=8, loc="upper left")
        added = [v for v in variants if v != "direct"]
        w2 = 0.8 / len(added)
        for i, v in enumerate(added):
            xs = [j + (i - (len(added) - 1) / 2) * w2 for j in range(len(NS))]
            ys = [net_row(d, n, v, "crr", 1)["p50_us"] - net_row(d, n, "direct", "crr", 1)["p50_us"] for n in NS]
            ax2.bar(xs, ys, w2, color=VARIANT_COLOR[v], label=VARIANT_LABEL[v])
            for x, y in zip(xs, ys):
                ax2.text(x, max(y, 0), "%+.0f" % y, ha="center", va="bottom", fontsize=7)
        ax2.axhline(0, color="k", lw=0.6)
        ax2.set_xticks(range(len(NS)))
        ax2.set_xticklabels(["%s svc" % n_label(n) for n in NS])
        ax2.set_ylabel("p50 minus the pod address's p50, us")
        ax2.set_title("Added to the pod address")
        save(fig, "netns_latency.png")

        # 5. rates
        conc = net_conc(d)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        rvariants = [v for v in variants if net_row(d, NS[0], v, "rr", conc)]
        w = 0.8 / len(rvariants)
        for ax, mode, title in ((axes[0], "crr", "new connections per second"),
                                (axes[1], "rr", "requests per second on kept connections")):
            for i, v in enumerate(rvariants):
                xs = [j + (i - (len(rvariants) - 1) / 2) * w for j in range(len(NS))]
                ys = [net_row(d, n, v, mode, conc)["rate"] for n in NS]
                ax.bar(xs, ys, w, color=VARIANT_COLOR[v], label=VARIANT_LABEL[v])
            ax.set_xticks(range(len(NS)))
            ax.set_xticklabels(["%s svc" % n_label(n) for n in NS])
            ax.set_title("%s (%d in flight)" % (title, conc))
        axes[0].legend(frameon=False, fontsize=8)
        save(fig, "netns_rate.png")

    if d.get("cp_rows"):
        rows = d["cp_rows"]
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
        labels = [svcs(r["services"]) for r in rows]
        series = (("sluice: process start -> programmed", "sluice_cold_start_to_programmed_ms", "#1f77b4"),
                  ("sluice: map writes only", "sluice_map_programming_ms", "#aec7e8"),
                  ("iptables-restore of the same rules", "iptables_full_restore_ms", "#d62728"))
        w = 0.8 / len(series)
        for i, (lab, key, col) in enumerate(series):
            xs = [j + (i - (len(series) - 1) / 2) * w for j in range(len(rows))]
            ys = [r[key] or 0 for r in rows]
            ax.bar(xs, ys, w, color=col, label=lab)
            for x, y in zip(xs, ys):
                ax.text(x, y, "%.0f" % y, ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylim(10, max(r["iptables_full_restore_ms"] or r["sluice_cold_start_to_programmed_ms"] for r in rows) * 12)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels)
        ax.set_ylabel("ms (log scale)")
        ax.set_title("Programming N services (10 endpoints each)")
        ax.legend(frameon=False, fontsize=8, loc="upper left")
        series = (("sluice event -> map p50", "sluice_event_p50_us", "#1f77b4"),
                  ("sluice event -> map p99", "sluice_event_p99_us", "#aec7e8"),
                  ("iptables partial restore p50", "iptables_partial_restore_p50_us", "#d62728"))
        for i, (lab, key, col) in enumerate(series):
            xs = [j + (i - (len(series) - 1) / 2) * w for j in range(len(rows))]
            ys = [(r[key] or 0) / 1e3 for r in rows]
            ax2.bar(xs, ys, w, color=col, label=lab)
            for x, y in zip(xs, ys):
                ax2.text(x, y, ("%.0f" if y >= 100 else "%.3g") % y, ha="center", va="bottom", fontsize=7)
        ax2.set_yscale("log")
        ax2.set_ylim(top=max((r["iptables_partial_restore_p50_us"] or r["sluice_event_p99_us"]) / 1e3 for r in rows) * 12)
        ax2.set_xticks(range(len(rows)))
        ax2.set_xticklabels(labels)
        ax2.set_ylabel("ms (log scale)")
        ax2.set_title("One endpoint changes")
        ax2.legend(frameon=False, fontsize=8, loc="upper left")
        save(fig, "control_plane.png")
    return files


# ------------------------------------------------------------------------------------- markdown
def verdict(ok):
    return "not measured" if ok is None else ("**reached**" if ok else "**missed**")


def _md_table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def targets(d):
    """(target text, measured text, ok or None) for each target of the issue."""
    t = []
    S = dp_services(d)
    ests = [(r["services"], r["backends"], r["ratio"]) for r in d["dp"]
            if r["case"] == "clusterip_established" and r["method"] == "single"]
    if ests:
        worst = max(ests, key=lambda x: x[2])
        t.append(("Established-flow cost ≤ %gx the floor" % T_EST_FLOOR,
                  "ClusterIP established %.2fx (worst cell: %s, %s backends); NodePort established at XDP "
                  "%s" % (worst[2], svcs(worst[0]), n_label(worst[1]), ", ".join(
                      "%s %.2fx" % (lab, dp_row(d, c, S[-1], 1)["ratio"]) for c, lab in (
                          ("nodeport_local_established", "local"), ("nodeport_remote_established", "remote"))
                      if dp_row(d, c, S[-1], 1))),
                  worst[2] <= T_EST_FLOOR))
        a, b = est_ratio(d, S[0]), est_ratio(d, S[-1])
        if a and b:
            ns_a = dp_row(d, "clusterip_established", S[0], 1)["sluice_ns"]
            ns_b = dp_row(d, "clusterip_established", S[-1], 1)["sluice_ns"]
            t.append(("… and flat within %d%% from 1 to 100k services" % round(T_EST_FLAT * 100),
                      "%s → %s services: ratio %.2fx → %.2fx (%+.0f%%), %.0f → %.0f ns" % (
                          n_label(S[0]), n_label(S[-1]), a, b, (b / a - 1) * 100, ns_a, ns_b),
                      abs(b / a - 1) <= T_EST_FLAT))
    NS = net_services(d)
    if NS:
        vals = [(n, net_row(d, n, "sluice", "crr", 1)["p50_us_vs_direct"]) for n in NS]
        worst = max(vals, key=lambda x: x[1])
        t.append(("New-connection latency through a ClusterIP ≤ %gx direct" % T_VIP_DIRECT,
                  "p50 " + ", ".join("%.2fx at %s" % (v, n_label(n)) for n, v in vals),
                  worst[1] <= T_VIP_DIRECT))
        n10k = 10000 if 10000 in NS else None
        if n10k:
            s, o = net_row(d, n10k, "sluice", "crr", 1), net_row(d, n10k, "iptables", "crr", 1)
            r = s["p50_us"] / o["p50_us"]
            t.append(("At 10k services ≤ %gx the iptables rules' latency" % T_VIP_IPT,
                      "p50 %.0f us vs %.0f us = %.2fx (p99 %.2fx)" % (s["p50_us"], o["p50_us"], r,
                                                                     s["p99_us"] / o["p99_us"]),
                      r <= T_VIP_IPT))
        else:
            t.append(("At 10k services ≤ %gx the iptables rules' latency" % T_VIP_IPT, "not run at 10k", None))
    ipt = cp_ipt(d, "10k")
    if ipt:
        cold, mw = ipt["ratio_full_restore_over_sluice_cold"], ipt["ratio_full_restore_over_sluice_programming"]
        t.append(("10k services programmed ≥ %gx faster than iptables-restore" % T_PROGRAM,
                  "%.1fx from agent start (BPF load + list + maps), %.1fx map writes alone" % (cold, mw),
                  cold >= T_PROGRAM))
    elif d["cp"]:
        t.append(("10k services programmed ≥ %gx faster than iptables-restore" % T_PROGRAM, "not run at 10k", None))
    return t


def write_markdown(d, path, img_dir, with_plots=True):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    rel = os.path.relpath(img_dir, os.path.dirname(path) or ".")
    meta = d["meta"]
    L = []
    add = L.append

    def img(name, alt):
        if with_plots and os.path.exists(os.path.join(img_dir, name)):
            add("![%s](%s/%s)\n" % (alt, rel, name))

    add("# Benchmarks\n")
    add("sluice side by side with an empty BPF program (the floor), the pod address itself (the "
        "limit), kube-proxy's iptables and nftables rules, and `iptables-restore`. Every figure that "
        "compares is a ratio of two things measured in the same run, interleaved (A B A B), on the same "
        "machine. `sudo bench/run` reproduces all of it; `bench/README.md` has the method of each part.\n")
    wall = meta.get("wall_s", {})
    add("Run: %s, commit `%s`, kernel %s, %s CPUs, load average %s at the start and %s at the end; "
        "wall time %s (%s).%s\n" % (
            meta.get("date", "?"), meta.get("commit", "?"), meta.get("kernel", "?"), meta.get("cpus", "?"),
            " / ".join(str(x) for x in meta.get("loadavg_start", [])),
            " / ".join(str(x) for x in meta.get("loadavg_end", [])),
            "%d min %02d s" % divmod(wall.get("total", 0), 60),
            ", ".join("%s %d s" % kv for kv in wall.items() if kv[0] != "total"),
            " A quick run (`--quick`): smaller matrix, fewer rounds." if meta.get("quick") else ""))
    add("Key ratios (the last line `bench/run` prints):\n\n```\n%s\n```\n" % key_line(d))

    add("## Targets\n")
    add(_md_table(["Target", "Measured", "Verdict"], [(a, b, verdict(c)) for a, b, c in targets(d)]) + "\n")
    add("Each target is discussed with its section below.\n")

    # ---------------------------------------------------------------- datapath
    S = dp_services(d)
    if S:
        B = dp_backends(d)
        rounds = max(r["rounds"] for r in d["dp"])
        add("## Datapath cost per packet\n")
        add("`build/bin/datapath_bench` loads the datapath (private maps, nothing attached), fills the "
            "maps with batch updates and runs each case with `BPF_PROG_TEST_RUN` against an empty program "
            "of the same hook (`bench/floor.bpf.c`) on the same packets: floor, sluice, floor, sluice, "
            "then the next case; every cell of the matrix in every round (%d rounds). A packet the program "
            "rewrites gets one test run per packet (repeat would run the program again on its own output), "
            "and the figure is the kernel's duration for that run; a block's figure is the median over its "
            "runs, a case's the median over rounds. Every run's verdict and every counter are checked, "
            "and the first packets' output (addresses, ports, MACs, checksums) before the timing.\n" % rounds)
        head = ["case", "hook"] + ["%s svc: ns (floor) → ratio" % n_label(n) for n in S]
        rows = []
        for c, lab in CASE_LABEL.items():
            cells = []
            for n in S:
                r = dp_row(d, c, n, 1)
                cells.append("%.0f (%.0f) → **%.2fx**" % (r["sluice_ns"], r["floor_ns"], r["ratio"]) if r else "–")
            r0 = dp_row(d, c, S[0], 1)
            if r0:
                rows.append([lab, r0["hook"]] + cells)
            rr = dp_row(d, c, S[0], 1, "repeat")
            if rr:
                cells = []
                for n in S:
                    r = dp_row(d, c, n, 1, "repeat")
                    cells.append("%.1f (%.1f) → **%.2fx**" % (r["sluice_ns"], r["floor_ns"], r["ratio"]) if r else "–")
                rows.append([lab + ", repeat mode", r0["hook"]] + cells)
        add("One backend per measured service, median ns per packet (floor in brackets) and the ratio:\n")
        add(_md_table(head, rows) + "\n")
        img("datapath_ratio.png", "cost per packet relative to the floor")
        img("datapath_scale.png", "ns per packet against the number of services")
        if len(B) > 1:
            head = ["case"] + ["%s backends" % n_label(b) for b in B]
            rows = []
            for c, lab in CASE_LABEL.items():
                if dp_row(d, c, S[-1], B[0]):
                    rows.append([lab] + ["%.2fx" % dp_row(d, c, S[-1], b)["ratio"] if dp_row(d, c, S[-1], b)
                                         else "–" for b in B])
            add("Backends of each measured service, at %s services (ratio to the floor):\n" % n_label(S[-1]))
            add(_md_table(head, rows) + "\n")
            img("datapath_backends.png", "ratio against backends per service")
        add(datapath_notes(d))

    # ---------------------------------------------------------------- netns
    NS = net_services(d)
    if NS:
        conc = net_conc(d)
        add("## Through network namespaces\n")
        add("`bench/netns_bench.py` builds five copies of the e2e suite's routed topology (node namespace, "
            "client pod, server pod on veths), one per variant, and runs `build/bin/netbench`. Latency: one "
            "new connection at a time (connect, 64-byte request, 128-byte answer, close), the variants' "
            "connections alternating one by one in one client (A B C D E A B C D E ...). Rates: %d "
            "connections in flight (a new connection per request; kept connections), one variant at a time "
            "in short slices, the variants taking turns. Every service has 3 endpoints (addresses of the "
            "server pod); the client rotates over 64 services spread over the list, so iptables walks "
            "`KUBE-SERVICES` to the average depth. Client and servers share one CPU (so a rate is the CPU "
            "cost of a request, both ends included).\n" % conc)
        head = ["services", "variant", "latency p50 / p99 (us)", "vs direct (p50)", "vs iptables (p50)",
                "new conn/s", "req/s (kept)"]
        rows = []
        for n in NS:
            for v in VARIANT_LABEL:
                lat, crr, rr = net_row(d, n, v, "crr", 1), net_row(d, n, v, "crr", conc), net_row(d, n, v, "rr", conc)
                if not lat:
                    continue
                rows.append([n_label(n), VARIANT_LABEL[v], "%.0f / %.0f" % (lat["p50_us"], lat["p99_us"]),
                             "%.2fx" % lat["p50_us_vs_direct"], "%.2fx" % lat["p50_us_vs_iptables"],
                             "%.0f (%.2fx)" % (crr["rate"], crr["rate_vs_direct"]) if crr else "–",
                             "%.0f (%.2fx)" % (rr["rate"], rr["rate_vs_direct"]) if rr else "–"])
        add(_md_table(head, rows) + "\n")
        add("Ratios are medians of per-round ratios; rates in brackets are relative to the pod address. "
            "The A/A control is a second copy of the pod-address variant: its ratio to the first is what "
            "noise alone does to a ratio here.\n")
        if d["net_rt"]:
            add("`lb_pod_ingress` in this path, from the kernel's BPF run-time statistics over one more "
                "interleaved run (%s of JIT code):\n" % ("%.1f KiB" % (d["net_rt"][0]["bytes_jited"] / 1024)
                                                        if d["net_rt"][0].get("bytes_jited") else "?"))
            add(_md_table(["services", "ns per run", "runs per connection", "us per connection",
                           "p50 direct / sluice in that run"],
                          [(n_label(r["services"]), r["ns_per_run"], r["runs_per_connection"], r["us_per_connection"],
                            "%.0f / %.0f us" % (r["direct_p50_us"], r["sluice_p50_us"])) for r in d["net_rt"]]) + "\n")
        img("netns_latency.png", "new-connection latency")
        img("netns_rate.png", "request rates")
        add(NETNS_NOTES)

    # ---------------------------------------------------------------- control plane
    if d.get("cp_rows"):
        add("## Control plane\n")
        add("`bench/control_plane.py` (its README section has the details): sluice-agent lists a generated "
            "cluster (10 endpoints per service) from a stand-in API server and programs the maps; "
            "interleaved with `iptables-legacy-restore` of the rules kube-proxy would write for the same "
            "cluster, in a fresh network namespace.\n")
        head = ["services", "frontends / backends", "sluice: start → programmed", "of which map writes",
                "iptables-restore (rules)", "ratio", "event → map p50 / p99", "iptables partial restore p50",
                "agent peak RSS"]
        rows = []
        for r in d["cp_rows"]:
            rows.append([n_label(r["services"]), "%s / %s" % (r["frontends"], r["backends"]),
                         "%.0f ms" % r["sluice_cold_start_to_programmed_ms"],
                         "%.0f ms" % r["sluice_map_programming_ms"],
                         "%.0f ms (%s)" % (r["iptables_full_restore_ms"], r["iptables_rules"])
                         if r["iptables_full_restore_ms"] else "–",
                         "**%.1fx** (%.1fx)" % (r["ratio_restore_over_sluice_cold"], r["ratio_restore_over_map_programming"])
                         if r["ratio_restore_over_sluice_cold"] else "–",
                         "%.1f / %.1f ms" % (r["sluice_event_p50_us"] / 1e3, r["sluice_event_p99_us"] / 1e3),
                         "%.0f ms" % (r["iptables_partial_restore_p50_us"] / 1e3)
                         if r["iptables_partial_restore_p50_us"] else "–",
                         "%.1f MiB" % (r["sluice_peak_rss_kb"] / 1024)])
        add(_md_table(head, rows) + "\n")
        add("Ratio: `iptables-restore` time over sluice's time from process start (map writes alone in "
            "brackets).\n")
        img("control_plane.png", "programming N services")
        add(CONTROL_NOTES)

    add(discussion(d))
    add(LIMITS)
    with open(path, "w") as fh:
        fh.write("\n".join(L))


def _floor(d, hook, method):
    v = [r["floor_ns"] for r in d["dp"] if r["hook"] == hook and r["method"] == method and r["services"]]
    return statistics.median(v) if v else None


def _ref(d, name, method="single"):
    r = dp_row(d, name, 0, 0, method)
    return (r["sluice_ns"] - r["floor_ns"], r["floor_ns"]) if r else (None, None)


def datapath_notes(d):
    S = dp_services(d)
    fs, fr, fx = _floor(d, "tc", "single"), _floor(d, "tc", "repeat"), _floor(d, "xdp", "repeat")
    out = ["**What the floor is.** In one test run per packet the floor (%.0f ns here, tc) is the "
           "harness: the kernel reads its clock before and after the program and turns bottom halves "
           "off and on around it; the empty program itself adds nothing measurable. In repeat mode it "
           "is the loop alone (%.0f ns tc, %.0f ns XDP per iteration). The same sluice packet costs "
           "about 3x more in a single run than warm: each test-run syscall pushes part of the "
           "program's working set (the code of a large program, its map buckets, the per-CPU scratch) "
           "out of the caches, so cold is close to a packet arriving after other work, warm to a CPU "
           "forwarding a stream." % (fs, fr, fx)]
    if S:
        f1, f2 = dp_row(d, "clusterip_first", S[-1], 1), dp_row(d, "nodeport_remote_first", S[-1], 1)
        if f1 and f2:
            out.append("\n**First packets** cost %.1f µs (ClusterIP) to %.1f µs (NodePort to another node): a "
                       "new flow writes two conntrack entries into an LRU hash (an insert costs 290–610 ns "
                       "on this kind of machine, reference/performance.md §3.4), draws a random number, "
                       "reads the master entry, a slot and the backend; NodePort also asks the FIB twice "
                       "and takes an SNAT port with a socket lookup. That is the price of not repeating "
                       "any of it for the flow's later packets." % (f1["sluice_ns"] / 1e3, f2["sluice_ns"] / 1e3))
    refs = [(n, _ref(d, n), _ref(d, n, "repeat")) for n in ("ref_clock", "ref_clock_coarse", "ref_ct_lookup")]
    if refs[0][1][0] is not None:
        lab = {"ref_clock": "`bpf_ktime_get_ns()` (sluice stamps flows with it, once per packet)",
               "ref_clock_coarse": "`bpf_ktime_get_coarse_ns()`",
               "ref_ct_lookup": "one hit in an LRU hash of conntrack's key, value and size (262,144)"}
        out.append("\n**References**, measured the same way in the same rounds (added to the floor):\n")
        out.append(_md_table(["program", "one run per packet", "repeat (warm)"],
                             [(lab[n], "+%.0f ns" % c[0], "+%.1f ns" % w[0]) for n, c, w in refs]))
    if len(S) > 1:
        out.append("\nThe matrix: %s services in the maps; the measured frontends are min(S, 16) ClusterIPs "
                   "spread over them and as many NodePort frontends to local and to remote backends, with "
                   "the backends of the column; every other service has one backend. 100k frontends need "
                   "more service ids than `LB_MAX_SERVICES` (65,536) gives, so the services without "
                   "traffic share ids (bench/README.md): the maps hold what 100k services put there, "
                   "but the agent cannot program that many today." % ", ".join(n_label(n) for n in S))
    return "\n".join(out) + "\n"


NETNS_NOTES = ""
CONTROL_NOTES = ""


def discussion(d):
    S, NS = dp_services(d), net_services(d)
    out = ["## Discussion of the targets\n"]
    tg = {t[0].split(" ")[0]: t for t in targets(d)}
    if S:
        hi, lo = S[-1], S[0]
        est, estw = dp_row(d, "clusterip_established", hi, 1), dp_row(d, "clusterip_established", hi, 1, "repeat")
        pas, pasw = dp_row(d, "pass_tc", hi, 1), dp_row(d, "pass_tc", hi, 1, "repeat")
        clk, clkw = _ref(d, "ref_clock"), _ref(d, "ref_clock", "repeat")
        co, cow = _ref(d, "ref_clock_coarse"), _ref(d, "ref_clock_coarse", "repeat")
        ct, ctw = _ref(d, "ref_ct_lookup"), _ref(d, "ref_ct_lookup", "repeat")
        ok = est["ratio"] <= T_EST_FLOOR
        out.append("### Established flows: ≤ %gx the floor — %s\n" % (T_EST_FLOOR, "reached" if ok else "missed"))
        out.append("A packet of an established ClusterIP flow costs %.0f ns in one test run, %.2fx the floor of "
                   "%.0f ns, and %.0f ns warm (floor %.0f ns)." % (
                       est["sluice_ns"], est["ratio"], est["floor_ns"], estw["sluice_ns"] if estw else 0,
                       estw["floor_ns"] if estw else 0))
        if not ok and clk[0] is not None:
            both = (est["floor_ns"] + clk[0] + ct[0]) / est["floor_ns"]
            out.append(" The floor is an empty program, so the target leaves room for about %.0f ns of work "
                       "cold. Two things every conntrack-based translator does already take that: on this "
                       "machine one clock read costs +%.0f ns cold (+%.0f warm) and one conntrack-sized LRU "
                       "hit +%.0f ns cold (+%.0f warm), %.1fx the floor together before a byte is "
                       "rewritten." % (2 * est["floor_ns"], clk[0], clkw[0], ct[0], ctw[0], both))
            out.append(" The rest is what every packet pays in sluice: a packet that is not for a service "
                       "(parse, conntrack miss, services-map miss, two per-CPU counters, the per-CPU "
                       "scratch) costs %.0f ns cold and %.0f ns warm, and an established packet adds "
                       "only %.0f ns cold, %.0f ns warm to that (the rewrite: two stores and three "
                       "checksum updates)." % (pas["sluice_ns"], pasw["sluice_ns"] if pasw else 0,
                                               est["sluice_ns"] - pas["sluice_ns"],
                                               (estw["sluice_ns"] - pasw["sluice_ns"]) if estw and pasw else 0))
            out.append(" What would bring it down, cheapest first: stamping conntrack entries with "
                       "`bpf_ktime_get_coarse_ns()` (+%.0f ns cold, +%.0f warm here, against +%.0f and "
                       "+%.0f; tick resolution is plenty for a one-second refresh and timeouts of seconds "
                       "to hours, but ageing tests and the agent's GC would have to allow a tick of "
                       "slack); counting per service only on new flows; and a smaller per-CPU scratch to "
                       "clear per packet. Even with all of them one lookup and a rewrite stay above 2x an "
                       "empty program: 3x holds only against a floor that carries per-packet work a real "
                       "hook has too (driver, skb), which `BPF_PROG_TEST_RUN` does not."
                       % (co[0], cow[0], clk[0], clkw[0]))
        out.append("\n")
        a, b = est_ratio(d, lo), est_ratio(d, hi)
        if a and b:
            chg = b / a - 1
            out.append("### Flat from 1 to 100k services (±%d%%) — %s\n" % (
                round(T_EST_FLAT * 100), "reached" if abs(chg) <= T_EST_FLAT else "missed"))
            p_lo, p_hi = dp_row(d, "pass_tc", lo, 1), dp_row(d, "pass_tc", hi, 1)
            pass_note = (", which is the rise in the \"not a service\" row"
                         if p_lo and p_hi and p_hi["ratio"] > 1.1 * p_lo["ratio"] else
                         "; in this run that stayed within the noise")
            rows = []
            for c in ("clusterip_established", "clusterip_first", "pass_tc", "nodeport_remote_established",
                      "clusterip_first_spread"):
                x, y = dp_row(d, c, lo, 1), dp_row(d, c, hi, 1)
                if x and y:
                    rows.append("%s %.2fx → %.2fx (%+.0f%%)" % (CASE_LABEL[c], x["ratio"], y["ratio"],
                                                               (y["ratio"] / x["ratio"] - 1) * 100))
            out.append("From %s to %s services: %s. An established packet never reads the services map "
                       "(conntrack is keyed by the flow). The lookups that do read it (a first packet, a "
                       "packet that is not for a service) are hash lookups in a bucket array sized by "
                       "`max_entries`: no search grows with the number of services, only the chains get "
                       "longer as the map fills (at 100k services the services map is 76%% full, and a "
                       "lookup that misses, as for a packet that is not for a service, walks most of its "
                       "chain)%s. All of that holds while the traffic goes to the same few services (16 per "
                       "kind here). The last row is the exception "
                       "the table should not hide: first packets to services drawn at random from all of "
                       "them find the master entry, the slot and the backend in memory no recent packet "
                       "touched, three cache and TLB misses that grow with the maps' size, not with any "
                       "search. The 1000-backends column shows the same for backends.\n" % (
                           n_label(lo), n_label(hi), "; ".join(rows), pass_note))
    if NS:
        vals = [(n, net_row(d, n, "sluice", "crr", 1)) for n in NS]
        dirs = {n: net_row(d, n, "direct", "crr", 1) for n in NS}
        worst = max(v["p50_us_vs_direct"] for _, v in vals)
        out.append("### New-connection latency through a ClusterIP ≤ %gx direct — %s\n" % (
            T_VIP_DIRECT, "reached" if worst <= T_VIP_DIRECT else "missed"))
        aa = [net_row(d, n, "direct2", "crr", 1) for n in NS]
        aa_txt = (" The A/A control (a second copy of the pod-address variant) came out at %s." % ", ".join(
            "%.2fx" % r["p50_us_vs_direct"] for r in aa if r)) if any(aa) else ""
        out.append("p50 through sluice against straight to the pod: %s.%s" % (
            ", ".join("%.2fx at %s (%.0f vs %.0f us)" % (v["p50_us_vs_direct"], svcs(n), v["p50_us"],
                                                                 dirs[n]["p50_us"]) for n, v in vals), aa_txt))
        rt = d.get("net_rt") or []
        if rt:
            r0 = max(rt, key=lambda r: r["services"])
            cold = [x["sluice_ns"] for x in d["dp"] if x["method"] == "single" and x["services"]
                    and x["case"] in ("clusterip_established", "clusterip_reply", "pass_tc")]
            factor = r0["ns_per_run"] / statistics.median(cold) if cold else 0
            out.append(" The difference is the program itself: a connection runs `lb_pod_ingress` %.0f times "
                       "(every packet of the exchange, at the veth of the pod that sends it), and in this path "
                       "a run costs %d ns on average (the kernel's run-time statistics, %s services), %.1f us "
                       "per connection, against the %.0f–%.0f us exchange across three namespaces. That is "
                       "%.0fx what one test run per packet measured above: there the CPU "
                       "ran the same program a few microseconds earlier; here the TCP stack, the scheduler "
                       "and other processes ran in between, so the program's path through %s of JIT code, "
                       "its map buckets and per-CPU data come back from memory, and in a VM every TLB miss "
                       "is a two-level page walk (that is the likely reading; the bench measures the total, "
                       "not the misses). What would close the gap is a shorter per-packet path "
                       "(the cheaper clock, fewer per-packet counters and map touches, see the established "
                       "flows above) and, for pods, socket-level load balancing, which translates once per "
                       "connection at connect() instead of in every packet." % (
                           r0["runs_per_connection"], r0["ns_per_run"], n_label(r0["services"]),
                           r0["us_per_connection"], min(x["p50_us"] for x in dirs.values()),
                           max(x["p50_us"] for x in dirs.values()), factor,
                           "%.0f KiB" % (r0["bytes_jited"] / 1024) if r0.get("bytes_jited") else "its"))
        out.append("\n")
        if 10000 in NS:
            s, o, f = (net_row(d, 10000, v, "crr", 1) for v in ("sluice", "iptables", "nftables"))
            r = s["p50_us"] / o["p50_us"]
            o1 = net_row(d, NS[0], "iptables", "crr", 1)
            out.append("### At 10k services ≤ %gx the iptables rules' latency — %s\n" % (
                T_VIP_IPT, "reached" if r <= T_VIP_IPT else "missed"))
            dr = net_row(d, 10000, "direct", "crr", 1)
            out.append("At 10k services a new connection takes %.0f us p50 through sluice, %.0f us through "
                       "kube-proxy's iptables rules (%.0f us at %s) and %.0f us through its "
                       "nftables rules: %.2fx iptables. The first packet of every connection walks "
                       "`KUBE-SERVICES` rule by rule, half of its 10k rules on average; sluice and the "
                       "nftables verdict map look the service up once in a hash. What each adds to the "
                       "%.0f us of the pod address: sluice +%.0f us, iptables +%.0f us (%.2fx), nftables "
                       "+%.0f us." % (s["p50_us"], o["p50_us"], o1["p50_us"], svcs(NS[0]), f["p50_us"], r,
                                      dr["p50_us"], s["p50_us"] - dr["p50_us"], o["p50_us"] - dr["p50_us"],
                                      (s["p50_us"] - dr["p50_us"]) / max(1e-9, o["p50_us"] - dr["p50_us"]),
                                      f["p50_us"] - dr["p50_us"]))
            s1, o1d = net_row(d, NS[0], "sluice", "crr", 1), net_row(d, NS[0], "direct", "crr", 1)
            out.append(" At %s iptables adds +%.0f us and sluice +%.0f us: netfilter's conntrack and NAT "
                       "cost about as much per connection as sluice's program does (above); what grows "
                       "with the number of services is the rule walk." % (
                           svcs(NS[0]), o1["p50_us"] - o1d["p50_us"], s1["p50_us"] - o1d["p50_us"]))
            if r > T_VIP_IPT:
                out.append(" The ratio of whole latencies misses because the rest of the exchange (three "
                           "namespaces, two TCP stacks, the scheduler) is the larger part of all of them "
                           "and sluice's own per-packet cost is not small; the added latency is where "
                           "iptables loses.")
            out.append("\n")
    ipt = cp_ipt(d, "10k")
    if ipt:
        cp = d["cp"]["10k"]["sluice"]
        cold = ipt["ratio_full_restore_over_sluice_cold"]
        out.append("### 10k services programmed ≥ %gx faster than iptables-restore — %s\n" % (
            T_PROGRAM, "reached" if cold >= T_PROGRAM else "missed"))
        out.append("From process start — loading the BPF object, listing 10k Services and their "
                   "EndpointSlices from the stand-in API server, writing the maps — sluice takes %.0f ms; "
                   "`iptables-restore` of the same services' rules alone takes %.0f ms: %.1fx, and %.1fx "
                   "against the map writes alone (%.0f ms). The comparison flatters kube-proxy: its own "
                   "list, decode and rule generation are not counted." % (
                       cp["cold_start_to_programmed_ms"], ipt["full_restore_ms"], cold,
                       ipt["ratio_full_restore_over_sluice_programming"], cp["cold_programming_took_ms"]))
        ipt1 = cp_ipt(d, "1k")
        if ipt1:
            out.append(" At 1k services `iptables-restore` (%.0f ms) is about as fast as sluice's whole cold "
                       "start (%.0f ms: loading the object and creating the maps dominate) and %.1fx slower "
                       "than its map writes." % (ipt1["full_restore_ms"],
                                                 d["cp"]["1k"]["sluice"]["cold_start_to_programmed_ms"],
                                                 ipt1["ratio_full_restore_over_sluice_programming"]))
        if cold < T_PROGRAM:
            out.append(" Below the target, the agent's start is CPU-bound on the 2 shared vCPUs (creating "
                       "and preallocating the maps, decoding the lists; bench/README.md, \"Where the time "
                       "goes\"), while `iptables-restore` is one process; on a quiet machine the same "
                       "measurement gave 10.5x (bench/README.md).")
        out.append("\n")
    return "\n".join(out)


LIMITS = """## Limits

- One machine: 2 vCPUs shared with other builds and tests, so absolute figures move between runs
  (see the load average above); the ratios, measured side by side, move much less. Re-run
  `sudo bench/run` on the machine you care about.
- `BPF_PROG_TEST_RUN` runs the programs without a NIC, a driver or an skb's way through the
  stack: the datapath figures are the programs' own cost, not a packet rate.
- IPv4 and TCP only; no UDP, IPv6, ClientIP affinity, Maglev, source ranges or DSR in the
  datapath matrix; no NodePort from outside the node and one node in the namespace tests.
- The control-plane comparison times `iptables-restore` only, not kube-proxy's own work.
"""
def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="plots and report from bench/run's results")
    ap.add_argument("results")
    ap.add_argument("--img-dir")
    ap.add_argument("--md")
    a = ap.parse_args(argv)
    d = load(a.results)
    write_control_csv(d, a.results)
    img_dir = a.img_dir or a.results
    md = a.md or os.path.join(a.results, "report.md")
    plots(d, img_dir)
    write_markdown(d, md, img_dir)
    print(key_line(d))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
