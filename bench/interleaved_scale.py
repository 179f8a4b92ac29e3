#!/usr/bin/env python3
"""Interleaved mode at scale: --clients interleaved clients, each from its own address (spoofed
from --source-cidr by meridian-loadgen's AF_XDP transport, the replies taken off the client's
link), at --rate for --duration seconds, against each server of --servers in turn (meridian's
backends and chronyd, same namespaces and pinning as bench/compare.py; needs root).

Reported per server: requests sent, valid replies, the interleaved requests, and the share of
them answered in interleaved mode (RFC 9769: the true transmit time of the client's previous
reply), after --warmup seconds in which every client makes its first exchanges.

usage: bench/interleaved_scale.py [--servers xdp,udp,chronyd] [--clients N] [--rate N]
                                  [--duration S] [--warmup S] [--out FILE]
"""

import argparse
import importlib.util
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("compare", os.path.join(HERE, "compare.py"))
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="xdp,udp,chronyd")
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=200000)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--source-cidr", default="10.204.0.0/15")
    compare.add_common_args(ap)
    opts = ap.parse_args()
    workdir, topo = compare.spoofing_netns(opts, "bench/interleaved_scale.py", opts.source_cidr)
    rows = []
    try:
        for name in opts.servers.split(","):
            compare.log(f"== {name}")
            srv = compare.ServerProc(name, topo, opts.server_core, compare.PORT)
            try:
                d, _ = compare.loadgen(topo, opts.gen_core, [
                    "--target", f"{topo.server_ip}:{compare.PORT}", "--transport", "xdp",
                    "--interface", f"{compare.NS_NAME}-c0", "--source-cidr", opts.source_cidr,
                    "--clients", str(opts.clients), "--interleaved", "--rate", str(opts.rate),
                    "--duration", str(opts.duration), "--warmup", str(opts.warmup),
                    "--timeout-ms", "500", "--max-loss", "1"],
                    os.path.join(workdir, f"{name}.json"))
            finally:
                srv.stop()
            r = d["runs"][0]
            rows.append((name, r))
    finally:
        topo.close()
    out = [
        f"Command: `bench/interleaved_scale.py {' '.join(sys.argv[1:])}`  ",
        f"{opts.clients:,} interleaved clients (own addresses in {opts.source_cidr}), {opts.rate:,} req/s offered, "
        f"{opts.duration:g} s measured after {opts.warmup:g} s of warm-up; server on core {opts.server_core}, "
        f"generator on core {opts.gen_core}.  ",
        f"Machine: {compare.machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| server | sent | valid replies | interleaved requests | answered | answered interleaved | share of answered |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        asked = r.get("interleaved_requests", 0)
        answered = r.get("interleaved_requests_answered", 0)
        inter = r.get("interleaved_replies", 0)
        share = f"{inter / answered * 100:.2f} %" if answered else "–"
        out.append(f"| {name} | {r['sent']:,} | {r['valid']:,} | {asked:,} | {answered:,} | {inter:,} | {share} |")
    text = "\n".join(out) + "\n"
    print(text)
    if opts.out:
        with open(opts.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
