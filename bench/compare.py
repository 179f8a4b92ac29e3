#!/usr/bin/env python3
"""Side-by-side NTP server benchmark: meridian's backends against chronyd, under the same
conditions, in one run.

Every server runs pinned to the same core (--server-core) and the load generator to another
(--gen-core). For each server, three measurements with `meridian-loadgen`:

  1. sweep:  open loop, rising offered rate; the highest rate answered with < 0.1 % loss;
  2. closed: closed loop (as fast as replies come back); replies per second;
  3. fixed:  open loop at --fixed-rate; round-trip and server residence percentiles, and CPU
             per reply: the server process's own CPU (/proc/PID/stat); everything that ran on
             the server's core (/proc/stat cpuN: the process, softirq and irq work there); and
             the whole machine's busy time (/proc/stat cpu: softirq included, and the load
             generator too, which is the same program for every server), each divided by the
             replies.

The result is a markdown table with ratios against chronyd, printed and written to --out. Its
header line names the generator's transport (--gen-transport: `mmsg`, sockets with
sendmmsg/recvmmsg; or `xdp`, meridian-loadgen's AF_XDP path on the client veth `mbench-c0`,
netns topology only). What limited each figure is marked: a sweep that stopped because the
generator could not keep its schedule (`generator_limited`) is a lower bound for the server
(‡), a sweep whose every step passed is bounded by --sweep-rates (≥); the closed-loop column
gives how busy the server's and the generator's cores were (on a veth pair part of each side's
softirq work runs on the *other* side's core: the sender's core runs the receiver's XDP/stack
work), and † marks a closed-loop figure where the generator's core was the saturated one.

Topologies: `netns` (two namespaces joined by veth, from scripts/netns.sh; needs root) or
`loopback`. Traffic never leaves this machine; servers are stopped by PID; the namespaces are
removed at the end.

A server name `BACKEND+policy` (e.g. `udp+policy`) runs that backend with 10,000 access
rules and the rate limit on, every request still served (write_policy_config); `BACKEND+notable`
runs it without the client table (and so without interleaved mode), `BACKEND+basic` with the
table but without interleaved mode (and its transmit stamps), `BACKEND+scraped` with the
management plane busy (the web page's polls, /metrics and `clients` every second, from the
client namespace, on the generator's core). Run them beside the plain backend for the
with/without ratios.

usage: bench/compare.py [--topology netns|loopback] [--servers udp,io-uring,xdp,chronyd]
                        [--duration S] [--fixed-rate N] [--sweep-rates A,B,...]
                        [--clients N] [--gen-transport mmsg|xdp] [--out FILE] [--no-build]
"""

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MERIDIAN = os.path.join(ROOT, "target", "release", "meridian")
LOADGEN = os.path.join(ROOT, "target", "release", "meridian-loadgen")
NETNS = os.path.join(ROOT, "scripts", "netns.sh")
NS_NAME = "mbench"
PORT = 12300


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def proc_stat_busy():
    """Busy jiffies (user, nice, system, irq, softirq, steal: everything but idle and iowait)
    of the whole machine and of each CPU, from /proc/stat."""
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *parts = line.split()
            vals = [int(x) for x in parts]
            busy[name] = sum(vals[:8]) - vals[3] - vals[4]
    return busy


def proc_stat_steal_total():
    """Steal and total jiffies of the whole machine (steal: time the hypervisor gave away)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    return vals[7] if len(vals) > 7 else 0, sum(vals[:8])


def proc_cpu(pid):
    """utime + stime of a process (all its threads), in jiffies."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Topology:
    def __init__(self, kind):
        self.kind = kind
        if kind == "netns":
            subprocess.run(["sh", NETNS, "up", NS_NAME], check=True, stdout=subprocess.DEVNULL)
            self.server_ip = "10.201.0.1"
        else:
            self.server_ip = "127.0.0.1"

    def server_prefix(self):
        return ["ip", "netns", "exec", f"{NS_NAME}-srv"] if self.kind == "netns" else []

    def client_prefix(self):
        return ["ip", "netns", "exec", f"{NS_NAME}-cli"] if self.kind == "netns" else []

    def veth_drops(self):
        """RX drops of the two veth ends (frames their receive queue had no room for), or {}."""
        if self.kind != "netns":
            return {}
        out = {}
        for ns, dev in ((f"{NS_NAME}-srv", f"{NS_NAME}-s0"), (f"{NS_NAME}-cli", f"{NS_NAME}-c0")):
            r = subprocess.run(["ip", "netns", "exec", ns, "ip", "-s", "-j", "link", "show", dev],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                out[dev] = json.loads(r.stdout)[0]["stats64"]["rx"]["dropped"]
            except (ValueError, KeyError, IndexError):
                pass
        return out

    def close(self):
        if self.kind == "netns":
            subprocess.run(["sh", NETNS, "down", NS_NAME], stdout=subprocess.DEVNULL)


def spoofing_netns(opts, script, cidr):
    """What bench/flood.py and bench/interleaved_scale.py share: the common options
    (--server-core, --gen-core, --out, --no-build) added to `opts` by `add_common_args`, root,
    the release build, the netns topology, and a route sending the replies to `cidr` (the
    generator's spoofed sources) back to the client namespace. Returns (workdir, topology);
    the caller closes the topology."""
    if os.geteuid() != 0:
        sys.exit(f"{script} needs root (namespaces, AF_XDP)")
    if not opts.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "meridian", "-p", "meridian-loadgen"],
                       cwd=ROOT, check=True)
    workdir = tempfile.mkdtemp(prefix="mbench-spoof-")
    topo = Topology("netns")
    try:
        subprocess.run(topo.server_prefix() + ["ip", "route", "add", cidr, "via", "10.201.0.2"], check=True)
    except BaseException:
        topo.close()
        raise
    return workdir, topo


def add_common_args(ap):
    """The options every netns benchmark script takes."""
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--gen-core", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-build", action="store_true")


def query_ok(topo, addr, port, timeout=10.0):
    """Waits until the server gives a valid, synchronised answer."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run(
            topo.client_prefix() + [MERIDIAN, "query", f"{addr}:{port}", "-n", "1", "--timeout", "0.5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if r.returncode == 0:
            return True
        time.sleep(0.3)
    return False


HTTP_PORT = 8123

# The `+scraped` variant's load on the management plane, run in the client namespace: every
# second /metrics and /api/clients (a Prometheus scrape and `meridian clients`), every other
# second what the web page polls (/api/tracking, /api/sources, /api/serverstats, /api/clients).
SCRAPER = """
import sys, time, urllib.request
base = sys.argv[1]
n = 0
while True:
    paths = ["/metrics", "/api/clients"]
    if n % 2 == 0:
        paths += ["/api/tracking", "/api/sources", "/api/serverstats", "/api/clients"]
    for p in paths:
        try:
            urllib.request.urlopen(base + p, timeout=2).read()
        except OSError as e:
            print(p, e, file=sys.stderr, flush=True)
    n += 1
    time.sleep(1)
"""


def write_policy_config(path, rules=10_000):
    """A configuration with the access rules and the rate limit on, every request still served:
    `rules` random IPv4 deny prefixes (/12 to /32) outside the benchmark's own networks
    (10/8 and 127/8), and a rate limit no benchmark client reaches (the generator's clients
    share one source address, so the limit is per that address: 2^-19 s, 524,288 req/s, with
    the largest burst). The cost measured is the checks', on every request."""
    rng = random.Random(20261204)
    deny = set()
    while len(deny) < rules:
        addr = rng.getrandbits(32)
        if addr >> 24 in (10, 127):
            continue
        length = rng.randint(12, 32)
        addr &= (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
        deny.add(f"{addr >> 24}.{addr >> 16 & 255}.{addr >> 8 & 255}.{addr & 255}/{length}")
    with open(path, "w") as f:
        f.write("[access]\ndeny = [\n")
        f.writelines(f'  "{p}",\n' for p in sorted(deny))
        f.write("]\ndeny-action = \"kod\"\n\n")
        f.write("[rate-limit]\nenabled = true\ninterval = -19\nburst = 255\nleak = 2\nkod = true\n")


class ServerProc:
    """One server under test, started pinned to the server core."""

    def __init__(self, name, topo, core, port, config_text=None, extra_args=(), scraper_core=1):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="mbench-")
        addr = topo.server_ip
        pin = ["taskset", "-c", str(core)]
        if name == "chronyd":
            conf = os.path.join(self.tmp, "chrony.conf")
            with open(conf, "w") as f:
                f.write(
                    f"port {port}\nbindaddress {addr}\nallow all\nlocal stratum 1\ncmdport 0\n"
                    f"pidfile {self.tmp}/chronyd.pid\n"
                )
            cmd = pin + [shutil.which("chronyd") or "/usr/sbin/chronyd", "-x", "-d", "-u", "root", "-f", conf]
        else:
            backend, _, variant = name.partition("+")
            cmd = pin + [MERIDIAN, "serve", "--listen", f"{addr}:{port}", "--workers", "1", "--backend", backend]
            if backend == "xdp":
                cmd += ["--interface", f"{NS_NAME}-s0"]
            if variant == "policy":
                conf = os.path.join(self.tmp, "meridian.toml")
                write_policy_config(conf)
                cmd += ["--config", conf]
            elif variant == "notable":
                # No client table, so no interleaved mode: the per-client state's baseline.
                config_text = (config_text or "") + "[clients]\nmax = 0\n[server]\ninterleaved = false\n"
            elif variant == "scraped":
                # The management plane busy: what the web page polls every 2 s and a
                # Prometheus scrape plus `meridian clients` every second, from the client side.
                extra_args = list(extra_args) + ["--http", f"{addr}:{HTTP_PORT}"]
            elif variant == "basic":
                # The client table on, interleaved mode (and its transmit stamps) off.
                config_text = (config_text or "") + "[server]\ninterleaved = false\n"
            elif variant:
                raise ValueError(f"unknown server variant {name!r} "
                                 "(known: BACKEND+policy, BACKEND+notable, BACKEND+basic)")
            if config_text is not None:
                conf = os.path.join(self.tmp, "meridian.toml")
                with open(conf, "w") as f:
                    f.write(config_text)
                cmd += ["--config", conf]
            cmd += list(extra_args)
        self.out = open(os.path.join(self.tmp, "server.log"), "w")
        self.proc = subprocess.Popen(topo.server_prefix() + cmd, stdout=self.out, stderr=subprocess.STDOUT)
        self.scraper = None
        if not query_ok(topo, addr, port):
            self.stop()
            raise RuntimeError(f"{name} did not answer; log in {self.tmp}/server.log")
        if name.endswith("+scraped"):
            self.scraper = subprocess.Popen(
                topo.client_prefix() + ["taskset", "-c", str(scraper_core), sys.executable, "-c", SCRAPER,
                                        f"http://{addr}:{HTTP_PORT}"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.tmp, "scraper.log"), "w"))

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def stop(self):
        if self.scraper is not None and self.scraper.poll() is None:
            self.scraper.kill()
            self.scraper.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def loadgen(topo, core, args, json_path):
    cmd = topo.client_prefix() + ["taskset", "-c", str(core), LOADGEN, "-q", "--json", json_path] + args
    log("  $", " ".join(cmd))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(json_path) as f:
        return json.load(f), r.stdout


def measure(name, topo, opts, workdir):
    port = PORT
    target = f"{name}={topo.server_ip}:{port}"
    res = {"server": name}
    srv = ServerProc(name, topo, opts.server_core, port, scraper_core=opts.gen_core)
    try:
        common = ["--target", target, "--clients", str(opts.clients), "--timeout-ms", "200"]
        if opts.gen_transport == "xdp":
            common += ["--transport", "xdp", "--interface", f"{NS_NAME}-c0"]
        # 1. sweep
        drops0 = topo.veth_drops()
        d, _ = loadgen(topo, opts.gen_core, common + ["--sweep", "--sweep-rates", opts.sweep_rates,
                                                      "--duration", str(opts.duration), "--max-loss", "1"],
                       os.path.join(workdir, f"{name}-sweep.json"))
        sw = d["sweeps"][0]
        res["sweep_max"] = sw.get("max_sustained_rate")
        res["sweep_stop"] = sw.get("stop")
        drops1 = topo.veth_drops()
        res["sweep_veth_rx_drops"] = {k: drops1[k] - drops0[k] for k in drops1 if k in drops0}
        res["sweep_steps"] = [(s["offered_rate"], s["valid_rate"], s["loss_fraction"]) for s in sw["steps"]]
        # Where the last step's loss happened: replies the generator's own socket dropped
        # (reported by the xdp transport as receive errors) against all requests lost.
        last = sw["steps"][-1] if sw["steps"] else {}
        res["sweep_last_lost"] = last.get("lost", 0)
        res["sweep_last_gen_drops"] = last.get("recv_errors", 0)
        # 2. closed loop, with how busy the server's and the generator's cores were
        busy0 = proc_stat_busy()
        t0 = time.time()
        d, _ = loadgen(topo, opts.gen_core, common + ["--rate", "0", "--window", "16",
                                                      "--duration", str(opts.duration), "--max-loss", "1"],
                       os.path.join(workdir, f"{name}-closed.json"))
        busy1 = proc_stat_busy()
        span = (time.time() - t0) * os.sysconf("SC_CLK_TCK")
        res["closed_rate"] = d["runs"][0]["valid_rate"]
        for key, core in (("closed_server_busy", opts.server_core), ("closed_gen_busy", opts.gen_core)):
            c = f"cpu{core}"
            res[key] = min((busy1[c] - busy0[c]) / span, 1.0) if span > 0 else None
        # 3. fixed rate with CPU accounting
        busy0 = proc_stat_busy()
        srv0 = srv.cpu()
        t0 = time.time()
        d, _ = loadgen(topo, opts.gen_core, common + ["--rate", str(opts.fixed_rate),
                                                      "--duration", str(opts.duration), "--max-loss", "1",
                                                      "--hgrm", os.path.join(workdir, f"{name}.hgrm"),
                                                      "--hgrm-residence", os.path.join(workdir, f"{name}.residence.hgrm")],
                       os.path.join(workdir, f"{name}-fixed.json"))
        elapsed = time.time() - t0
        busy1 = proc_stat_busy()
        srv1 = srv.cpu()
        run = d["runs"][0]
        hz = os.sysconf("SC_CLK_TCK")
        replies = max(run["received"], 1)
        res["fixed_valid_rate"] = run["valid_rate"]
        res["fixed_loss"] = run["loss_fraction"]
        res["server_cpu_us"] = (srv1 - srv0) / hz / replies * 1e6
        core = f"cpu{opts.server_core}"
        res["core_cpu_us"] = (busy1[core] - busy0[core]) / hz / replies * 1e6
        res["machine_cpu_us"] = (busy1["cpu"] - busy0["cpu"]) / hz / replies * 1e6
        res["rtt_p50_us"] = run["rtt_ns"]["p50"] / 1e3
        res["rtt_p99_us"] = run["rtt_ns"]["p99"] / 1e3
        res["res_p50_us"] = run["residence_ns"]["p50"] / 1e3
        res["res_p99_us"] = run["residence_ns"]["p99"] / 1e3
        res["fixed_elapsed_s"] = elapsed
    finally:
        srv.stop()
    return res


def fmt(v, digits=1):
    return "–" if v is None else f"{v:,.{digits}f}"


def ratio(v, base, inverse=False):
    if v is None or base in (None, 0) or v == 0:
        return ""
    r = base / v if inverse else v / base
    return f" ({r:.2f}×)"


def pct(v):
    return "–" if v is None else f"{v * 100:.0f} %"


def closed_limited_by_generator(r):
    """The generator's core was saturated and busier than the server's in closed loop."""
    g, s = r.get("closed_gen_busy"), r.get("closed_server_busy")
    return g is not None and s is not None and g >= 0.95 and g > s


def table(results, opts, base_name):
    base = next((r for r in results if r["server"] == base_name), None)
    b = base or {}
    lines = [
        f"| server (load: meridian-loadgen --transport {opts.gen_transport}) | max rate < 0.1 % loss (req/s) | closed loop (replies/s) | closed loop: server core / generator core busy | server process CPU / reply (µs) | server core CPU / reply (µs) | machine CPU / reply (µs) | RTT p50 / p99 (µs) | residence p50 / p99 (µs) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sweep = fmt(r.get("sweep_max"), 0)
        if r.get("sweep_max") is None:
            sweep = f"none ({r.get('sweep_stop')})"
        elif r.get("sweep_stop") == "generator_limited" or (
                opts.gen_transport == "xdp" and r.get("sweep_stop") == "loss"
                and r.get("sweep_last_gen_drops", 0) * 2 >= max(r.get("sweep_last_lost", 0), 1)):
            sweep += " ‡"
        elif r.get("sweep_stop") == "exhausted":
            sweep = "≥ " + sweep
        closed_mark = " †" if closed_limited_by_generator(r) else ""
        lines.append(
            f"| {r['server']} | {sweep}{ratio(r.get('sweep_max'), b.get('sweep_max'))} "
            f"| {fmt(r['closed_rate'], 0)}{closed_mark}{ratio(r['closed_rate'], b.get('closed_rate'))} "
            f"| {pct(r.get('closed_server_busy'))} / {pct(r.get('closed_gen_busy'))} "
            f"| {fmt(r['server_cpu_us'], 2)}{ratio(r['server_cpu_us'], b.get('server_cpu_us'), inverse=True)} "
            f"| {fmt(r['core_cpu_us'], 2)}{ratio(r['core_cpu_us'], b.get('core_cpu_us'), inverse=True)} "
            f"| {fmt(r['machine_cpu_us'], 2)}{ratio(r['machine_cpu_us'], b.get('machine_cpu_us'), inverse=True)} "
            f"| {fmt(r['rtt_p50_us'])} / {fmt(r['rtt_p99_us'])} "
            f"| {fmt(r['res_p50_us'])} / {fmt(r['res_p99_us'])} |"
        )
    note = (
        f"Ratios in brackets are against {base_name} (rates: ours / theirs; CPU: theirs / ours, so "
        f"above 1× is better for both). Load generated by meridian-loadgen --transport "
        f"{opts.gen_transport}. ‡ the sweep stopped because of the generator (it could not keep "
        f"its schedule, generator_limited, or its own socket dropped most of the lost replies): "
        f"a lower bound for the server. ≥ every sweep step passed: bounded by --sweep-rates. † closed loop "
        f"with the generator's core saturated (≥ 95 % and busier than the server's): limited by "
        f"the generator. Otherwise a sweep figure is limited by the server (loss)."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else cpu
    except OSError:
        pass
    chrony = subprocess.run(["chronyd", "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout.strip() if shutil.which("chronyd") else "absent"
    return f"{platform.node()}: Linux {platform.release()}, {os.cpu_count()} CPUs ({cpu}); {chrony}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topology", choices=["netns", "loopback"], default=None)
    ap.add_argument("--servers", default="udp,io-uring,xdp,chronyd")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--fixed-rate", type=int, default=50000)
    ap.add_argument("--sweep-rates", default="25000,50000,75000,100000,150000,200000,300000,400000")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--gen-transport", choices=["mmsg", "xdp"], default="mmsg",
                    help="the load generator's transport (xdp: AF_XDP on mbench-c0, netns only)")
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--gen-core", type=int, default=1)
    ap.add_argument("--baseline", default="chronyd")
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-build", action="store_true")
    opts = ap.parse_args()

    if opts.topology is None:
        opts.topology = "netns" if os.geteuid() == 0 and shutil.which("ip") else "loopback"
    if not opts.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "meridian", "-p", "meridian-loadgen"],
                       cwd=ROOT, check=True)
    servers = [s for s in opts.servers.split(",") if s]
    if opts.gen_transport == "xdp" and opts.topology != "netns":
        sys.exit("--gen-transport xdp needs the netns topology (an interface to attach to)")
    if "xdp" in servers and opts.topology != "netns":
        log("xdp needs the netns topology (an interface to attach to): leaving it out")
        servers.remove("xdp")
    if "chronyd" in servers and not shutil.which("chronyd") and not os.path.exists("/usr/sbin/chronyd"):
        log("chronyd not found (apt-get install chrony): leaving it out")
        servers.remove("chronyd")

    workdir = tempfile.mkdtemp(prefix="mbench-out-")
    topo = Topology(opts.topology)
    results = []
    steal0 = proc_stat_steal_total()
    try:
        for name in servers:
            log(f"== {name}")
            try:
                results.append(measure(name, topo, opts, workdir))
            except Exception as e:  # one server failing must not lose the others' figures
                log(f"   {name} failed: {e}")
    finally:
        topo.close()
    steal1 = proc_stat_steal_total()
    total = steal1[1] - steal0[1]
    steal = (steal1[0] - steal0[0]) / total * 100 if total > 0 else 0.0

    cmd = "bench/compare.py " + " ".join(sys.argv[1:])
    out = [
        f"Command: `{cmd.strip()}`  ",
        f"Topology: {opts.topology}; servers pinned to core {opts.server_core}, generator to core {opts.gen_core}; "
        f"{opts.clients} clients; {opts.duration:g} s per step; fixed rate {opts.fixed_rate:,} req/s; "
        f"load generator transport: {opts.gen_transport}; CPU stolen by the hypervisor during the run: "
        f"{steal:.1f} %.  ",
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        table(results, opts, opts.baseline),
        "Sweep steps (offered → valid/s, loss):",
        "",
    ]
    for r in results:
        steps = ", ".join(f"{o:,.0f}→{v:,.0f} ({l*100:.2f}%)" for o, v, l in r["sweep_steps"])
        limited = {"generator_limited": " (limited by the generator: it could not keep its schedule)",
                   "exhausted": " (every step passed)"}.get(r["sweep_stop"], "")
        if r["sweep_stop"] == "loss":
            lost, gen = r.get("sweep_last_lost", 0), r.get("sweep_last_gen_drops", 0)
            if opts.gen_transport != "xdp":
                # Socket transports do not see their own socket's drops.
                limited = f" (limited by the server or the link, or the generator's socket buffer: {lost:,} lost)"
            elif gen and gen * 2 >= lost:
                limited = f" (limited by the generator: its socket dropped {gen:,} of {lost:,} lost replies)"
            else:
                limited = (f" (limited by the server or the link: {lost:,} lost, "
                           f"{gen:,} of them dropped at the generator's socket)")
        veth = r.get("sweep_veth_rx_drops")
        if veth:
            limited += "; veth RX drops during the sweep: " + ", ".join(f"{k} {v:,}" for k, v in veth.items())
        out.append(f"- {r['server']}: {steps}; stopped: {r['sweep_stop']}{limited}")
    text = "\n".join(out) + "\n"
    print(text)
    if opts.out:
        with open(opts.out, "w") as f:
            f.write(text)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    log(f"raw results in {workdir}")


if __name__ == "__main__":
    main()
