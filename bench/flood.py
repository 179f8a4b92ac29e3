#!/usr/bin/env python3
"""A spoofed flood against meridian, side by side per backend and per defence: what the server
spends on each flooded datagram, and what a legitimate client still gets.

For each backend (--backends) and each scenario, in one run and in the same two namespaces as
bench/compare.py (scripts/netns.sh; needs root):

  limited  the flood's sources are over the rate limit (`[rate-limit]`: 2^-2 s, burst 8;
           200,000 req/s from 20,000 addresses is 10/s each, 2.5 times the limit);
  denied   the flood's prefix is denied with `deny-action = "drop"` (the user-space drop);
  kod      the same, denied with KoD DENY.

The flood is meridian-loadgen's AF_XDP transport sending from --flood-clients spoofed addresses
of --flood-cidr (routed back to the client namespace, where the generator takes the replies
off the link) at --flood-rate for --duration seconds. Beside it, a legitimate client (the
socket generator, from the client namespace's own address, on a second server port) asks at
--legit-rate (under the limit). Reported per scenario: the datagrams meridian received, the
server process's CPU and the whole machine's CPU per datagram, how the flood was disposed of
(answered, KoDs, drops), and the legitimate client's answered fraction.

Traffic stays in the namespaces; servers are stopped by PID; the namespaces are removed at the
end.

usage: bench/flood.py [--backends udp,xdp] [--scenarios limited,denied,kod] [--duration S]
                      [--flood-rate N] [--flood-clients N] [--legit-rate N] [--out FILE]
"""

import argparse
import importlib.util
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("compare", os.path.join(HERE, "compare.py"))
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)

SCENARIOS = {
    "limited": "[rate-limit]\nenabled = true\ninterval = -2\nburst = 8\nleak = 2\nkod = true\n",
    "denied": '[access]\ndeny = ["{cidr}"]\ndeny-action = "drop"\n',
    "kod": '[access]\ndeny = ["{cidr}"]\ndeny-action = "kod"\n',
}


def final_report(path):
    """The counters report meridian prints at exit (the last JSON line of its output)."""
    with open(path) as f:
        lines = [l for l in f if l.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def run(backend, scenario, topo, opts, workdir):
    port = compare.PORT
    legit_port = port + 1
    addr = topo.server_ip
    config = SCENARIOS[scenario].format(cidr=opts.flood_cidr)
    srv = compare.ServerProc(backend, topo, opts.server_core, port, config_text=config,
                             extra_args=["--listen", f"{addr}:{legit_port}"])
    name = f"{backend}-{scenario}"
    try:
        legit = {}

        def legit_client():
            d, _ = compare.loadgen(topo, opts.gen_core, [
                "--target", f"{addr}:{legit_port}", "--clients", "1", "--rate", str(opts.legit_rate),
                "--duration", str(opts.duration), "--timeout-ms", "500", "--max-loss", "1"],
                os.path.join(workdir, f"{name}-legit.json"))
            legit.update(d["runs"][0])

        hz = os.sysconf("SC_CLK_TCK")
        busy0, srv0 = compare.proc_stat_busy(), srv.cpu()
        t = threading.Thread(target=legit_client)
        t.start()
        d, _ = compare.loadgen(topo, opts.gen_core, [
            "--target", f"{addr}:{port}", "--transport", "xdp", "--interface", f"{compare.NS_NAME}-c0",
            "--source-cidr", opts.flood_cidr, "--clients", str(opts.flood_clients),
            "--rate", str(opts.flood_rate), "--duration", str(opts.duration),
            "--timeout-ms", "200", "--max-loss", "1"],
            os.path.join(workdir, f"{name}-flood.json"))
        t.join()
        busy1, srv1 = compare.proc_stat_busy(), srv.cpu()
    finally:
        srv.stop()
    rep = final_report(os.path.join(srv.tmp, "server.log")).get("total", {})
    flood = d["runs"][0]
    received = max(rep.get("received", 0), 1)
    dropped = rep.get("dropped", {})
    return {
        "name": name,
        "sent": flood["sent"],
        "received": rep.get("received", 0),
        "answered": rep.get("answered", 0),
        "kods": rep.get("kod_rate", 0) + rep.get("kod_deny", 0),
        "limited": dropped.get("rate_limited", 0),
        "denied": dropped.get("denied", 0),
        "server_cpu_us": (srv1 - srv0) / hz / received * 1e6,
        "machine_cpu_us": (busy1["cpu"] - busy0["cpu"]) / hz / received * 1e6,
        "legit_sent": legit.get("sent", 0),
        "legit_answered": legit.get("received", 0),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="udp,xdp")
    ap.add_argument("--scenarios", default="limited,denied,kod")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--flood-rate", type=int, default=200000)
    ap.add_argument("--flood-clients", type=int, default=20000)
    ap.add_argument("--flood-cidr", default="10.204.0.0/15")
    ap.add_argument("--legit-rate", type=int, default=2)
    compare.add_common_args(ap)
    opts = ap.parse_args()
    workdir, topo = compare.spoofing_netns(opts, "bench/flood.py", opts.flood_cidr)
    results = []
    try:
        for backend in opts.backends.split(","):
            for scenario in opts.scenarios.split(","):
                compare.log(f"== {backend} {scenario}")
                results.append(run(backend, scenario, topo, opts, workdir))
    finally:
        topo.close()
    out = [
        f"Command: `bench/flood.py {' '.join(sys.argv[1:])}`  ",
        f"Flood: {opts.flood_rate:,} req/s offered from {opts.flood_clients:,} spoofed addresses of "
        f"{opts.flood_cidr}, {opts.duration:g} s; legitimate client: {opts.legit_rate} req/s from "
        f"10.201.0.2; server pinned to core {opts.server_core}, generators to core {opts.gen_core}.  ",
        f"Machine: {compare.machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| backend, defence | flood sent | meridian received | answered (of them KoD) | limited / denied drops "
        "| server CPU / datagram (µs) | machine CPU / datagram (µs) | legitimate client answered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        out.append(
            f"| {r['name']} | {r['sent']:,} | {r['received']:,} | {r['answered']:,} ({r['kods']:,}) "
            f"| {r['limited']:,} / {r['denied']:,} | {r['server_cpu_us']:.2f} | {r['machine_cpu_us']:.2f} "
            f"| {r['legit_answered']}/{r['legit_sent']} |")
    text = "\n".join(out) + "\n"
    print(text)
    if opts.out:
        with open(opts.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
