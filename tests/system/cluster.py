#!/usr/bin/env python3
"""A local "cluster" made of Linux network namespaces, for the system tests and the quickstart.

Layout (see "Local cluster for tests and the quickstart" in ARCHITECTURE.md):

    <prefix>-node     namespace holding bridge br0 = 198.18.0.1/15, plus a `local` route for the
                      service range 198.19.0.0/16 so that a VIP nothing intercepts answers
                      "Connection refused" at once (pods are on a /15, so VIPs are on-link for
                      them: without that route they would fail with "No route to host" after an
                      ARP timeout)
    <prefix>-<pod>    one namespace per pod: lo, eth0 = <ip>/15 (a veth whose other end,
                      v<hash>, sits in the node namespace on br0), default route via 198.18.0.1
    /etc/netns/<prefix>-<pod>/hosts        127.0.0.1 localhost + every service name the cluster knows
    /etc/netns/<prefix>-<pod>/resolv.conf  nameserver 127.0.0.1 (failed lookups fail fast)
    /run/remora-cluster/<prefix>.json      owner pid, so cleanup_stale() spares live clusters

Nothing is created in the root namespace: the veth pair is created directly with one end in the
node namespace and the other in the pod, so deleting the namespaces removes every link.

Library use:

    from cluster import LocalCluster, ClusterUnavailable
    with LocalCluster("remora-t%d" % os.getpid()) as c:
        a = c.add_pod("a"); b = c.add_pod("b")
        c.add_service("hello", "198.19.0.10")        # hello, hello.default, ...svc.cluster.local
        srv = c.spawn("b", ["python3", "-m", "http.server", "8080"], user=1337, log_path=...)
        c.wait_port("a", b.ip, 8080, timeout=10, proc=srv)
        r = c.run("a", ["curl", "-sS", f"http://{b.ip}:8080/"])

Teardown (processes, namespaces, /etc/netns dirs) happens on leaving the `with`, on SIGINT/SIGTERM
(handlers tear down, then SIGINT raises KeyboardInterrupt and SIGTERM exits 143) and at exit.

CLI:
    python3 tests/system/cluster.py cleanup [--prefix P] [--force]
    python3 tests/system/cluster.py demo
"""

import argparse
import atexit
import fnmatch
import hashlib
import ipaddress
import json
import os
import pwd
import grp
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

__all__ = [
    "LocalCluster", "Pod", "ClusterError", "ClusterUnavailable", "CommandError",
    "check_available", "cleanup_stale", "service_names", "leftovers",
    "POD_NET", "VIP_NET", "NODE_IP",
]

POD_NET = ipaddress.ip_network("198.18.0.0/15")
VIP_NET = ipaddress.ip_network("198.19.0.0/16")
NODE_IP = "198.18.0.1"
PREFIXLEN = POD_NET.prefixlen
NETNS_ETC = "/etc/netns"
NETNS_RUN = "/run/netns"
REGISTRY = "/run/remora-cluster"
BRIDGE = "br0"
STOP_GRACE = 3.0
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy",
              "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "FTP_PROXY", "NO_PROXY")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ClusterError(Exception):
    """Setting up or using the cluster failed."""


class ClusterUnavailable(ClusterError):
    """Namespaces can't be used here (not root, no `ip`, no permission): tests should skip (77)."""


class CommandError(subprocess.CalledProcessError):
    """A command failed; str() includes its stdout and stderr."""

    def __str__(self):
        def clip(t):
            if t is None:
                return ""
            if isinstance(t, bytes):
                t = t.decode("utf-8", "replace")
            t = t.strip()
            return t if len(t) <= 2000 else t[:2000] + "..."
        cmd = " ".join(self.cmd) if isinstance(self.cmd, (list, tuple)) else str(self.cmd)
        return (f"command failed (exit {self.returncode}): {cmd}\n"
                f"stdout: {clip(self.stdout)}\nstderr: {clip(self.stderr)}")


def check_available():
    """Raise ClusterUnavailable unless this process can build a cluster."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("network namespaces need root (euid is %d)" % os.geteuid())
    if not shutil.which("ip"):
        raise ClusterUnavailable("`ip` (iproute2) is not installed")
    if not sys.platform.startswith("linux"):
        raise ClusterUnavailable("network namespaces need Linux")


def service_names(name, namespace="default"):
    """The four names Kubernetes gives a service: name, name.ns, name.ns.svc, ...cluster.local."""
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc",
            f"{name}.{namespace}.svc.cluster.local"]


# ---------------------------------------------------------------------------------------------
# Small helpers


def _ip(args, input=None, check=True, timeout=30):
    argv = ["ip"] + list(args)
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


def _netns_list():
    proc = _ip(["netns", "list"], check=False)
    names = []
    for line in proc.stdout.splitlines():
        if line.strip():
            names.append(line.split()[0])
    # `ip netns list` reads /run/netns; include entries it might skip.
    try:
        for n in os.listdir(NETNS_RUN):
            if n not in names:
                names.append(n)
    except OSError:
        pass
    return names


def _netns_pids(ns):
    proc = _ip(["netns", "pids", ns], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def _kill_netns_processes(ns, rounds=5):
    """SIGKILL every process in `ns` (a process that stays keeps the namespace alive)."""
    me = os.getpid()
    for _ in range(rounds):
        pids = [p for p in _netns_pids(ns) if p != me]
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


def _delete_netns(ns):
    if not os.path.exists(os.path.join(NETNS_RUN, ns)):
        return False
    _kill_netns_processes(ns)
    proc = _ip(["netns", "delete", ns], check=False)
    if proc.returncode != 0 and os.path.exists(os.path.join(NETNS_RUN, ns)):
        # A busy mount point: retry once after a moment.
        time.sleep(0.1)
        _kill_netns_processes(ns)
        _ip(["netns", "delete", ns], check=False)
    return True


def _remove_etc_dir(ns):
    path = os.path.join(NETNS_ETC, ns)
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
        try:
            os.rmdir(NETNS_ETC)  # only if empty
        except OSError:
            pass
        return True
    return False


def _root_links():
    """[(ifname, ifalias)] of links in the root namespace."""
    proc = _ip(["-j", "link", "show"], check=False)
    try:
        data = json.loads(proc.stdout or "[]")
    except ValueError:
        return []
    return [(d.get("ifname", ""), d.get("ifalias", "") or "") for d in data]


def _proc_start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # comm may contain spaces and parens: fields after the last ')'
    return stat[stat.rindex(")") + 2:].split()[19]


def _owner_alive(info):
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    start = _proc_start_time(pid)
    return start is not None and start == info.get("start")


def _read_registry():
    """{prefix: info} of clusters that registered an owner."""
    out = {}
    try:
        names = os.listdir(REGISTRY)
    except OSError:
        return out
    for n in names:
        if not n.endswith(".json"):
            continue
        try:
            with open(os.path.join(REGISTRY, n)) as f:
                info = json.load(f)
        except (OSError, ValueError):
            info = {}
        out[n[:-len(".json")]] = info
    return out


def _matcher(pattern):
    if any(ch in pattern for ch in "*?["):
        return lambda name: fnmatch.fnmatchcase(name, pattern)
    return lambda name: name.startswith(pattern)


def leftovers(prefix):
    """What exists with names starting with `prefix` (a cluster's prefix + "-", or any prefix):
    {"netns": [...], "etc": [...], "links": [...], "registry": [...]}. Empty lists = clean."""
    match = _matcher(prefix)
    out = {"netns": [n for n in _netns_list() if match(n)], "etc": [], "links": [],
           "registry": []}
    try:
        out["etc"] = [n for n in os.listdir(NETNS_ETC) if match(n)]
    except OSError:
        pass
    out["links"] = [name for name, alias in _root_links() if match(name) or (alias and match(alias))]
    out["registry"] = [p for p in _read_registry() if match(p + "-node") or match(p)]
    return out


def cleanup_stale(prefix_glob="remora-", force=False, log=None):
    """Remove leftover namespaces (killing their processes), root-namespace links (matched by
    name or alias), /etc/netns dirs and registry entries whose names start with `prefix_glob`
    (or match it, if it holds glob characters). Clusters whose owner process is still alive are
    spared unless `force`. Returns the list of things removed."""
    if not prefix_glob:
        raise ValueError("cleanup_stale needs a non-empty prefix")
    check_available()
    match = _matcher(prefix_glob)
    registry = _read_registry()
    live = [p for p, info in registry.items() if _owner_alive(info)] if not force else []

    def spared(name):
        return any(name == p or name.startswith(p + "-") for p in live)

    removed = []

    def note(what):
        removed.append(what)
        if log:
            log(what)

    for ns in _netns_list():
        if match(ns) and not spared(ns):
            if _delete_netns(ns):
                note(f"netns {ns}")
    for name, alias in _root_links():
        if (match(name) or (alias and match(alias))) and not spared(alias or name):
            if _ip(["link", "delete", name], check=False).returncode == 0:
                note(f"link {name}" + (f" ({alias})" if alias else ""))
    try:
        etc = os.listdir(NETNS_ETC)
    except OSError:
        etc = []
    for n in etc:
        if match(n) and not spared(n):
            if _remove_etc_dir(n):
                note(f"dir {os.path.join(NETNS_ETC, n)}")
    for p in registry:
        if (match(p + "-node") or match(p)) and p not in live:
            try:
                os.unlink(os.path.join(REGISTRY, p + ".json"))
                note(f"registry {p}")
            except OSError:
                pass
    return removed


# ---------------------------------------------------------------------------------------------
# Teardown on signals and at exit

_live = []          # clusters not yet torn down
_live_lock = threading.RLock()
_prev_handlers = {}
_atexit_done = False
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _teardown_all():
    with _live_lock:
        clusters = list(_live)
    for c in clusters:
        try:
            c.teardown()
        except Exception as e:  # noqa: BLE001 - keep tearing down the others
            print(f"cluster: teardown of {c.prefix} failed: {e}", file=sys.stderr)


def _on_signal(signum, frame):
    _teardown_all()
    prev = _prev_handlers.get(signum, signal.SIG_DFL)
    _restore_handlers()
    if callable(prev):
        return prev(signum, frame)  # e.g. default_int_handler raises KeyboardInterrupt
    if prev == signal.SIG_IGN:
        return None
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _install_handlers():
    global _atexit_done
    if not _atexit_done:
        atexit.register(_teardown_all)
        _atexit_done = True
    if threading.current_thread() is not threading.main_thread() or _prev_handlers:
        return
    for s in _SIGNALS:
        try:
            _prev_handlers[s] = signal.getsignal(s)
            signal.signal(s, _on_signal)
        except (ValueError, OSError):
            _prev_handlers.pop(s, None)


def _restore_handlers():
    if threading.current_thread() is not threading.main_thread():
        return
    for s, prev in list(_prev_handlers.items()):
        try:
            if signal.getsignal(s) is _on_signal:
                signal.signal(s, prev if prev is not None else signal.SIG_DFL)
        except (ValueError, OSError):
            pass
    _prev_handlers.clear()


class _SignalsBlocked:
    """Hold SIGINT/SIGTERM while tearing down, so a second Ctrl-C can't interrupt it halfway."""

    def __enter__(self):
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.old)
        return False


# ---------------------------------------------------------------------------------------------
# The cluster


class Pod:
    def __init__(self, name, ns, ip, veth):
        self.name = name    # "a"
        self.ns = ns        # "<prefix>-a"
        self.ip = ip        # "198.18.1.1"
        self.veth = veth    # node-side veth name, e.g. "v1a2b3c4d5e"

    def __repr__(self):
        return f"Pod({self.name!r}, ns={self.ns!r}, ip={self.ip!r}, veth={self.veth!r})"


class LocalCluster:
    """A node namespace with a bridge plus pod namespaces. Use as a context manager."""

    def __init__(self, prefix=None):
        if prefix is None:
            prefix = f"remora-c{os.getpid()}"
        if not _NAME_RE.match(prefix) or len(prefix) > 40:
            raise ValueError(f"bad cluster prefix {prefix!r} (letters, digits, _.-; <= 40 chars)")
        self.prefix = prefix
        self.node_ns = f"{prefix}-node"
        self.pods = {}            # name -> Pod
        self.services = {}        # hostname -> address (insertion ordered)
        self.procs = []           # Popen objects from spawn()
        self._namespaces = []     # recorded before creation, so partial setup is torn down
        self._etc_dirs = []
        self._started = False
        self._closed = False
        self._next_host = 1
        self._lock = threading.RLock()
        self._owner_pid = None

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def start(self):
        """Create the node namespace and bridge (called by __enter__ and on first add_pod)."""
        with self._lock:
            if self._closed:
                raise ClusterError(f"cluster {self.prefix} was torn down")
            if self._started:
                return self
            check_available()
            self._claim_prefix()
            self._started = True
            with _live_lock:
                _live.append(self)
            _install_handlers()
            self._namespaces.append(self.node_ns)
            proc = _ip(["netns", "add", self.node_ns], check=False)
            if proc.returncode != 0:
                self.teardown()
                msg = proc.stderr.strip()
                if "ermission" in msg or "not permitted" in msg:
                    raise ClusterUnavailable(f"cannot create network namespaces: {msg}")
                raise ClusterError(f"ip netns add {self.node_ns} failed: {msg}")
            try:
                _ip(["-n", self.node_ns, "-batch", "-"], input="\n".join([
                    "link set lo up",
                    f"link add {BRIDGE} type bridge forward_delay 0",
                    f"addr add {NODE_IP}/{PREFIXLEN} dev {BRIDGE}",
                    f"link set {BRIDGE} up",
                    # Any VIP nothing intercepts is answered (ARP + RST): fast "Connection refused".
                    f"route add local {VIP_NET} dev lo",
                ]) + "\n")
            except BaseException:
                self.teardown()
                raise
        return self

    def _claim_prefix(self):
        registry = _read_registry()
        info = registry.get(self.prefix)
        if info and _owner_alive(info) and info.get("pid") != os.getpid():
            raise ClusterError(f"cluster prefix {self.prefix} is in use by pid {info.get('pid')}")
        if info and info.get("pid") == os.getpid() and any(
                c.prefix == self.prefix for c in _live):
            raise ClusterError(f"cluster prefix {self.prefix} is already in use in this process")
        # Leftovers of a crashed run with the same prefix: remove them.
        left = leftovers(self.prefix + "-")
        if any(left.values()) or info:
            cleanup_stale(self.prefix + "-", force=True)
            try:
                os.unlink(os.path.join(REGISTRY, self.prefix + ".json"))
            except OSError:
                pass
        os.makedirs(REGISTRY, exist_ok=True)
        me = os.getpid()
        tmp = os.path.join(REGISTRY, f".{self.prefix}.{me}.tmp")
        with open(tmp, "w") as f:
            json.dump({"pid": me, "start": _proc_start_time(me), "argv": sys.argv}, f)
        os.replace(tmp, os.path.join(REGISTRY, self.prefix + ".json"))
        self._owner_pid = me

    def teardown(self):
        """Kill spawned processes, delete namespaces and /etc/netns dirs. Idempotent; safe after
        a partial setup. Only the process that built the cluster tears it down."""
        if self._owner_pid is not None and self._owner_pid != os.getpid():
            return  # a forked child must not tear down its parent's cluster
        with _SignalsBlocked(), self._lock:
            self._closed = True
            self._stop_procs(self.procs)
            self.procs = []
            # Pods first (their veth ends go with them), then the node.
            for ns in [n for n in reversed(self._namespaces)]:
                try:
                    _delete_netns(ns)
                except Exception as e:  # noqa: BLE001 - keep going
                    print(f"cluster: deleting netns {ns}: {e}", file=sys.stderr)
                if not os.path.exists(os.path.join(NETNS_RUN, ns)):
                    self._namespaces.remove(ns)
            for ns in list(self._etc_dirs):
                _remove_etc_dir(ns)
                if not os.path.lexists(os.path.join(NETNS_ETC, ns)):
                    self._etc_dirs.remove(ns)
            if self._owner_pid is not None and not self._namespaces and not self._etc_dirs:
                try:
                    os.unlink(os.path.join(REGISTRY, self.prefix + ".json"))
                    os.rmdir(REGISTRY)  # only if empty
                except OSError:
                    pass
                self._owner_pid = None
            if not self._namespaces and not self._etc_dirs:
                with _live_lock:
                    if self in _live:
                        _live.remove(self)
                    if not _live:
                        _restore_handlers()

    close = teardown

    # -- pods and services ----------------------------------------------------------------------

    def ns(self, pod):
        """Namespace name of a pod (name or Pod); "node" is the node namespace."""
        if isinstance(pod, Pod):
            return pod.ns
        if pod == "node":
            return self.node_ns
        if pod not in self.pods:
            raise KeyError(f"no pod {pod!r} in cluster {self.prefix}")
        return self.pods[pod].ns

    def pod_ip(self, pod):
        return self.pods[pod.name if isinstance(pod, Pod) else pod].ip

    def _alloc_ip(self):
        used = {p.ip for p in self.pods.values()}
        while self._next_host <= 254:
            ip = f"198.18.1.{self._next_host}"
            self._next_host += 1
            if ip not in used:
                return ip
        raise ClusterError("out of automatic pod addresses (198.18.1.1-254)")

    def add_pod(self, name, ip=None):
        """Create namespace <prefix>-<name> wired to the bridge; returns the Pod."""
        with self._lock:
            if not _NAME_RE.match(name) or name == "node" or len(name) > 40:
                raise ValueError(f"bad pod name {name!r}")
            if name in self.pods:
                raise ClusterError(f"pod {name!r} already exists")
            self.start()
            if ip is None:
                ip = self._alloc_ip()
            addr = ipaddress.ip_address(ip)
            if addr not in POD_NET or addr in VIP_NET or str(addr) == NODE_IP \
                    or addr == POD_NET.network_address:
                raise ValueError(f"pod address {ip} must be in {POD_NET}, outside {VIP_NET}, "
                                 f"and not {NODE_IP}")
            if any(p.ip == str(addr) for p in self.pods.values()):
                raise ClusterError(f"pod address {ip} is taken")
            ns = f"{self.prefix}-{name}"
            veth = "v" + hashlib.sha1(ns.encode()).hexdigest()[:10]
            # Record first: a failure or signal halfway still gets everything torn down.
            self._etc_dirs.append(ns)
            self._write_etc(ns)
            self._namespaces.append(ns)
            _ip(["netns", "add", ns])
            pod = Pod(name, ns, str(addr), veth)
            _ip(["-n", self.node_ns, "-batch", "-"], input="\n".join([
                f"link add {veth} type veth peer name eth0 netns {ns}",
                f"link set {veth} alias {ns} master {BRIDGE} up",
            ]) + "\n")
            _ip(["-n", ns, "-batch", "-"], input="\n".join([
                "link set lo up",
                f"addr add {addr}/{PREFIXLEN} dev eth0",
                "link set eth0 up",
                f"route add default via {NODE_IP}",
            ]) + "\n")
            self.pods[name] = pod
            return pod

    def add_service(self, names, vip):
        """Map hostnames to an address in every pod's /etc/hosts (now and future pods).
        `names`: a str is expanded with service_names() (name, name.default, name.default.svc,
        name.default.svc.cluster.local); a list is used as is. Re-adding a name remaps it."""
        if isinstance(names, str):
            names = service_names(names)
        addr = str(ipaddress.ip_address(vip))
        with self._lock:
            for n in names:
                if not n or any(c.isspace() for c in n):
                    raise ValueError(f"bad host name {n!r}")
                self.services.pop(n, None)
                self.services[n] = addr
            self._rewrite_hosts()
        return list(names)

    def remove_service(self, names):
        if isinstance(names, str):
            names = service_names(names)
        with self._lock:
            for n in names:
                self.services.pop(n, None)
            self._rewrite_hosts()

    def hosts_text(self):
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        by_addr = {}
        for n, a in self.services.items():
            by_addr.setdefault(a, []).append(n)
        for a, ns in by_addr.items():
            lines.append(f"{a}\t{' '.join(ns)}")
        return "\n".join(lines) + "\n"

    def _write_etc(self, ns):
        d = os.path.join(NETNS_ETC, ns)
        os.makedirs(d, exist_ok=True)
        _write_in_place(os.path.join(d, "hosts"), self.hosts_text())
        _write_in_place(os.path.join(d, "resolv.conf"),
                        "# remora local cluster: no DNS server, so lookups fail fast\n"
                        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")

    def _rewrite_hosts(self):
        text = self.hosts_text()
        for ns in self._etc_dirs:
            path = os.path.join(NETNS_ETC, ns, "hosts")
            if os.path.exists(path):
                _write_in_place(path, text)

    # -- running things in pods -----------------------------------------------------------------

    def _prefix_argv(self, pod, user):
        argv = ["ip", "netns", "exec", self.ns(pod)]
        if user is not None:
            if not shutil.which("setpriv"):
                raise ClusterUnavailable("setpriv (util-linux) is not installed")
            uid, gid = _resolve_user(user)
            argv += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        return argv

    @staticmethod
    def _env(env):
        full = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
        if env:
            full.update(env)
        return full

    def run(self, pod, argv, user=None, check=True, timeout=30, input=None, env=None,
            cwd=None, text=True):
        """Run argv in the pod and wait; returns CompletedProcess (stdout/stderr captured).
        user: None (root), uid int, (uid, gid), "uid:gid" or a user name.
        check=True raises CommandError on non-zero exit; timeout raises TimeoutExpired."""
        full = self._prefix_argv(pod, user) + [str(a) for a in argv]
        if input is not None and text and isinstance(input, bytes):
            text = False
        proc = subprocess.run(full, input=input, capture_output=True, text=text,
                              timeout=timeout, env=self._env(env), cwd=cwd,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, full, proc.stdout, proc.stderr)
        return proc

    def spawn(self, pod, argv, user=None, log_path=None, env=None, cwd=None, stop_signal=None):
        """Start argv in the pod in its own process group (stdout+stderr appended to log_path,
        or discarded); returns the Popen (with .log_path and .pod). Killed by teardown/stop():
        `stop_signal` first (default SIGTERM; SIGINT for remora-proxy, which on SIGTERM keeps
        serving for its whole drain duration as in a pod being deleted, and on SIGINT exits as
        soon as in-flight work is done), SIGKILL after the grace period."""
        if stop_signal is None:
            prog = os.path.basename(str(argv[0])) if argv else ""
            stop_signal = signal.SIGINT if prog == "remora-proxy" else signal.SIGTERM
        full = self._prefix_argv(pod, user) + [str(a) for a in argv]
        with self._lock:
            if self._closed:
                raise ClusterError(f"cluster {self.prefix} was torn down")
            out = open(log_path, "ab") if log_path else subprocess.DEVNULL
            try:
                proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, env=self._env(env), cwd=cwd,
                                        start_new_session=True)
            finally:
                if log_path:
                    out.close()
            proc.log_path = log_path
            proc.stop_signal = stop_signal
            proc.pod = pod.name if isinstance(pod, Pod) else pod
            self.procs.append(proc)
            return proc

    def stop(self, proc, grace=STOP_GRACE):
        """Signal a spawned process's group (its stop signal, see spawn), SIGKILL it after `grace`
        s; returns its exit code."""
        self._stop_procs([proc], grace)
        with self._lock:
            if proc in self.procs:
                self.procs.remove(proc)
        return proc.returncode

    @staticmethod
    def _stop_procs(procs, grace=STOP_GRACE):
        for p in procs:
            _killpg(p.pid, getattr(p, "stop_signal", signal.SIGTERM))
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:
            _killpg(p.pid, signal.SIGKILL)  # also stragglers of an exited leader
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    # -- waiting ----------------------------------------------------------------------------------

    def wait_port(self, pod, host, port, timeout=10, proc=None):
        """Wait until a TCP connect from inside the pod to host:port succeeds. Raises
        TimeoutError (or ClusterError if `proc` exits first)."""
        deadline = time.monotonic() + timeout
        script = f'exec 3<>"/dev/tcp/$1/$2"'
        last = ""
        while True:
            _check_alive(proc)
            try:
                r = self.run(pod, ["bash", "-c", script, "wait_port", host, str(port)],
                             check=False, timeout=max(0.5, min(2.0, deadline - time.monotonic())))
                if r.returncode == 0:
                    return
                last = (r.stderr or "").strip()
            except subprocess.TimeoutExpired:
                last = "connect timed out"
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{host}:{port} not reachable from pod {pod} after {timeout}s"
                                   f" ({last})" + _log_tail(proc))
            time.sleep(0.1)

    def wait_http(self, pod, url, timeout=10, proc=None, status=None):
        """Wait until curl in the pod gets an HTTP answer from url (of `status`, if given);
        returns the status code. Raises TimeoutError / ClusterError as wait_port."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            _check_alive(proc)
            r = self.curl(pod, url, "-o", "/dev/null", "-w", "%{http_code}",
                          max_time=max(0.5, min(2.0, deadline - time.monotonic())))
            code = r.stdout.strip()
            if r.returncode == 0 and code.isdigit() and (status is None or int(code) == status):
                return int(code)
            last = f"curl exit {r.returncode}, status {code}, {r.stderr.strip()}"
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no HTTP answer from {url} in pod {pod} after {timeout}s"
                                   f" ({last})" + _log_tail(proc))
            time.sleep(0.1)

    def curl(self, pod, url, *args, max_time=10, user=None, check=False):
        """curl -sS --max-time T [args] url in the pod; returns CompletedProcess."""
        return self.run(pod, ["curl", "-sS", "--max-time", f"{max_time:g}", *args, url],
                        user=user, check=check, timeout=max_time + 5)


def _write_in_place(path, text):
    """Rewrite a file keeping its inode: `ip netns exec` bind-mounts it over /etc/hosts, so
    processes already running in the pod only see changes made to the same inode."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _resolve_user(user):
    if isinstance(user, bool):
        raise ValueError("bad user")
    if isinstance(user, int):
        return user, user
    if isinstance(user, tuple):
        return int(user[0]), int(user[1])
    s = str(user)
    if ":" in s:
        u, g = s.split(":", 1)
        uid = int(u) if u.isdigit() else pwd.getpwnam(u).pw_uid
        gid = int(g) if g.isdigit() else grp.getgrnam(g).gr_gid
        return uid, gid
    if s.isdigit():
        return int(s), int(s)
    pw = pwd.getpwnam(s)
    return pw.pw_uid, pw.pw_gid


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _check_alive(proc):
    if proc is not None and proc.poll() is not None:
        raise ClusterError(f"process exited with {proc.returncode} while waiting"
                           + _log_tail(proc))


def _log_tail(proc, limit=1500):
    path = getattr(proc, "log_path", None) if proc is not None else None
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            tail = f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f"\n--- {path} (tail) ---\n{tail}" if tail else ""


# ---------------------------------------------------------------------------------------------
# CLI


def _demo():
    prefix = f"remora-demo{os.getpid()}"
    say = lambda msg: print(f"demo: {msg}", flush=True)  # noqa: E731
    with LocalCluster(prefix) as c:
        say(f"node namespace {c.node_ns}: bridge {BRIDGE} {NODE_IP}/{PREFIXLEN}")
        a = c.add_pod("a")
        b = c.add_pod("b")
        for p in (a, b):
            say(f"pod {p.name}: namespace {p.ns}, eth0 {p.ip}/{PREFIXLEN}, node-side veth {p.veth}")
        c.add_service("hello", "198.19.0.10")
        say("service hello -> VIP 198.19.0.10 (written to every pod's /etc/netns/<ns>/hosts)")
        r = c.run("a", ["getent", "hosts", "hello.default.svc.cluster.local"], check=False)
        say(f"[a] getent hosts hello.default.svc.cluster.local -> {r.stdout.strip() or r.stderr.strip()}")
        r = c.run("a", ["getent", "hosts", "nosuchservice"], check=False)
        say(f"[a] getent hosts nosuchservice -> exit {r.returncode} (fails fast, no DNS)")
        log = f"/tmp/{prefix}-http.log"
        srv = c.spawn("b", ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
                      log_path=log)
        say(f"[b] started python3 -m http.server 8080 (pid {srv.pid}, log {log})")
        c.wait_port("a", b.ip, 8080, timeout=10, proc=srv)
        r = c.curl("a", "http://hello:8080/", "-o", "/dev/null", "-w", "%{http_code}",
                   max_time=3)
        say(f"[a] curl http://hello:8080/ via the VIP -> exit {r.returncode} "
            f"{r.stderr.strip()} (no remora-proxy in the pods yet, so nothing answers for VIPs)")
        c.add_service("hello", b.ip)
        say(f"remapped hello -> {b.ip} (pod b's own address)")
        r = c.curl("a", "http://hello:8080/", "-o", "/dev/null", "-w",
                   "%{http_code} %{size_download} bytes from %{remote_ip}", max_time=5)
        say(f"[a] curl http://hello:8080/ -> exit {r.returncode}, HTTP {r.stdout.strip()}"
            + (f" {r.stderr.strip()}" if r.returncode else ""))
        ok = r.returncode == 0 and r.stdout.startswith("200")
        say("tearing down")
    try:
        os.unlink(log)
    except OSError:
        pass
    left = leftovers(prefix + "-")
    say("teardown complete, nothing left" if not any(left.values()) else f"LEFT BEHIND: {left}")
    return 0 if ok and not any(left.values()) else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description="Local network-namespace cluster for Remora tests.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    cl = sub.add_parser("cleanup", help="remove leftovers of crashed runs")
    cl.add_argument("--prefix", default="remora-", help="name prefix (or glob); default remora-")
    cl.add_argument("--force", action="store_true",
                    help="also remove clusters whose owner process is still running")
    sub.add_parser("demo", help="two pods, a service, an HTTP request by name")
    opts = ap.parse_args(argv)
    try:
        if opts.cmd == "cleanup":
            removed = cleanup_stale(opts.prefix, force=opts.force,
                                    log=lambda w: print(f"removed {w}", flush=True))
            if not removed:
                print(f"nothing to clean up for prefix {opts.prefix!r}")
            return 0
        return _demo()
    except ClusterUnavailable as e:
        print(f"cluster unavailable: {e}", file=sys.stderr)
        return 77


if __name__ == "__main__":
    sys.exit(main())
